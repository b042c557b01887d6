#pragma once
// Sleeping on several futex words at once (futex_waitv, Linux 5.16 and later): a thread that
// waits for any of several channels (and for its own result) sleeps until one of them is
// signalled, instead of napping and looking again.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <span>

namespace troupe {

/// A futex word to sleep on while it holds `expected`.
struct WakeWord {
  std::atomic<std::uint32_t>* word = nullptr;
  std::uint32_t expected = 0;
  /// The word's waker is a thread of this process (FUTEX_PRIVATE_FLAG, cheaper); false for a
  /// word in memory shared with another process.
  bool process_private = false;
};

/// What a channel says when asked to arm its wake-up (Channel::arm_wakeup).
enum class WakeupArm {
  kArmed,         ///< the peer will signal the word when it sends: sleep on it
  kFrameWaiting,  ///< something may be there already: receive instead of sleeping
  kCannot,        ///< another thread is receiving, or the transport has no such word
};

/// The most words one wait takes (the kernel's FUTEX_WAITV_MAX).
inline constexpr std::size_t kMaxWakeWords = 128;

/// Whether this process may use futex_waitv (asked of the kernel once): not before Linux 5.16,
/// nor under a seccomp filter that does not know the call.
bool can_wait_on_several() noexcept;

/// Sleeps until one of `words` is woken or no longer holds its expected value, or until
/// `deadline`. Returns false, without sleeping, when it cannot wait on them all at once
/// (more than kMaxWakeWords, or a kernel without futex_waitv): the caller then naps.
bool wait_on_any(std::span<const WakeWord> words,
                 std::chrono::steady_clock::time_point deadline) noexcept;

class Channel;

/// Sleeps until a frame arrives on one of `channels` or `own` is signalled, or until `until`:
/// arms every channel's doorbell (Channel::arm_wakeup) and waits on them and `own` at once.
/// Returns at once, true, when a channel has a frame waiting. Where a channel cannot be
/// armed (another thread receives on it) it sleeps at most until `until_unwatched`. Returns
/// false when it could not sleep on them all (no futex_waitv, too many): the caller naps.
bool sleep_on_channels(std::span<Channel* const> channels, const WakeWord& own,
                       std::chrono::steady_clock::time_point until,
                       std::chrono::steady_clock::time_point until_unwatched);

}  // namespace troupe
