// wait_on_any (futex_waitv): one sleep on several words, woken by any of them.
#include "troupe/core/wake_word.hpp"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "troupe/core/channel.hpp"
#include "troupe/core/detail/private_futex.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;

TEST(WakeWordTest, AWakeOfAnyWordEndsTheWait) {
  std::atomic<std::uint32_t> words[3] = {};
  const WakeWord wait_on[] = {{&words[0], 0, true}, {&words[1], 0, true}, {&words[2], 0, true}};
  std::thread waker([&] {
    std::this_thread::sleep_for(50ms);
    words[1].store(1);
    detail::futex_wake_private(words[1], 1);
  });
  const auto started = Clock::now();
  while (words[1].load() == 0) {
    ASSERT_TRUE(wait_on_any(wait_on, Clock::now() + 30s));
    ASSERT_LT(Clock::now() - started, 20s) << "the wake did not end the wait";
  }
  waker.join();
}

TEST(WakeWordTest, AWordThatDiffersAlreadyOrADeadlineEndsTheWait) {
  std::atomic<std::uint32_t> word{7};
  const WakeWord differs[] = {{&word, 6, true}};
  const auto started = Clock::now();
  EXPECT_TRUE(wait_on_any(differs, Clock::now() + 30s));
  EXPECT_LT(Clock::now() - started, 20s);
  const WakeWord same[] = {{&word, 7, true}};
  const Deadline deadline = Clock::now() + 20ms;
  EXPECT_TRUE(wait_on_any(same, deadline));
  EXPECT_GE(Clock::now(), deadline);  // it slept until the deadline, no sooner
}

TEST(WakeWordTest, MoreWordsThanTheKernelTakesAreRefused) {
  std::vector<std::atomic<std::uint32_t>> storage(kMaxWakeWords + 1);
  std::vector<WakeWord> words;
  for (auto& w : storage) words.push_back({&w, 0, true});
  EXPECT_FALSE(wait_on_any(words, Clock::now() + 1s));
  EXPECT_FALSE(wait_on_any({}, Clock::now() + 1s));
}

}  // namespace
}  // namespace troupe
