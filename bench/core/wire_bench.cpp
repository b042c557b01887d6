// The per-call CPU work of a distributed call, piece by piece, in one process: what the runtime
// spends besides the two ring transfers (bench/core/dist_agent_bench.cpp has the whole call).
//
//   build/release/bench/wire_bench
#include <benchmark/benchmark.h>

#include <troupe/troupe.hpp>

#include "troupe/core/detail/result_state.hpp"

namespace {

const std::string kContent(100, 'x');  // the sequential-call benchmark's content

troupe::Msg sample() { return troupe::Msg("user", kContent, "user"); }

void BM_NewMsg(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(sample());
}
BENCHMARK(BM_NewMsg);

void BM_NewMsgId(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(troupe::new_msg_id());
}
BENCHMARK(BM_NewMsgId);

void BM_BuildCallFrame(benchmark::State& state) {
  troupe::FrameBuilder builder;
  const std::vector<troupe::Msg> msgs{sample()};
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        builder.build({.kind = troupe::wire::Kind::Call, .call_id = 1, .messages = msgs}));
  }
}
BENCHMARK(BM_BuildCallFrame);

/// A call frame carrying sample(), copied out of its builder.
std::vector<std::byte> call_frame() {
  troupe::FrameBuilder builder;
  const std::vector<troupe::Msg> msgs{sample()};
  const auto view =
      builder.build({.kind = troupe::wire::Kind::Call, .call_id = 1, .messages = msgs});
  return {view.begin(), view.end()};
}

void BM_VerifyFrame(benchmark::State& state) {
  const std::vector<std::byte> frame = call_frame();
  for (auto _ : state) {
    std::error_code ec;
    benchmark::DoNotOptimize(troupe::verify_frame(frame, ec));
  }
}
BENCHMARK(BM_VerifyFrame);

void BM_FromWire(benchmark::State& state) {
  const std::vector<std::byte> frame = call_frame();
  std::error_code ec;
  const auto* env = troupe::verify_frame(frame, ec);
  for (auto _ : state) benchmark::DoNotOptimize(troupe::from_wire(*env->messages()->Get(0)));
}
BENCHMARK(BM_FromWire);

void BM_ResultState(benchmark::State& state) {
  for (auto _ : state) {
    auto s = std::make_shared<troupe::detail::ResultState>();
    s->resolve(troupe::Msg());
    benchmark::DoNotOptimize(s->status());
  }
}
BENCHMARK(BM_ResultState);

}  // namespace

BENCHMARK_MAIN();
