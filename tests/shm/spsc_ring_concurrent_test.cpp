// The ring as two threads over one mapping (ThreadSanitizer sees threads, not processes):
// random sizes, sequence numbers and checksums; with spinning and with sleeping waiters, so the
// futex handshake is exercised too.
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <random>
#include <thread>

#include "shm/ring_fixture.hpp"
#include "support/test_support.hpp"
#include "troupe/shm/record_batch.hpp"
#include "troupe/shm/spsc_ring.hpp"
#include "troupe/shm/wait_strategy.hpp"

namespace troupe::shm {
namespace {

using test::LocalRing;

struct StressResult {
  std::uint64_t received = 0;
  std::uint64_t corrupt = 0;
  std::uint64_t out_of_order = 0;
  std::atomic<std::uint64_t> sleep_timeouts{0};  ///< futex sleeps that ended by timeout
  std::atomic<bool> oversubscribed{false};       ///< a waiter judged the CPU oversubscribed
};

// Producer thread pushes `count` checksummed messages (batches of up to `batch`, written one by
// one, or with `append_batches` gathered in a RecordBatch and appended in one copy), consumer
// checks them; both wait with `policy` when the ring is full / empty.
void run_stress(StressResult& result, std::size_t capacity, std::uint64_t count,
                std::size_t max_size, int batch, WaitPolicy policy, bool append_batches = false) {
  LocalRing ring(capacity);
  std::barrier start(2);
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  std::thread producer_thread([&] {
    auto p = ring.producer();
    AdaptiveWaiter waiter(policy);
    std::mt19937_64 rng(42);
    start.arrive_and_wait();
    // Waits until `write()` succeeds, for room for `payload` bytes; false when it gave up.
    auto write_or_wait = [&](auto&& write, std::size_t payload) {
      while (!write()) {
        p.publish();
        auto ec = waiter.wait([&] { return p.has_space_for(payload); },
                              [&](auto slice) {
                                if (!p.sleep_for_space(payload, slice)) {
                                  result.sleep_timeouts.fetch_add(1);
                                }
                              },
                              [] { return std::error_code{}; }, deadline);
        if (waiter.oversubscribed()) result.oversubscribed.store(true);
        if (ec) return false;
      }
      return true;
    };
    RecordBatch gathered(p.max_batch_bytes());
    auto append_gathered = [&] {
      const bool ok = write_or_wait([&] { return p.try_append(gathered); },
                                    gathered.bytes().size() - 8);  // as one record's payload
      gathered.clear();
      return ok;
    };
    for (std::uint64_t seq = 0; seq < count; ++seq) {
      auto msg = troupe::test::make_message(seq, 16 + rng() % (max_size - 15), rng);
      if (append_batches) {
        if (!gathered.append(RecordType::kMessage, msg)) {
          if (!append_gathered()) return;
          ASSERT_TRUE(gathered.append(RecordType::kMessage, msg));
        }
      } else if (!write_or_wait([&] { return p.try_write(RecordType::kMessage, msg); },
                                msg.size())) {
        return;
      }
      if (static_cast<int>(seq % batch) == batch - 1) {
        if (!gathered.empty() && !append_gathered()) return;
        p.publish();
      }
    }
    if (!gathered.empty() && !append_gathered()) return;
    p.publish();
  });
  auto c = ring.consumer();
  AdaptiveWaiter waiter(policy);
  start.arrive_and_wait();
  while (result.received < count) {
    auto ec = waiter.wait([&] { return c.has_data(); },
                          [&](auto slice) {
                            if (!c.sleep_for_data(slice)) result.sleep_timeouts.fetch_add(1);
                          },
                          [] { return std::error_code{}; }, deadline);
    if (waiter.oversubscribed()) result.oversubscribed.store(true);
    if (ec) break;
    while (auto r = c.try_take()) {
      const std::uint64_t seq = troupe::test::check_message(r->payload);
      if (seq == ~std::uint64_t{0}) {
        ++result.corrupt;
      } else if (seq != result.received) {
        ++result.out_of_order;
      }
      ++result.received;
    }
    c.publish_head();
  }
  producer_thread.join();
}

TEST(SpscRingConcurrentTest, SpinningTwoThreadsNoLossNoReorder) {
  StressResult r;
  run_stress(r, 1 << 16, 400'000, 600, 1, WaitPolicy{});
  EXPECT_EQ(r.received, 400'000u);
  EXPECT_EQ(r.corrupt, 0u);
  EXPECT_EQ(r.out_of_order, 0u);
}

TEST(SpscRingConcurrentTest, BatchedPublicationSmallRing) {
  StressResult r;
  run_stress(r, 4096, 400'000, 1500, 32, WaitPolicy{});
  EXPECT_EQ(r.received, 400'000u);
  EXPECT_EQ(r.corrupt, 0u);
  EXPECT_EQ(r.out_of_order, 0u);
}

TEST(SpscRingConcurrentTest, AppendedBatchesNoLossNoReorder) {
  StressResult r;
  run_stress(r, 1 << 14, 400'000, 700, 32, WaitPolicy{}, /*append_batches=*/true);
  EXPECT_EQ(r.received, 400'000u);
  EXPECT_EQ(r.corrupt, 0u);
  EXPECT_EQ(r.out_of_order, 0u);
}

TEST(SpscRingConcurrentTest, SleepingWaitersLoseNoWakeUp) {
  // No spin, no yield: every wait goes to the futex, so a lost wake-up would show as a stall
  // of one sleep slice (and, with a 10 s slice, as a timeout of this test).
  WaitPolicy sleepy{.spin = std::chrono::nanoseconds(0),
                    .yield = std::chrono::nanoseconds(0),
                    .sleep_slice = std::chrono::seconds(10)};
  const auto start = Clock::now();
  StressResult r;
  run_stress(r, 4096, 100'000, 1000, 4, sleepy);
  EXPECT_EQ(r.received, 100'000u);
  EXPECT_EQ(r.corrupt, 0u);
  EXPECT_EQ(r.out_of_order, 0u);
  EXPECT_EQ(r.sleep_timeouts.load(), 0u) << "a wake-up was lost";
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(60));
}

TEST(SpscRingConcurrentTest, OversubscribedWaitersNoLossNoReorder) {
  // Every yield counts as contended, so both waiters soon take the oversubscribed path: a
  // short spin, then yields at once, then sleeps.
  WaitPolicy contended{.spin = std::chrono::microseconds(1),
                       .yield = std::chrono::microseconds(50),
                       .sleep_slice = std::chrono::seconds(10),
                       .oversubscribed_spin = std::chrono::nanoseconds(500),
                       .contended_yield = std::chrono::nanoseconds(0)};
  StressResult r;
  run_stress(r, 4096, 200'000, 1000, 4, contended);
  EXPECT_EQ(r.received, 200'000u);
  EXPECT_EQ(r.corrupt, 0u);
  EXPECT_EQ(r.out_of_order, 0u);
  EXPECT_EQ(r.sleep_timeouts.load(), 0u) << "a wake-up was lost";
  EXPECT_TRUE(r.oversubscribed.load()) << "the oversubscribed path was not taken";
}

}  // namespace
}  // namespace troupe::shm
