#include "troupe/core/detail/recycling_allocator.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <memory>
#include <set>
#include <thread>
#include <vector>

namespace troupe::detail {
namespace {

struct Payload {
  std::array<char, 200> bytes{};
  int value = 0;
  explicit Payload(int v) : value(v) { bytes.fill(static_cast<char>(v)); }
};

std::shared_ptr<Payload> make_payload(int v) {
  return std::allocate_shared<Payload>(RecyclingAllocator<Payload>{}, v);
}

TEST(RecyclingAllocatorTest, AFreedBlockIsHandedOutAgainOnItsThread) {
  const void* first = make_payload(1).get();  // made and dropped at once
  auto second = make_payload(2);
  if (kRecycleBlocks) {  // (under AddressSanitizer nothing is kept)
    EXPECT_EQ(second.get(), first);
  }
  EXPECT_EQ(second->value, 2);
  EXPECT_EQ(second->bytes[199], 2);
}

TEST(RecyclingAllocatorTest, BurstsLargerThanTheCacheAreAllDistinctAndIntact) {
  constexpr int kBurst = 3 * static_cast<int>(kRecycledBlocksKept) / 2;
  for (int round = 0; round < 3; ++round) {
    std::vector<std::shared_ptr<Payload>> live;
    std::set<const void*> addresses;
    for (int i = 0; i < kBurst; ++i) {
      live.push_back(make_payload(i % 100));
      addresses.insert(live.back().get());
    }
    EXPECT_EQ(addresses.size(), static_cast<std::size_t>(kBurst));
    for (int i = 0; i < kBurst; ++i) {
      ASSERT_EQ(live[i]->value, i % 100);
      ASSERT_EQ(live[i]->bytes[0], static_cast<char>(i % 100));
    }
  }
}

// Made on one thread, dropped on another (a reply pump settles what the caller made), and
// dropped after the making thread has ended. The sanitizer builds check the blocks' reuse
// across threads (ThreadSanitizer) and that none is lost (LeakSanitizer).
TEST(RecyclingAllocatorTest, BlocksMayBeFreedOnAnotherThreadAndOutliveTheirMaker) {
  std::vector<std::shared_ptr<Payload>> made;
  std::thread maker([&made] {
    for (int i = 0; i < 10000; ++i) made.push_back(make_payload(i % 7));
    made.erase(made.begin(), made.begin() + 5000);  // some back to the maker's own cache
  });
  maker.join();  // the maker's cache is released here
  std::thread dropper([&made] {
    for (std::size_t i = 0; i < made.size(); ++i) ASSERT_EQ(made[i]->value, (i + 5000) % 7);
    made.clear();
    auto again = make_payload(3);  // from the dropper's cache
    EXPECT_EQ(again->value, 3);
  });
  dropper.join();
}

// A thread_local made before the thread's cache is destroyed after it: the block it frees
// then goes straight back to the global allocator.
TEST(RecyclingAllocatorTest, ABlockFreedAfterItsThreadsCacheEndedIsReleased) {
  struct Holder {
    std::shared_ptr<Payload> payload;
  };
  std::thread([] {
    thread_local Holder holder;        // constructed first, destroyed last
    holder.payload = make_payload(9);  // the cache is made now, after the holder
    EXPECT_EQ(holder.payload->value, 9);
  }).join();
}

TEST(RecyclingAllocatorTest, OverAlignedObjectsKeepTheirAlignment) {
  struct alignas(64) Wide {
    std::array<char, 100> bytes{};
  };
  for (int i = 0; i < 3; ++i) {
    auto wide = std::allocate_shared<Wide>(RecyclingAllocator<Wide>{});
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(wide.get()) % 64, 0u);
  }
}

TEST(RecyclingAllocatorTest, ArraysGoToTheGlobalAllocator) {
  RecyclingAllocator<Payload> allocator;
  Payload* several = allocator.allocate(3);
  ASSERT_NE(several, nullptr);
  allocator.deallocate(several, 3);
  std::vector<int, RecyclingAllocator<int>> numbers(1000, 5);
  EXPECT_EQ(numbers[999], 5);
}

}  // namespace
}  // namespace troupe::detail
