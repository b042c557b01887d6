#pragma once
// A Channel over shared memory: one segment, two SPSC rings (client -> server, server -> client).
//
// Serialization points (the rings are single-producer single-consumer; a process's threads
// take turns at each end):
//  - Send end: a SendLock (send_lock.hpp), a mutex released by a plain store, so that the
//    frame just written drains into the ring while the sender goes on. A contended sender spins
//    briefly, then sleeps in the kernel, since this VM preempts lock holders. The holder writes
//    whole frames (all fragments), so frames of different threads never interleave.
//  - Receive end: a lease taken only by try-lock (an atomic flag, never waited on in the kernel
//    and not re-entrant). poll() holds it while delivering and waiting, and returns 0 at once
//    when another thread holds it (that thread is delivering); a sender that must wait for space
//    takes it when free and drains inbound frames into the inbox, so two processes whose rings
//    are full in both directions keep making progress. The inbox holds only what the peer sent
//    while this side was blocked; cap_inbox() bounds it (a server caps its clients' inboxes at
//    their queue budget; a client, whose inbox holds replies to its own calls, does not).
//
// Frames sent with flush == false are gathered in a RecordBatch (record_batch.hpp) while they
// fit it (a quarter of the ring, 64 KiB at most) and the ring's free space, and appended in one
// copy at the next flush or flushing send, or before a frame that cannot be gathered. A stream
// of 64-byte frames flushed every 32 went from 0.18x to 0.38-0.40x of the raw ring's batched
// stream (spsc_ring_bench, Stream/64B/ShmChannel/flush32); the rest is the send's own work:
// the send lock, the checks, a copy into the batch. The free space only grows until this end
// writes, so a flush never waits. Frames gathered and never flushed are dropped by close(), as
// unflushed frames always were (the stats count them as sent).
//
// Messages larger than one record (half a ring) travel as fragments and are reassembled by the
// receiver, up to max_message_bytes (at most kMaxFrameBytes, 1 GiB). Records that break the
// protocol are counted, reported as kMalformedFrame, and end the channel (the ring's framing
// cannot be trusted after that); the process keeps serving its other channels.
//
// close() removes the segment's name (when this side created it); the mapping lives on until
// the object is destroyed.
//
// A dead peer is noticed through a pidfd within one sleep slice of the waiter (5 ms default).
#include <sys/types.h>

#include <atomic>
#include <deque>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "troupe/core/channel.hpp"
#include "troupe/core/wire.hpp"
#include "troupe/shm/channel_layout.hpp"
#include "troupe/shm/record_batch.hpp"
#include "troupe/shm/segment.hpp"
#include "troupe/shm/send_lock.hpp"
#include "troupe/shm/spsc_ring.hpp"
#include "troupe/shm/wait_strategy.hpp"

namespace troupe::shm {

struct ShmChannelOptions {
  /// Bytes of each ring's data area: a power of two in [4 KiB, 1 GiB].
  std::size_t ring_bytes = std::size_t{1} << 20;
  /// The largest frame either side may send; larger ones are refused with kMessageTooLarge.
  std::size_t max_message_bytes = kMaxFrameBytes;
  WaitPolicy wait{};
};

class ShmChannel final : public Channel {
 public:
  /// Creates the segment (this process owns its name) and takes `side`. Throws troupe::Error
  /// on a bad option (naming it and its range) or a failed system call.
  static std::unique_ptr<ShmChannel> create(const std::string& name, ChannelSide side,
                                            const ShmChannelOptions& options = {});
  /// Attaches to a channel another process created and takes `side`. Throws
  /// troupe::ProtocolError on a layout mismatch, troupe::Error when it does not exist.
  static std::unique_ptr<ShmChannel> attach(const std::string& name, ChannelSide side,
                                            const WaitPolicy& wait = {});
  ~ShmChannel() override;

  /// Tells this side the peer's pid before the peer attaches (e.g. the parent right after
  /// fork), so that a peer that dies before attaching is noticed too.
  void expect_peer(pid_t pid) noexcept override;

  std::error_code send(FrameBytes frame, SendLimit limit, bool flush = true) override;
  std::error_code flush() override;
  using Channel::poll;
  std::size_t poll(FunctionRef<void(FrameBytes)> on_frame, std::size_t max_frames,
                   std::size_t max_bytes, Deadline deadline, std::error_code& ec) override;
  void close() noexcept override;
  ChannelStats stats() const noexcept override;
  void cap_inbox(std::size_t bytes) noexcept override;
  /// Arms the receive ring's doorbell (its consumer's sleeper flag) and holds the receive
  /// lease until end_wakeup(): one sleeper per ring, as the ring's handshake wants.
  WakeupArm arm_wakeup(WakeWord& word) noexcept override;
  bool confirm_wakeup() noexcept override;
  void end_wakeup() noexcept override;

  const std::string& name() const noexcept { return segment_.name(); }
  std::size_t ring_bytes() const noexcept { return producer_.capacity(); }
  std::size_t max_message_bytes() const noexcept { return max_message_bytes_; }
  /// Frames waiting in the inbox (drained by a blocked sender, not yet polled).
  std::size_t inbox_depth() const noexcept;
  /// Bytes of the frames waiting in the inbox.
  std::size_t inbox_bytes() const noexcept;
  /// The segment; a forked child that inherited this object calls segment().disown().
  Segment& segment() noexcept { return segment_; }

 private:
  ShmChannel(Segment segment, ChannelSide side, const WaitPolicy& wait);

  class ReceiveLease;
  std::error_code write_record(RecordType type, std::span<const std::byte> first,
                               std::span<const std::byte> second, SendLimit& limit);
  std::error_code wait_for_space(std::size_t payload, SendLimit& limit);
  /// Requires the send lock. Gathers `frame` into staged_ when it fits there and in the ring
  /// now; false (nothing done) otherwise.
  bool stage(FrameBytes frame) noexcept;
  /// Requires the send lock. Appends the staged frames to the ring (they fit: see stage()).
  std::error_code append_staged(SendLimit& limit);
  std::error_code peer_gone() noexcept;
  // Requires the receive lease. Takes ring records: complete frames go to `deliver`; returns
  // the number delivered (at most `budget`).
  std::size_t take_frames(FunctionRef<void(FrameBytes)> deliver, std::size_t budget,
                          std::size_t& bytes_left);
  std::size_t drain_into_inbox();

  Segment segment_;
  ChannelControl* control_;
  ChannelSide side_;
  std::size_t max_message_bytes_;
  std::atomic<bool> closed_{false};

  // Send end. Guarded by send_lock_ (its release is a plain store: see send_lock.hpp).
  SendLock send_lock_;
  SpscRingProducer producer_;
  AdaptiveWaiter send_waiter_;
  bool abort_pending_ = false;  ///< a fragmented frame was cut short: tell the receiver first
  std::unique_ptr<RecordBatch> staged_;  ///< unflushed frames; made on the first one

  // Receive end. Guarded by the receive lease.
  std::atomic<bool> receive_lease_{false};
  SpscRingConsumer consumer_;
  AdaptiveWaiter receive_waiter_;
  std::deque<std::vector<std::byte>> inbox_;
  std::atomic<std::size_t> inbox_depth_{0};
  std::atomic<std::size_t> inbox_bytes_{0};  // written under the lease; read anywhere (stats)
  std::atomic<std::size_t> inbox_cap_{std::numeric_limits<std::size_t>::max()};
  std::vector<std::byte> partial_;    ///< a fragmented frame being reassembled
  std::size_t partial_expected_ = 0;  ///< its total length (0: none in progress)
  /// The peer broke the record protocol. Written under the receive lease; atomic only so that
  /// poll()'s look without the lease may read it (relaxed: a hint, re-read under the lease).
  std::atomic<bool> broken_{false};

  // Peer liveness; guarded by peer_mutex_ (cold path only).
  std::mutex peer_mutex_;
  pid_t expected_peer_ = 0;
  int peer_pidfd_ = -1;

  std::atomic<std::uint64_t> frames_sent_{0}, frames_received_{0}, bytes_sent_{0},
      bytes_received_{0}, malformed_{0}, send_waits_{0};
};

}  // namespace troupe::shm
