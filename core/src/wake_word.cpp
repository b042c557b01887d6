#include "troupe/core/wake_word.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <vector>

#include "troupe/core/channel.hpp"

namespace troupe {
namespace {

// futex_waitv's absolute timeout is on CLOCK_MONOTONIC, steady_clock's clock on Linux.
static_assert(Clock::is_steady);

}  // namespace

bool can_wait_on_several() noexcept {
  // No waiters is EINVAL where the call exists; ENOSYS (old kernel) or EPERM (seccomp) where
  // it cannot be used.
  static const bool available =
      ::syscall(SYS_futex_waitv, nullptr, 0U, 0U, nullptr, CLOCK_MONOTONIC) == 0 || errno == EINVAL;
  return available;
}

bool wait_on_any(std::span<const WakeWord> words, Deadline deadline) noexcept {
  if (words.empty() || words.size() > kMaxWakeWords || !can_wait_on_several()) return false;
  futex_waitv waiters[kMaxWakeWords] = {};
  for (std::size_t i = 0; i < words.size(); ++i) {
    waiters[i].val = words[i].expected;
    waiters[i].uaddr = reinterpret_cast<std::uintptr_t>(words[i].word);
    waiters[i].flags = FUTEX_32 | (words[i].process_private ? FUTEX_PRIVATE_FLAG : 0);
  }
  const auto since_epoch = deadline.time_since_epoch();
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch).count();
  timespec until{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  // The kernel compares every word with its expected value as it queues this thread, so a
  // signal sent after the caller's last look is not lost. Woken, timed out, a word that had
  // changed already (EAGAIN) or a signal (EINTR): all mean "look again". Anything else (ENOSYS
  // before Linux 5.16, EPERM under a seccomp filter that does not know the call) means it
  // cannot sleep this way, and the caller must nap rather than spin.
  const long rc = ::syscall(SYS_futex_waitv, waiters, static_cast<unsigned>(words.size()), 0,
                            deadline == Deadline::max() ? nullptr : &until, CLOCK_MONOTONIC);
  return rc >= 0 || errno == ETIMEDOUT || errno == EAGAIN || errno == EINTR;
}

bool sleep_on_channels(std::span<Channel* const> channels, const WakeWord& own, Deadline until,
                       Deadline until_unwatched) {
  // Before arming anything: arming costs a fence on every CPU.
  if (channels.size() + 1 > kMaxWakeWords || !can_wait_on_several()) return false;
  std::vector<WakeWord> words;
  std::vector<Channel*> armed;
  words.reserve(channels.size() + 1);
  armed.reserve(channels.size());
  bool receive_first = false;
  bool unwatched = false;
  for (Channel* channel : channels) {
    WakeWord word;
    const WakeupArm arm = channel->arm_wakeup(word);
    if (arm == WakeupArm::kArmed) {
      words.push_back(word);
      armed.push_back(channel);
    } else if (arm == WakeupArm::kFrameWaiting) {
      receive_first = true;
      break;
    } else {
      unwatched = true;
    }
  }
  // Every flag is set before the first confirmation: the first one's fence serves them all.
  for (Channel* channel : armed) receive_first = receive_first || !channel->confirm_wakeup();
  bool slept = true;
  if (!receive_first) {
    words.push_back(own);
    slept = wait_on_any(words, unwatched ? std::min(until, until_unwatched) : until);
  }
  for (Channel* channel : armed) channel->end_wakeup();
  return slept;
}

}  // namespace troupe
