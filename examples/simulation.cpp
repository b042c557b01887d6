// A population simulation: N villagers on a ring, spread over K forked servers, R rounds. In
// each round every villager hears its two neighbours' opinions and its own from the round before
// and forms a new one, nudged by a noise of its own (a private random stream: state that lives
// in the villager's server). The central program is the plain sequential loop
//
//   for each round:  for each i:  next[i] = villager[i]({now[i-1], now[i], now[i+1]});
//
// It issues every call of every round without waiting (each is a placeholder whose inputs are
// placeholders of the round before); Troupe runs a call as soon as its three inputs are in, so
// rounds overlap across the ring instead of stepping in lock-step. The program then runs the same
// loop on in-process villagers on its own thread and checks that every final opinion is the same.
// A villager also thinks for `think_us` microseconds of CPU per call (a busy wait): with nothing
// to think about, a call is cheaper in-process than the trip to another process.
//
//   simulation [agents] [servers] [rounds] [think_us]      defaults 10000 2 5 20
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <troupe/troupe.hpp>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kMaxOpinion = 1000;

// `text` whole as a number, or nullopt.
template <class T>
std::optional<T> whole_number(std::string_view text) {
  T value{};
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

int opinion_of(const troupe::Msg& m) {
  const std::optional<int> value = whole_number<int>(m.content());
  if (!value) throw troupe::Error("not an opinion: '" + m.content() + "'");
  return *value;
}

// Holds an opinion in [0, kMaxOpinion]; kwargs: seed (its noise), stubbornness (the weight of
// its own opinion against each neighbour's, which weigh 1), think_us.
class Villager : public troupe::AgentBase {
 public:
  Villager(std::string name, troupe::Kwargs kwargs)
      : AgentBase(std::move(name), std::move(kwargs)),
        noise_(this->kwargs().at("seed").get<std::uint64_t>()),
        stubbornness_(this->kwargs().value("stubbornness", 2)),
        think_(this->kwargs().value("think_us", 0)) {}

  troupe::Msg reply(const std::vector<troupe::Msg>& xs) override {
    if (xs.size() != 3) throw troupe::Error("a villager hears {left, self, right}");
    for (const auto until = Clock::now() + think_; Clock::now() < until;) {
    }
    const int left = opinion_of(xs[0]), self = opinion_of(xs[1]), right = opinion_of(xs[2]);
    const int nudge = static_cast<int>(noise_() % 41) - 20;  // -20..20
    const int weights = stubbornness_ + 2;
    const int mixed = (stubbornness_ * self + left + right + weights / 2) / weights + nudge;
    return troupe::Msg(name(), std::to_string(std::clamp(mixed, 0, kMaxOpinion)));
  }

 private:
  std::mt19937_64 noise_;
  int stubbornness_;
  std::chrono::microseconds think_;
};
TROUPE_REGISTER_AGENT(Villager);

troupe::Kwargs villager_kwargs(std::size_t i, long think_us) {
  return {{"seed", 0x5eed0000 + i},
          {"stubbornness", 1 + static_cast<int>(i % 4)},
          {"think_us", think_us}};
}

// The central program, the same for both placements: `call(i, inputs)` calls villager i.
template <class Call>
std::vector<troupe::Msg> run_rounds(std::size_t n, int rounds, Call&& call) {
  std::vector<troupe::Msg> now(n), next(n);
  for (std::size_t i = 0; i < n; ++i) {
    now[i] = troupe::Msg("world", std::to_string((i * 7919) % (kMaxOpinion + 1)));
  }
  for (int r = 0; r < rounds; ++r) {
    for (std::size_t i = 0; i < n; ++i) {
      next[i] = call(i, {now[(i + n - 1) % n], now[i], now[(i + 1) % n]});
    }
    now.swap(next);
  }
  return now;
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Argument `index` as a whole number in [low, high], or `fallback` when absent; nullopt (having
// said why) when it is not one.
std::optional<long> parse_arg(int argc, char** argv, int index, const char* what, long fallback,
                              long low, long high) {
  if (argc <= index) return fallback;
  const std::optional<long> value = whole_number<long>(argv[index]);
  if (!value || *value < low || *value > high) {
    std::fprintf(stderr, "simulation: %s must be a whole number in [%ld, %ld], not '%s'\n", what,
                 low, high, argv[index]);
    return std::nullopt;
  }
  return value;
}

}  // namespace

int main(int argc, char** argv) try {
  troupe::init(argc, argv);
  const auto agents_arg = parse_arg(argc, argv, 1, "agents", 10000, 1, 10'000'000);
  const auto servers_arg =
      agents_arg ? parse_arg(argc, argv, 2, "servers", 2, 1, std::min(*agents_arg, 64L))
                 : std::nullopt;
  const auto rounds_arg = parse_arg(argc, argv, 3, "rounds", 5, 1, 1'000'000);
  const auto think_arg = parse_arg(argc, argv, 4, "think_us", 20, 0, 1'000'000);
  if (!agents_arg || !servers_arg || !rounds_arg || !think_arg) {
    std::fprintf(stderr, "usage: simulation [agents] [servers] [rounds] [think_us]\n");
    return 2;
  }
  const long agents = *agents_arg, servers = *servers_arg, rounds = *rounds_arg,
             think_us = *think_arg;
  const auto n = static_cast<std::size_t>(agents);
  const auto calls = static_cast<double>(n) * static_cast<double>(rounds);
  std::printf(
      "%zu villagers on %ld servers, %ld rounds: %.0f calls, each waiting for three "
      "results of the round before and thinking %ld us\n",
      n, servers, rounds, calls, think_us);

  // Villager i lives on server i % servers: the first villager of each server launches it, the
  // others join it by its port.
  auto t0 = Clock::now();
  std::vector<troupe::DistAgent> distributed;
  distributed.reserve(n);
  std::vector<int> ports;
  for (std::size_t i = 0; i < n; ++i) {
    const Villager prototype("V" + std::to_string(i), villager_kwargs(i, think_us));
    const std::size_t server = i % static_cast<std::size_t>(servers);
    if (server == ports.size()) {
      distributed.push_back(prototype.to_dist({.lazy_launch = false}));
      ports.push_back(distributed.back().port());
    } else {
      distributed.push_back(prototype.to_dist({.port = ports[server], .launch_server = false}));
    }
  }
  const double setup_ms = ms_since(t0);

  t0 = Clock::now();
  const std::vector<troupe::Msg> final_distributed = run_rounds(
      n, static_cast<int>(rounds),
      [&](std::size_t i, std::vector<troupe::Msg> xs) { return distributed[i](std::move(xs)); });
  const double issued_ms = ms_since(t0);
  troupe::wait_all(final_distributed);
  const double distributed_ms = ms_since(t0);
  std::printf(
      "distributed: set up in %.0f ms; every call issued after %.0f ms, the last "
      "round in after %.0f ms: %.0f calls/s\n",
      setup_ms, issued_ms, distributed_ms, calls / distributed_ms * 1e3);

  std::vector<std::unique_ptr<Villager>> local;
  local.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    local.push_back(
        std::make_unique<Villager>("V" + std::to_string(i), villager_kwargs(i, think_us)));
  }
  t0 = Clock::now();
  const std::vector<troupe::Msg> final_local = run_rounds(
      n, static_cast<int>(rounds),
      [&](std::size_t i, std::vector<troupe::Msg> xs) { return (*local[i])(std::move(xs)); });
  const double local_ms = ms_since(t0);
  std::printf(
      "in-process, sequential on this thread: %.0f ms: %.0f calls/s (distributed: %.2fx "
      "its speed)\n",
      local_ms, calls / local_ms * 1e3, local_ms / distributed_ms);

  std::size_t differ = 0, failed = 0;
  double sum = 0, sum_sq = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (final_distributed[i].error()) {
      if (failed++ == 0) {
        std::fprintf(stderr, "villager %zu failed: %s\n", i,
                     final_distributed[i].error_message().c_str());
      }
      continue;
    }
    if (!final_distributed[i].same_content_as(final_local[i])) ++differ;
    const double x = opinion_of(final_local[i]);
    sum += x;
    sum_sq += x * x;
  }
  const double mean = sum / static_cast<double>(n);
  std::printf("opinions after %ld rounds: mean %.1f, standard deviation %.1f\n", rounds, mean,
              std::sqrt(std::max(0.0, sum_sq / static_cast<double>(n) - mean * mean)));
  const bool same = differ == 0 && failed == 0;
  std::printf("every final opinion identical to the sequential run: %s", same ? "yes\n" : "NO");
  if (!same) std::printf(" (%zu differ, %zu failed)\n", differ, failed);
  return same ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "simulation: %s\n", e.what());
  return 1;
}
