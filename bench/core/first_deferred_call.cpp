// How long the program's first call that must wait (its input pending, so it goes through the
// dispatcher's TBB flow graph) takes to return its placeholder, once per process: what
// troupe::init's warm-up of the dispatcher is for. Baselines from the same run: the first
// such call on a second agent (a lane's first nodes), and a later one on the first agent.
//
//   build/release/bench/first_deferred_call
#include <chrono>
#include <cstdio>
#include <troupe/troupe.hpp>

namespace {

class Echo : public troupe::AgentBase {
 public:
  using AgentBase::AgentBase;
  troupe::Msg reply(const troupe::Msg& x) override { return troupe::Msg(name(), x.content()); }
};
TROUPE_REGISTER_AGENT(Echo);

/// Microseconds that b(x) takes to return, x a pending result of a.
double deferred_call_us(const troupe::DistAgent& a, const troupe::DistAgent& b) {
  const troupe::Msg x = a(troupe::Msg("u", "x"));
  const auto start = std::chrono::steady_clock::now();
  const troupe::Msg y = b(x);
  const auto took = std::chrono::steady_clock::now() - start;
  (void)y.content();
  return std::chrono::duration<double, std::micro>(took).count();
}

}  // namespace

int main(int argc, char** argv) {
  troupe::init(argc, argv);
  const auto a = Echo("A").to_dist({.lazy_launch = false});
  const auto b = Echo("B").to_dist({.lazy_launch = false});
  const auto c = Echo("C").to_dist({.lazy_launch = false});
  const double first = deferred_call_us(a, b);
  const double first_on_another_agent = deferred_call_us(a, c);
  const double later = deferred_call_us(a, b);
  std::printf("the program's first call that must wait: %.1f us\n", first);
  std::printf("the first on a second agent:             %.1f us\n", first_on_another_agent);
  std::printf("a later one:                             %.1f us\n", later);
}
