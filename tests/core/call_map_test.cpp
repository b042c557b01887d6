#include "troupe/core/detail/call_map.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <unordered_map>

namespace troupe::detail {
namespace {

TEST(CallMapTest, TakesWhatWasInsertedOnce) {
  CallMap<int> map;
  map.insert(1, 10);
  map.insert(2, 20);
  EXPECT_EQ(map.size(), 2u);
  EXPECT_EQ(map.take(2), 20);
  EXPECT_EQ(map.take(2), std::nullopt);
  EXPECT_EQ(map.take(3), std::nullopt);
  EXPECT_EQ(map.take(1), 10);
  EXPECT_TRUE(map.empty());
}

// 0 marks an empty slot, and a peer's frame may carry it: never found, whatever the map holds.
TEST(CallMapTest, KeyZeroIsNeverFound) {
  CallMap<std::shared_ptr<int>> map;
  EXPECT_EQ(map.take(0), std::nullopt);
  map.insert(64, std::make_shared<int>(1));  // slot 0 of the smallest array
  map.insert(3, std::make_shared<int>(3));
  EXPECT_EQ(map.take(0), std::nullopt);
  EXPECT_EQ(map.size(), 2u);
  EXPECT_EQ(*map.take(64).value(), 1);
  EXPECT_EQ(map.take(0), std::nullopt);
  EXPECT_EQ(map.size(), 1u);
  EXPECT_EQ(*map.take(3).value(), 3);
  EXPECT_TRUE(map.empty());
}

TEST(CallMapTest, ReleasesAValueWhenItIsTaken) {
  CallMap<std::shared_ptr<int>> map;
  auto value = std::make_shared<int>(7);
  map.insert(5, value);
  EXPECT_EQ(value.use_count(), 2);
  map.take(5);
  EXPECT_EQ(value.use_count(), 1);
  map.insert(6, value);
  map.take_all();
  EXPECT_EQ(value.use_count(), 1);
}

// Keys that share a slot (at the smallest capacity, 64) are found in every removal order: the
// later ones wait in the overflow map.
TEST(CallMapTest, CollidingKeysStayReachable) {
  for (int order = 0; order < 6; ++order) {
    CallMap<std::uint64_t> map;
    const std::uint64_t base = 63;
    std::vector<std::uint64_t> keys = {base, base + 64, base + 128, 1, base + 1024};
    for (std::uint64_t key : keys) map.insert(key, key * 3);
    std::mt19937 random(order);
    std::shuffle(keys.begin(), keys.end(), random);
    for (std::size_t i = 0; i < keys.size(); ++i) {
      EXPECT_EQ(map.take(keys[i]), keys[i] * 3) << "order " << order;
      for (std::size_t j = i + 1; j < keys.size(); ++j) {
        // Still there: take and put back.
        auto value = map.take(keys[j]);
        ASSERT_TRUE(value) << keys[j];
        map.insert(keys[j], *value);
      }
    }
    EXPECT_TRUE(map.empty());
  }
}

// One call that waits while a hundred thousand later ones come and go through its slot.
TEST(CallMapTest, AnOldCallOutlivesManyLaterOnes) {
  CallMap<std::uint64_t> map;
  map.insert(1, 1);
  for (std::uint64_t id = 2; id < 100000; ++id) {
    map.insert(id, id);
    ASSERT_EQ(map.take(id), id);
  }
  EXPECT_EQ(map.size(), 1u);
  EXPECT_EQ(map.take(1), 1u);
  EXPECT_TRUE(map.empty());
}

// A burst larger than the array the map keeps: emptied, it lets the array go, and works on.
TEST(CallMapTest, ABigBurstEmptiesAndStartsAgain) {
  CallMap<std::uint64_t> map;
  std::vector<std::uint64_t> keys;
  for (std::uint64_t id = 1; id <= 40000; ++id) keys.push_back(id);
  for (std::uint64_t round = 0; round < 2; ++round) {
    const std::uint64_t base = round * 100000;
    for (std::uint64_t key : keys) map.insert(base + key, key);
    std::mt19937 random(static_cast<unsigned>(round));
    std::shuffle(keys.begin(), keys.end(), random);
    for (std::uint64_t key : keys) ASSERT_EQ(map.take(base + key), key);
    EXPECT_TRUE(map.empty());
  }
  map.insert(7, 7);
  EXPECT_EQ(map.take(7), 7u);
}

// The way a link uses it: ids in sequence, most answered soon, some held for long, some never
// (taken by a sweep); the map grows and shrinks. Checked against std::unordered_map.
TEST(CallMapTest, MatchesAReferenceMapUnderALinksLoad) {
  CallMap<std::uint64_t> map;
  std::unordered_map<std::uint64_t, std::uint64_t> reference;
  std::mt19937_64 random(42);
  std::uint64_t next_id = 1;
  for (int step = 0; step < 200000; ++step) {
    const auto dice = random() % 100;
    const bool burst = (step / 20000) % 2 == 0;  // phases of many calls in flight, then few
    if (dice < (burst ? 60u : 40u)) {
      const std::uint64_t id = next_id++;
      map.insert(id, id ^ 0xABCDEF);
      reference.emplace(id, id ^ 0xABCDEF);
    } else if (dice < 98) {
      if (next_id == 1) continue;
      // An answer: mostly for a recent call, sometimes for an old one or one already taken.
      const std::uint64_t span = std::min<std::uint64_t>(dice < 90 ? 64 : next_id, next_id - 1);
      const std::uint64_t id = next_id - 1 - random() % span;
      const auto expected = reference.find(id);
      const auto got = map.take(id);
      if (expected == reference.end()) {
        EXPECT_EQ(got, std::nullopt) << id;
      } else {
        EXPECT_EQ(got, expected->second) << id;
        reference.erase(expected);
      }
    } else {
      // A sweep (expired calls): every id divisible by 7.
      auto taken = map.take_if([](std::uint64_t value) { return (value ^ 0xABCDEF) % 7 == 0; });
      std::size_t expected =
          std::erase_if(reference, [](const auto& e) { return e.first % 7 == 0; });
      EXPECT_EQ(taken.size(), expected);
    }
    ASSERT_EQ(map.size(), reference.size());
  }
  for (const auto& [id, value] : reference) EXPECT_EQ(map.take(id), value) << id;
  EXPECT_TRUE(map.empty());
  map.insert(next_id, 1);
  EXPECT_EQ(map.take_all().size(), 1u);
  EXPECT_TRUE(map.empty());
}

}  // namespace
}  // namespace troupe::detail
