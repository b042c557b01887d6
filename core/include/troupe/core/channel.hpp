#pragma once
// The one interface core uses to move frames between two processes. The shared-memory pair
// (troupe::shm::ShmChannel) implements it; the TCP transport will too. A channel carries opaque
// frames in order, without loss or duplication; verifying them is the receiver's job
// (troupe::verify_frame), since a transport knows nothing of agents.
//
// Threads: every method may be called from any thread. Each direction has one serialization
// point (see the implementation's notes); frames sent by one thread keep their order, frames of
// different threads interleave whole.
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <system_error>
#include <type_traits>

#include "troupe/core/function_ref.hpp"
#include "troupe/core/wake_word.hpp"

namespace troupe {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;
using FrameBytes = std::span<const std::byte>;

/// The deadline of a call that must not wait at all (a poll that only takes what is there).
inline constexpr Deadline kNoWait = Deadline::min();

/// `timeout` from `now`; a timeout past the clock's range means no deadline (no overflow to
/// the past).
inline Deadline deadline_after(std::chrono::nanoseconds timeout, Deadline now = Clock::now()) {
  return timeout >= Deadline::max() - now ? Deadline::max() : now + timeout;
}

/// How long a send may wait on a full transport: until a fixed deadline, or for a span of
/// time counted from when it first has to wait, so that a send that never waits reads no clock
/// (a read costs ~30 ns on this VM, on every call's path).
class SendLimit {
 public:
  SendLimit(Deadline deadline) noexcept  // NOLINT: implicit by design
      : ticks_(deadline.time_since_epoch().count()), lazy_(false) {}
  SendLimit(std::chrono::nanoseconds patience) noexcept  // NOLINT: implicit by design
      : ticks_(patience.count()), lazy_(true) {}
  /// The deadline; a span of time becomes one at the first call.
  Deadline deadline() noexcept {
    if (lazy_) {
      ticks_ = deadline_after(std::chrono::nanoseconds(ticks_)).time_since_epoch().count();
      lazy_ = false;
    }
    return Deadline(Clock::duration(ticks_));
  }

 private:
  // One count, a deadline's or a patience's, and which: 16 bytes, passed in two registers.
  // With both fields (24 bytes) it went through the stack, where a 16-byte load of the
  // caller's 8-byte and 1-byte stores missed store forwarding twice a send.
  Clock::rep ticks_;
  bool lazy_;
};
static_assert(sizeof(SendLimit) == 16);
static_assert(std::is_same_v<Clock::duration, std::chrono::nanoseconds>);

/// Frames and failures seen by one end of a channel.
struct ChannelStats {
  std::uint64_t frames_sent = 0;
  std::uint64_t frames_received = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t bytes_received = 0;
  std::uint64_t malformed_dropped = 0;  ///< inbound records that broke the transport's framing
  std::uint64_t send_waits = 0;         ///< sends that found the transport full (backpressure)
};

class Channel {
 public:
  Channel() = default;
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;
  virtual ~Channel() = default;

  /// Sends one frame. Waits while the transport is full (backpressure) within `limit`, and
  /// while waiting keeps draining inbound frames into a local inbox so that two peers with
  /// full transports in both directions never deadlock. With `flush` false the frame may stay
  /// unpublished until the next flush() or flushing send (batched publication).
  /// Errors: kTimeout, kPeerDead, kClosed, kMessageTooLarge.
  virtual std::error_code send(FrameBytes frame, SendLimit limit, bool flush = true) = 0;

  /// Publishes frames sent with flush == false.
  virtual std::error_code flush() = 0;

  /// Delivers received frames in order to `on_frame`, at most `max_frames`, waiting until
  /// `deadline` for the first (kNoWait: not at all). A delivered view is valid only during the
  /// call. Returns the count delivered; 0 with `ec` clear means the deadline passed with nothing to
  /// deliver, or that another thread of this process is receiving on this channel right now; `ec`
  /// is kPeerDead or kClosed once the peer is gone and every frame it sent was delivered.
  /// Delivery also stops once the frames delivered reach `max_bytes` (the frame that crosses
  /// it is delivered whole): a receiver's budget is overshot by one frame at most.
  virtual std::size_t poll(FunctionRef<void(FrameBytes)> on_frame, std::size_t max_frames,
                           std::size_t max_bytes, Deadline deadline, std::error_code& ec) = 0;
  std::size_t poll(FunctionRef<void(FrameBytes)> on_frame, std::size_t max_frames,
                   Deadline deadline, std::error_code& ec) {
    return poll(on_frame, max_frames, std::numeric_limits<std::size_t>::max(), deadline, ec);
  }

  /// Closes this end: the peer's waits end with kClosed. Idempotent.
  virtual void close() noexcept = 0;

  virtual ChannelStats stats() const noexcept = 0;

  /// Caps the bytes a send that waits for room may drain from the peer into this end's inbox
  /// (a frame that crosses the cap is taken whole). Uncapped by default: of two peers whose
  /// transports are full both ways, one must drain without bound for both to progress. A
  /// server caps its clients' channels (at their queue budget), so that a client which sends
  /// without reading its replies cannot grow the server's memory; its clients drain freely.
  virtual void cap_inbox(std::size_t /*bytes*/) noexcept {}

  /// A wait on several channels at once (sleep_on_channels() does it) takes three steps, so
  /// that one fence serves every channel: arm_wakeup() flags this end as about to sleep (the
  /// peer then signals `word` when it sends) and returns kArmed, or arms nothing and returns
  /// kFrameWaiting (receive first) or kCannot (another thread is receiving on this channel, or
  /// the transport has no such word); once every channel is armed, confirm_wakeup() on each
  /// armed one says whether sleeping is still right (false: a frame came meanwhile); after the
  /// sleep, or instead of it, end_wakeup() on each armed one. From kArmed to end_wakeup() this
  /// thread holds the channel's receive end.
  virtual WakeupArm arm_wakeup(WakeWord& /*word*/) noexcept { return WakeupArm::kCannot; }
  virtual bool confirm_wakeup() noexcept { return false; }
  virtual void end_wakeup() noexcept {}

  /// Tells the channel which process serves the other end, when this side learns it before
  /// the peer attaches (a parent right after fork), so a peer that dies early is noticed.
  virtual void expect_peer(pid_t /*pid*/) noexcept {}
};

}  // namespace troupe
