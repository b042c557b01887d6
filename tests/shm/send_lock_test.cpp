// SendLock: mutual exclusion under contention, for both of its protocols (the membarrier one
// and the seq_cst fallback), with holders that sometimes sleep so that waiters take the futex
// path too. Each holder does a non-atomic read-modify-write of shared state that a lost
// exclusion would corrupt (and ThreadSanitizer would report).
#include "troupe/shm/send_lock.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "troupe/shm/futex.hpp"

namespace troupe::shm {
namespace {

struct Guarded {
  std::uint64_t count = 0;
  std::uint64_t checksum = 0;  // the sum of every holder's value
  bool inside = false;         // set while a holder is in its critical section
};

// `threads` threads each take the lock `rounds` times; every 1000th time the holder sleeps
// 50 us, so that the others give up spinning and sleep on the lock's futex (a wake-up lost
// there costs the 5 ms bound of that sleep: slow, which this test does not catch).
void hammer(SendLock& lock, int threads, std::uint64_t rounds) {
  Guarded guarded;
  std::atomic<int> overlaps{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (std::uint64_t i = 0; i < rounds; ++i) {
        std::lock_guard hold(lock);
        if (guarded.inside) overlaps.fetch_add(1, std::memory_order_relaxed);
        guarded.inside = true;
        guarded.checksum = guarded.checksum + (static_cast<std::uint64_t>(t) << 32 | i);
        guarded.count = guarded.count + 1;
        if (i % 1000 == 999) std::this_thread::sleep_for(std::chrono::microseconds(50));
        guarded.inside = false;
      }
    });
  }
  for (auto& w : workers) w.join();
  std::uint64_t expected = 0;
  for (int t = 0; t < threads; ++t) {
    for (std::uint64_t i = 0; i < rounds; ++i) expected += static_cast<std::uint64_t>(t) << 32 | i;
  }
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(guarded.count, static_cast<std::uint64_t>(threads) * rounds);
  EXPECT_EQ(guarded.checksum, expected);
}

TEST(SendLockTest, ExcludesWithTheMembarrierProtocol) {
  if (!asymmetric_barrier_available()) {
    GTEST_SKIP() << "membarrier(GLOBAL_EXPEDITED) is not available here; the fallback test "
                    "covers the lock";
  }
  SendLock lock(/*asymmetric=*/true);
  hammer(lock, 4, 50'000);
}

TEST(SendLockTest, ExcludesWithTheSeqCstFallback) {
  SendLock lock(/*asymmetric=*/false);
  hammer(lock, 4, 50'000);
}

TEST(SendLockTest, TryLockFailsWhileHeldAndAWaiterGetsItOnRelease) {
  SendLock lock;
  lock.lock();
  EXPECT_FALSE(lock.try_lock());
  std::atomic<bool> got{false};
  std::thread waiter([&] {
    lock.lock();  // spins, then sleeps on the futex
    got.store(true);
    lock.unlock();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(got.load());
  lock.unlock();
  waiter.join();
  EXPECT_TRUE(got.load());
  EXPECT_TRUE(lock.try_lock());
  lock.unlock();
}

}  // namespace
}  // namespace troupe::shm
