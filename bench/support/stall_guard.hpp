#pragma once
// A benchmark's guard against a peer that stopped answering: the case fails instead of hanging.
// Shared by the shm benchmarks.
#include <chrono>
#include <cstdint>

#include "support/raw_ring.hpp"

namespace troupe::bench {

/// Fails (throws) once idle() has been called for 60 s with no progress() between. idle() is
/// called once per fruitless poll; it reads the clock once every 1024 calls.
class StallGuard {
 public:
  void idle() {
    if ((++idle_ & 1023) != 0) return;
    const auto now = std::chrono::steady_clock::now();
    if (since_ == std::chrono::steady_clock::time_point{}) {
      since_ = now;
    } else if (now - since_ > kGiveUp) {
      fail("stalled: the peer made no progress for 60 s");
    }
  }
  void progress() noexcept {
    idle_ = 0;
    since_ = {};
  }

  static constexpr std::chrono::seconds kGiveUp{60};

 private:
  std::uint32_t idle_ = 0;
  std::chrono::steady_clock::time_point since_{};
};

}  // namespace troupe::bench
