// The seed's graph, A->B, A->C, B->D, C->D, E->F, D->F, written as a sequential program:
//
//   x = A(); y = B(x); z = C(x); w = D({y, z}); e = E(); f = F({w, e});
//
// Every agent runs in its own process and sleeps a while in reply(). The program prints when
// each started and finished (timestamps taken inside the agents): B and C overlap, E starts at
// once, and the whole takes about three sleeps, not six.
//
//   dag [sleep_ms]      default 200
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <troupe/troupe.hpp>

namespace {

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Sleeps, then answers with its inputs' contents and when it started and finished.
class Sleeper : public troupe::AgentBase {
 public:
  using AgentBase::AgentBase;
  troupe::Msg reply(const std::vector<troupe::Msg>& xs) override {
    const std::int64_t start = now_ns();
    std::this_thread::sleep_for(std::chrono::milliseconds(kwargs().value("sleep_ms", 200)));
    std::string content = name();
    for (const auto& x : xs) {
      if (!x.empty()) content += "(" + x.content() + ")";
    }
    return troupe::Msg(name(), content)
        .set_metadata(nlohmann::json{{"start_ns", start}, {"end_ns", now_ns()}}.dump());
  }
  troupe::Msg reply(const troupe::Msg& x) override { return reply(std::vector<troupe::Msg>{x}); }
};
TROUPE_REGISTER_AGENT(Sleeper);

}  // namespace

int main(int argc, char** argv) {
  troupe::init(argc, argv);
  const int sleep_ms = argc > 1 ? std::atoi(argv[1]) : 200;
  if (sleep_ms < 0) {
    std::fprintf(stderr, "usage: dag [sleep_ms >= 0]\n");
    return 2;
  }
  const troupe::Kwargs kwargs{{"sleep_ms", sleep_ms}};
  // Start the six servers first, so that start-up does not blur the timeline.
  troupe::DistOptions eager{.lazy_launch = false};
  auto A = Sleeper("A", kwargs).to_dist(eager), B = Sleeper("B", kwargs).to_dist(eager),
       C = Sleeper("C", kwargs).to_dist(eager), D = Sleeper("D", kwargs).to_dist(eager),
       E = Sleeper("E", kwargs).to_dist(eager), F = Sleeper("F", kwargs).to_dist(eager);

  const std::int64_t t0 = now_ns();
  troupe::Msg x = A();
  troupe::Msg y = B(x);
  troupe::Msg z = C(x);
  troupe::Msg w = D({y, z});
  troupe::Msg e = E();
  troupe::Msg f = F({w, e});
  const double issued_ms = (now_ns() - t0) / 1e6;

  std::printf("F says: %s\n", f.content().c_str());  // blocks until the graph is done
  const double total_ms = (now_ns() - t0) / 1e6;
  std::printf("all six calls issued in %.3f ms; result after %.0f ms (sleep %d ms each)\n",
              issued_ms, total_ms, sleep_ms);
  const auto start = [](const troupe::Msg& m) {
    return nlohmann::json::parse(m.metadata())["start_ns"].get<std::int64_t>();
  };
  const auto end = [](const troupe::Msg& m) {
    return nlohmann::json::parse(m.metadata())["end_ns"].get<std::int64_t>();
  };
  for (const troupe::Msg* m : {&x, &y, &z, &w, &e, &f}) {
    std::printf("  %s  started %7.1f ms  finished %7.1f ms\n", m->name().c_str(),
                (start(*m) - t0) / 1e6, (end(*m) - t0) / 1e6);
  }
  // What the timeline shows: B and C ran at the same time, E did not wait for A.
  const bool overlap = start(y) < end(z) && start(z) < end(y);
  const bool e_at_once = start(e) < end(x);
  std::printf("B and C overlapped: %s; E started before A finished: %s\n", overlap ? "yes" : "no",
              e_at_once ? "yes" : "no");
  return 0;
}
