// SendLimit: a fixed deadline passes through; a span of time becomes a deadline at the first
// ask, counted from then, and stays that deadline.
#include <gtest/gtest.h>

#include <thread>
#include <type_traits>

#include "troupe/core/channel.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;

TEST(SendLimitTest, ADeadlinePassesThroughWhateverItsValue) {
  const Deadline now = Clock::now();
  for (const Deadline d : {now, now + 5s, kNoWait, Deadline::max(), Deadline{}}) {
    SendLimit limit(d);
    EXPECT_EQ(limit.deadline(), d);
    EXPECT_EQ(limit.deadline(), d);
  }
}

TEST(SendLimitTest, PatienceCountsFromTheFirstAskThenStays) {
  SendLimit limit(50ms);
  std::this_thread::sleep_for(20ms);  // the patience has not started yet
  const Deadline before = Clock::now();
  const Deadline first = limit.deadline();
  const Deadline after = Clock::now();
  EXPECT_GE(first, before + 50ms);
  EXPECT_LE(first, after + 50ms);
  std::this_thread::sleep_for(5ms);
  EXPECT_EQ(limit.deadline(), first);
}

TEST(SendLimitTest, EndlessPatienceMeansNoDeadline) {
  SendLimit limit(std::chrono::nanoseconds::max());
  EXPECT_EQ(limit.deadline(), Deadline::max());
}

// Passed by value on every send: small and trivially copyable, so in registers.
static_assert(sizeof(SendLimit) <= 16);
static_assert(std::is_trivially_copyable_v<SendLimit>);

}  // namespace
}  // namespace troupe
