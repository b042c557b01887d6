#pragma once
// How a thread waits for its peer: spin, then yield, then sleep on a futex, adapting to load.
//
// On the 2-vCPU development VM a kernel wake-up across cores costs 60-80 us while a spinning
// round trip is under 0.5 us, so a short wait must not sleep. But with more runnable threads
// than cores, a spinning waiter burns the very time slice its peer needs. The waiter measures
// that directly: a sched_yield() that returns after more than a few microseconds means another
// thread ran on this core, i.e. the CPU is oversubscribed; then the waiter spins only a couple
// of microseconds (enough when the peer is running on the other core and answers within a
// round trip) before it yields, until yields come back fast again. With no spin at all, 8 echo
// children and one parent on 2 cores made 1.6 M round trips/s; with the short spin, 6.2 M/s
// (bench/shm/spsc_ring_bench, Oversub8/TroupeRing/adaptive).
//
// Not thread-safe: one waiter per waiting role (each ring end owns one).
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <system_error>

#include "troupe/core/channel.hpp"
#include "troupe/core/detail/cpu_relax.hpp"
#include "troupe/core/error.hpp"

namespace troupe::shm {

struct WaitPolicy {
  /// Spin this long before yielding; about the 17 us that kept spinning figures on this VM.
  std::chrono::nanoseconds spin{20'000};
  /// Then yield this long before sleeping in the kernel.
  std::chrono::nanoseconds yield{200'000};
  /// Then sleep on the futex in slices of this length, checking the peer between them: it bounds
  /// how late a dead peer is noticed.
  std::chrono::nanoseconds sleep_slice{5'000'000};
  /// How long to spin before yielding when the CPU is oversubscribed: a few round trips.
  std::chrono::nanoseconds oversubscribed_spin{2'000};
  /// A yield slower than this means another thread ran here: the CPU is oversubscribed.
  std::chrono::nanoseconds contended_yield{3'000};
};

using troupe::cpu_relax;

class AdaptiveWaiter {
 public:
  explicit AdaptiveWaiter(WaitPolicy policy = {}) noexcept : policy_(policy) {}

  /// Waits until `ready()` is true. `sleep(slice)` blocks at most `slice` on the futex and must
  /// return early when woken; `alive()` is asked between sleeps. Returns {} when ready,
  /// Errc::kTimeout after `deadline`, or what `alive()` reports (an error code) when the peer
  /// is gone and nothing is ready.
  template <class Ready, class Sleep, class Alive>
  std::error_code wait(Ready&& ready, Sleep&& sleep, Alive&& alive, Deadline deadline) {
    if (ready()) return {};
    if (deadline == kNoWait) return make_error_code(Errc::kTimeout);
    // Most waits end within a few spins (a streaming peer publishes every ~50 ns): look
    // before paying for a clock read (~30 ns on this VM's kvm-clock, a pause ~20 ns).
    for (int i = 0; i < kEagerSpins; ++i) {
      cpu_relax();
      if (ready()) return {};
    }
    const auto start = Clock::now();
    if (start >= deadline) {  // a poll that may not wait: still says when the peer is gone
      if (std::error_code gone = alive()) return ready() ? std::error_code{} : gone;
      return make_error_code(Errc::kTimeout);
    }
    {
      // Oversubscribed, a short spin still pays when the peer is running on another core (it
      // answers within a round trip); a full one would burn the slice a descheduled peer needs.
      const auto spin = oversubscribed() ? policy_.oversubscribed_spin : policy_.spin;
      const auto spin_end = std::min(start + spin, deadline);
      for (std::uint32_t i = 1;; ++i) {
        cpu_relax();
        if (ready()) return {};
        if (i % 64 == 0 && Clock::now() >= spin_end) break;  // a clock read costs ~20 spins
      }
    }
    auto now = Clock::now();
    const auto yield_end = std::min(now + policy_.yield, deadline);
    while (now < yield_end) {
      ::sched_yield();
      const auto after = Clock::now();
      note_yield(after - now);
      now = after;
      if (ready()) return {};
    }
    for (;;) {
      if (std::error_code gone = alive()) return ready() ? std::error_code{} : gone;
      now = Clock::now();
      if (now >= deadline) return ready() ? std::error_code{} : make_error_code(Errc::kTimeout);
      sleep(std::min<std::chrono::nanoseconds>(policy_.sleep_slice, deadline - now));
      if (ready()) return {};
      ++sleeps_;
    }
  }

  bool oversubscribed() const noexcept { return contention_ >= kContendedThreshold; }
  std::uint64_t sleeps() const noexcept { return sleeps_; }
  const WaitPolicy& policy() const noexcept { return policy_; }

 private:
  static constexpr int kEagerSpins = 8;
  static constexpr int kContendedThreshold = 4;
  static constexpr int kContentionCap = 8;

  // A saturating score: slow yields push it up, fast ones down, so a brief burst of load does
  // not switch strategies and a lasting one does within a few yields.
  void note_yield(std::chrono::nanoseconds took) noexcept {
    if (took > policy_.contended_yield) {
      contention_ = std::min(contention_ + 1, kContentionCap);
    } else if (contention_ > 0) {
      --contention_;
    }
  }

  WaitPolicy policy_;
  int contention_ = 0;
  std::uint64_t sleeps_ = 0;
};

}  // namespace troupe::shm
