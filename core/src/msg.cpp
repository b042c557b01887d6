#include "troupe/core/msg.hpp"

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <random>

namespace troupe {

namespace {
// Bumped in every forked child, so that a child reseeds instead of repeating its parent's ids.
std::atomic<unsigned> g_fork_generation{1};
const bool g_atfork_registered = [] {
  pthread_atfork(nullptr, nullptr,
                 [] { g_fork_generation.fetch_add(1, std::memory_order_relaxed); });
  return true;
}();
}  // namespace

std::string new_msg_id() {
  // One generator per thread, seeded from the OS on first use and again after a fork.
  thread_local std::mt19937_64 rng;
  thread_local unsigned seeded_generation = 0;
  if (unsigned generation = g_fork_generation.load(std::memory_order_relaxed);
      generation != seeded_generation) {
    rng.seed(std::random_device{}());
    seeded_generation = generation;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(32, '0');
  for (int half = 0; half < 2; ++half) {
    std::uint64_t bits = rng();
    for (int i = 0; i < 16; ++i, bits >>= 4) id[half * 16 + i] = kHex[bits & 0xF];
  }
  return id;
}

Msg::Msg(std::string name, std::string content, std::string role)
    : id_(new_msg_id()),
      name_(std::move(name)),
      role_(std::move(role)),
      content_(std::move(content)),
      timestamp_ns_(std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count()) {}

bool Msg::empty() const noexcept { return *this == Msg(); }

bool Msg::same_content_as(const Msg& other) const noexcept {
  return name_ == other.name_ && role_ == other.role_ && content_ == other.content_ &&
         url_ == other.url_ && metadata_ == other.metadata_ && payload_ == other.payload_;
}

}  // namespace troupe
