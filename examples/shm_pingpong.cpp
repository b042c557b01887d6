// The transport demo: two processes exchange FlatBuffers frames over a shared-memory channel
// and print what they measured (round-trip latency, then streaming throughput with checksums).
//
//   shm_pingpong [round_trips] [stream_frames]      defaults: 200000 1000000
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "troupe/core/child_process.hpp"
#include "troupe/core/wire.hpp"
#include "troupe/shm/shm_channel.hpp"

using namespace std::chrono_literals;
using troupe::Clock;

namespace {

constexpr std::uint64_t kStreamEnd = ~std::uint64_t{0};

// The child: answers Ping with Pong, and checksums a stream of Data frames until kStreamEnd.
int serve(const std::string& name) {
  auto channel = troupe::shm::ShmChannel::attach(name, troupe::shm::ChannelSide::kServer);
  troupe::FrameBuilder builder;
  std::uint64_t stream_frames = 0, stream_sum = 0;
  for (;;) {
    std::error_code ec;
    channel->poll(
        [&](troupe::FrameBytes frame) {
          std::error_code verify_ec;
          const auto* env = troupe::verify_frame(frame, verify_ec);
          if (env == nullptr) {
            std::fprintf(stderr, "child: dropped a frame: %s\n", verify_ec.message().c_str());
            return;
          }
          if (env->kind() == troupe::wire::Kind::Ping) {
            auto pong =
                builder.build({.kind = troupe::wire::Kind::Pong, .call_id = env->call_id()});
            (void)channel->send(pong, Clock::now() + 10s);
          } else if (env->call_id() == kStreamEnd) {
            auto done = builder.build({.kind = troupe::wire::Kind::Data,
                                       .call_id = stream_frames,
                                       .agent_id = stream_sum});
            (void)channel->send(done, Clock::now() + 10s);
            stream_frames = stream_sum = 0;
          } else {
            ++stream_frames;
            stream_sum += env->call_id();
          }
        },
        256, Clock::now() + 1s, ec);
    if (ec) return ec == troupe::Errc::kClosed ? 0 : 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const long round_trips = argc > 1 ? std::atol(argv[1]) : 200'000;
  const long stream_frames = argc > 2 ? std::atol(argv[2]) : 1'000'000;
  if (round_trips <= 0 || stream_frames <= 0) {
    std::fprintf(stderr, "usage: shm_pingpong [round_trips > 0] [stream_frames > 0]\n");
    return 2;
  }
  const std::string name = troupe::shm::unique_segment_name("pingpong");
  auto channel = troupe::shm::ShmChannel::create(name, troupe::shm::ChannelSide::kClient);
  auto child = troupe::ChildProcess::fork([&] {
    channel->segment().disown();  // the parent owns (and removes) the segment
    return serve(name);
  });
  channel->expect_peer(child.pid());
  std::printf("parent %d <-> child %d over shared memory '%s' (rings of %zu KiB)\n", ::getpid(),
              child.pid(), name.c_str(), channel->ring_bytes() / 1024);

  troupe::FrameBuilder builder;
  std::vector<double> micros;
  micros.reserve(static_cast<std::size_t>(round_trips));
  for (long i = 0; i < round_trips; ++i) {
    const auto start = Clock::now();
    auto ping = builder.build({.kind = troupe::wire::Kind::Ping, .call_id = std::uint64_t(i)});
    if (auto ec = channel->send(ping, start + 5s)) {
      std::fprintf(stderr, "send: %s\n", ec.message().c_str());
      return 1;
    }
    bool answered = false;
    std::error_code ec;
    while (!answered) {
      channel->poll(
          [&](troupe::FrameBytes frame) {
            std::error_code verify_ec;
            const auto* env = troupe::verify_frame(frame, verify_ec);
            answered = env != nullptr && env->kind() == troupe::wire::Kind::Pong &&
                       env->call_id() == std::uint64_t(i);
          },
          1, start + 5s, ec);
      if (ec || Clock::now() > start + 5s) {
        std::fprintf(stderr, "no pong for ping %ld: %s\n", i, ec.message().c_str());
        return 1;
      }
    }
    micros.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
  }
  std::sort(micros.begin(), micros.end());
  auto pct = [&](double p) { return micros[static_cast<std::size_t>(p * (micros.size() - 1))]; };
  std::printf("round trip (Ping/Pong envelopes, %ld): median %.2f us, p99 %.2f us, max %.1f us\n",
              round_trips, pct(0.5), pct(0.99), micros.back());

  // Streaming: publish in batches of 32, the child checksums the call ids.
  const auto start = Clock::now();
  std::uint64_t expected_sum = 0;
  for (long i = 0; i < stream_frames; ++i) {
    auto frame = builder.build({.kind = troupe::wire::Kind::Data, .call_id = std::uint64_t(i)});
    expected_sum += static_cast<std::uint64_t>(i);
    if (auto ec = channel->send(frame, Clock::now() + 5s, /*flush=*/i % 32 == 31)) {
      std::fprintf(stderr, "stream send: %s\n", ec.message().c_str());
      return 1;
    }
  }
  auto end = builder.build({.kind = troupe::wire::Kind::Data, .call_id = kStreamEnd});
  (void)channel->send(end, Clock::now() + 5s);
  std::uint64_t got_frames = 0, got_sum = 0;
  std::error_code ec;
  while (channel->poll(
             [&](troupe::FrameBytes frame) {
               std::error_code verify_ec;
               if (const auto* env = troupe::verify_frame(frame, verify_ec)) {
                 got_frames = env->call_id();
                 got_sum = env->agent_id();
               }
             },
             1, Clock::now() + 10s, ec) == 0) {
    if (ec) break;
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const bool ok = got_frames == std::uint64_t(stream_frames) && got_sum == expected_sum;
  std::printf("stream (%ld envelopes of %zu bytes): %.2f M frames/s, checksum %s\n", stream_frames,
              end.size(), stream_frames / seconds / 1e6, ok ? "ok" : "MISMATCH");
  channel->close();
  const int status = child.wait();
  std::printf("child %s\n", troupe::describe_exit(status).c_str());
  return ok ? 0 : 1;
}
