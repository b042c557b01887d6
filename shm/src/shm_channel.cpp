#include "troupe/shm/shm_channel.hpp"

#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cassert>
#include <cstring>
#include <limits>

#include "troupe/core/error.hpp"

namespace troupe::shm {
namespace {

constexpr std::size_t kFragmentHeaderBytes = sizeof(std::uint64_t);

// A counter with one writer at a time (the send lock or the receive lease serialises them):
// a plain load and store, not a locked add, which on the hot path cost a third of send().
void bump(std::atomic<std::uint64_t>& counter, std::uint64_t n) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

RingControl& ring_at(Segment& segment, std::size_t i, std::size_t capacity) {
  return *reinterpret_cast<RingControl*>(segment.base() + ring_offset(i, capacity));
}
std::byte* ring_data(Segment& segment, std::size_t i, std::size_t capacity) {
  return segment.base() + ring_offset(i, capacity) + sizeof(RingControl);
}
std::size_t out_ring(ChannelSide side) { return side == ChannelSide::kClient ? 0 : 1; }
std::size_t in_ring(ChannelSide side) { return side == ChannelSide::kClient ? 1 : 0; }
std::size_t peer_of(ChannelSide side) { return side == ChannelSide::kClient ? 1 : 0; }

ChannelControl& control_of(Segment& segment) {
  return *reinterpret_cast<ChannelControl*>(segment.base() + kChannelControlOffset);
}

}  // namespace

// The receive end's serialization point: taken by try-lock only, never waited on in the kernel.
class ShmChannel::ReceiveLease {
 public:
  explicit ReceiveLease(std::atomic<bool>& flag) noexcept : flag_(flag) { retry(); }
  ~ReceiveLease() {
    // SYNC POINT: hands the receive-side state (consumer position, inbox, partial frame) to
    // the next holder; pairs with the acquire exchange in retry().
    if (held_) flag_.store(false, std::memory_order_release);
  }
  ReceiveLease(const ReceiveLease&) = delete;
  ReceiveLease& operator=(const ReceiveLease&) = delete;
  bool retry() noexcept {
    // Test before test-and-set: a held lease costs a shared read, not a cache-line steal.
    if (!held_ && !flag_.load(std::memory_order_relaxed)) {
      held_ = !flag_.exchange(true, std::memory_order_acquire);  // SYNC POINT: see above
    }
    return held_;
  }
  explicit operator bool() const noexcept { return held_; }

 private:
  std::atomic<bool>& flag_;
  bool held_ = false;
};

std::unique_ptr<ShmChannel> ShmChannel::create(const std::string& name, ChannelSide side,
                                               const ShmChannelOptions& options) {
  if (!valid_ring_capacity(options.ring_bytes)) {
    throw Error("ShmChannelOptions::ring_bytes = " + std::to_string(options.ring_bytes) +
                ": must be a power of two in [" + std::to_string(kMinRingCapacity) + ", " +
                std::to_string(kMaxRingCapacity) + "]");
  }
  if (options.max_message_bytes == 0 || options.max_message_bytes > kMaxFrameBytes) {
    throw Error(
        "ShmChannelOptions::max_message_bytes = " + std::to_string(options.max_message_bytes) +
        ": must be in [1, " + std::to_string(kMaxFrameBytes) + "]");
  }
  Segment segment =
      Segment::create(name, channel_segment_size(options.ring_bytes), SegmentKind::kChannel);
  auto* control = new (segment.base() + kChannelControlOffset) ChannelControl{};
  control->ring_capacity = options.ring_bytes;
  control->max_message_bytes = options.max_message_bytes;
  for (std::size_t i = 0; i < 2; ++i) {
    auto* ring = new (segment.base() + ring_offset(i, options.ring_bytes)) RingControl{};
    initialize_ring(*ring, options.ring_bytes);
  }
  // The creator takes its ends before an attacher can touch the rings.
  auto channel =
      std::unique_ptr<ShmChannel>(new ShmChannel(std::move(segment), side, options.wait));
  channel->segment_.mark_ready();
  return channel;
}

std::unique_ptr<ShmChannel> ShmChannel::attach(const std::string& name, ChannelSide side,
                                               const WaitPolicy& wait) {
  Segment segment = Segment::attach(name, SegmentKind::kChannel);
  const ChannelControl& control = control_of(segment);
  const std::size_t capacity = control.ring_capacity;
  if (!valid_ring_capacity(capacity) || channel_segment_size(capacity) != segment.size() ||
      control.max_message_bytes == 0 || control.max_message_bytes > kMaxFrameBytes) {
    throw ProtocolError("attach channel '" + name + "': ring capacity " + std::to_string(capacity) +
                        " does not match the segment's size " + std::to_string(segment.size()));
  }
  const std::size_t s = static_cast<std::size_t>(side);
  if (pid_t holder = control.side_pid[s].load(std::memory_order_acquire);
      holder != 0 && holder != ::getpid() && process_start_ticks(holder) != 0) {
    throw Error("attach channel '" + name + "': its " +
                (side == ChannelSide::kClient ? "client" : "server") +
                " side is already held by live process " + std::to_string(holder));
  }
  // Checked before the channel is made (its constructor claims the side; its destructor
  // closes it): each ring's own capacity, then its positions and records.
  for (std::size_t i = 0; i < 2; ++i) {
    const RingControl& ring = ring_at(segment, i, capacity);
    if (ring.capacity != capacity || !find_published_end(ring, ring_data(segment, i, capacity))) {
      throw ProtocolError("attach channel '" + name + "': ring " + std::to_string(i) +
                          "'s capacity, positions or records break the ring protocol");
    }
  }
  return std::unique_ptr<ShmChannel>(new ShmChannel(std::move(segment), side, wait));
}

ShmChannel::ShmChannel(Segment segment, ChannelSide side, const WaitPolicy& wait)
    : segment_(std::move(segment)),
      control_(&control_of(segment_)),
      side_(side),
      max_message_bytes_(control_->max_message_bytes),
      producer_(ring_at(segment_, out_ring(side), control_->ring_capacity),
                ring_data(segment_, out_ring(side), control_->ring_capacity)),
      send_waiter_(wait),
      consumer_(ring_at(segment_, in_ring(side), control_->ring_capacity),
                ring_data(segment_, in_ring(side), control_->ring_capacity)),
      receive_waiter_(wait) {
  // SYNC POINT: release publishes our pid to the peer's acquire load in peer_gone().
  control_->side_pid[static_cast<std::size_t>(side)].store(::getpid(), std::memory_order_release);
}

ShmChannel::~ShmChannel() {
  close();
  if (peer_pidfd_ >= 0) ::close(peer_pidfd_);
}

void ShmChannel::expect_peer(pid_t pid) noexcept {
  std::lock_guard lock(peer_mutex_);
  expected_peer_ = pid;
}

std::error_code ShmChannel::peer_gone() noexcept {
  const std::size_t peer = peer_of(side_);
  if (control_->side_closed[peer].load(std::memory_order_acquire) != 0) return Errc::kClosed;
  std::lock_guard lock(peer_mutex_);
  if (peer_pidfd_ < 0) {
    pid_t pid = control_->side_pid[peer].load(std::memory_order_acquire);  // SYNC POINT: ctor
    if (pid == 0) pid = expected_peer_;
    if (pid == 0) return {};  // nobody to watch yet
    // A pidfd turns readable when the process exits, zombie or not, and follows the process
    // rather than the number: a pid reused later cannot pass for our peer.
    peer_pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (peer_pidfd_ < 0)
      return errno == ESRCH ? make_error_code(Errc::kPeerDead) : std::error_code{};
  }
  pollfd watch{peer_pidfd_, POLLIN, 0};
  if (::poll(&watch, 1, 0) > 0) return Errc::kPeerDead;
  return {};
}

std::error_code ShmChannel::send(FrameBytes frame, SendLimit limit, bool flush) {
  if (frame.size() > max_message_bytes_) return Errc::kMessageTooLarge;
  if (closed_.load(std::memory_order_acquire)) return Errc::kClosed;
  if (control_->side_closed[peer_of(side_)].load(std::memory_order_acquire) != 0) {
    return Errc::kClosed;
  }
  std::lock_guard lock(send_lock_);
  if (!flush && !abort_pending_ && stage(frame)) {
    bump(frames_sent_, 1);
    bump(bytes_sent_, frame.size());
    return {};
  }
  if (auto ec = append_staged(limit)) return ec;
  if (abort_pending_) {
    if (auto ec = write_record(RecordType::kFragmentAbort, {}, {}, limit)) return ec;
    abort_pending_ = false;
  }
  const std::size_t max_payload = producer_.max_payload();
  if (frame.size() <= max_payload) {
    if (auto ec = write_record(RecordType::kMessage, frame, {}, limit)) return ec;
  } else {
    // Fragments of a quarter ring: the consumer drains one while the producer writes the next.
    const std::size_t chunk = std::min(max_payload, producer_.capacity() / 4);
    const std::uint64_t total = frame.size();
    const auto total_bytes = std::as_bytes(std::span(&total, 1));
    std::size_t offset = chunk - kFragmentHeaderBytes;
    if (auto ec =
            write_record(RecordType::kFragmentFirst, total_bytes, frame.first(offset), limit)) {
      return ec;
    }
    while (offset < frame.size()) {
      const std::size_t n = std::min(chunk, frame.size() - offset);
      const bool last = offset + n == frame.size();
      if (auto ec = write_record(last ? RecordType::kFragmentLast : RecordType::kFragmentMiddle,
                                 frame.subspan(offset, n), {}, limit)) {
        // The receiver holds a partial frame: the next send tells it to drop it.
        abort_pending_ = true;
        producer_.publish();
        return ec;
      }
      offset += n;
    }
  }
  bump(frames_sent_, 1);
  bump(bytes_sent_, frame.size());
  if (flush) producer_.publish();
  return {};
}

bool ShmChannel::stage(FrameBytes frame) noexcept {
  if (!staged_) {
    // Made on the first unflushed frame: a channel that never batches keeps no buffer.
    const std::size_t bytes =
        std::min<std::size_t>(producer_.capacity() / 4, std::size_t{64} * 1024);
    try {
      staged_ = std::make_unique<RecordBatch>(bytes);
    } catch (...) {
      return false;  // no memory for it: the frame is written directly
    }
  }
  const std::size_t bytes = staged_->bytes().size() + record_size(frame.size());
  if (bytes > staged_->capacity() || !producer_.has_space_for_batch(bytes)) return false;
  return staged_->append(RecordType::kMessage, frame);
}

std::error_code ShmChannel::append_staged(SendLimit& limit) {
  if (!staged_ || staged_->empty()) return {};
  // The staged frames fit the ring's free space when they were staged, and only this end
  // writes to it: the first try succeeds. The loop is the general rule, as write_record's.
  [[maybe_unused]] bool first_try = true;
  while (!producer_.try_append(*staged_)) {
    assert(!first_try && "staged frames always fit the ring's free space");
    first_try = false;
    producer_.publish();
    send_waits_.fetch_add(1, std::memory_order_relaxed);
    if (auto ec = wait_for_space(staged_->bytes().size() - sizeof(std::uint64_t), limit)) {
      return ec;
    }
  }
  staged_->clear();
  return {};
}

std::error_code ShmChannel::flush() {
  std::lock_guard lock(send_lock_);
  // Does not wait (see append_staged()); the limit is the rule's, for form.
  SendLimit limit(std::chrono::seconds(30));
  if (auto ec = append_staged(limit)) return ec;
  producer_.publish();
  return closed_.load(std::memory_order_relaxed) ? make_error_code(Errc::kClosed)
                                                 : std::error_code{};
}

std::error_code ShmChannel::write_record(RecordType type, std::span<const std::byte> first,
                                         std::span<const std::byte> second, SendLimit& limit) {
  while (!producer_.try_write(type, first, second)) {
    producer_.publish();  // the consumer must see what is written before we wait for it
    send_waits_.fetch_add(1, std::memory_order_relaxed);
    if (auto ec = wait_for_space(first.size() + second.size(), limit)) return ec;
  }
  return {};
}

std::error_code ShmChannel::wait_for_space(std::size_t payload, SendLimit& limit) {
  auto ec = send_waiter_.wait(
      [&] { return producer_.has_space_for(payload) || closed_.load(std::memory_order_relaxed); },
      [&](std::chrono::nanoseconds slice) {
        // Keep draining what the peer sends while we wait: it may be blocked on us.
        if (drain_into_inbox() == 0) producer_.sleep_for_space(payload, slice);
      },
      [&] { return peer_gone(); }, limit.deadline());
  if (!ec && closed_.load(std::memory_order_acquire)) ec = Errc::kClosed;
  return ec;
}

std::size_t ShmChannel::take_frames(FunctionRef<void(FrameBytes)> deliver, std::size_t budget,
                                    std::size_t& bytes_left) {
  std::size_t delivered = 0;
  auto broken = [&](const char*) {
    broken_.store(true, std::memory_order_relaxed);
    malformed_.fetch_add(1, std::memory_order_relaxed);
  };
  while (delivered < budget && bytes_left > 0 && !broken_.load(std::memory_order_relaxed)) {
    std::optional<RingRecord> record = consumer_.try_take();
    if (!record) {
      if (consumer_.corrupt()) broken("record header out of bounds");
      break;
    }
    const auto payload = record->payload;
    switch (record->type) {
      case RecordType::kMessage:
        if (partial_expected_ != 0) {
          broken("whole message inside a fragmented one");
          break;
        }
        deliver(payload);
        ++delivered;
        bytes_left -= std::min(bytes_left, payload.size());
        bump(frames_received_, 1);
        bump(bytes_received_, payload.size());
        break;
      case RecordType::kFragmentFirst: {
        std::uint64_t total = 0;
        if (partial_expected_ != 0 || payload.size() < kFragmentHeaderBytes) {
          broken("bad first fragment");
          break;
        }
        std::memcpy(&total, payload.data(), sizeof total);
        if (total > max_message_bytes_ || total <= payload.size() - kFragmentHeaderBytes) {
          broken("fragmented frame length out of range");
          break;
        }
        partial_.clear();
        partial_.reserve(total);
        partial_.insert(partial_.end(), payload.begin() + kFragmentHeaderBytes, payload.end());
        partial_expected_ = total;
        break;
      }
      case RecordType::kFragmentMiddle:
      case RecordType::kFragmentLast: {
        const bool last = record->type == RecordType::kFragmentLast;
        if (partial_expected_ == 0 || partial_.size() + payload.size() > partial_expected_ ||
            (last != (partial_.size() + payload.size() == partial_expected_))) {
          broken("fragment out of sequence");
          break;
        }
        partial_.insert(partial_.end(), payload.begin(), payload.end());
        if (last) {
          deliver(partial_);
          ++delivered;
          bytes_left -= std::min(bytes_left, partial_.size());
          bump(frames_received_, 1);
          bump(bytes_received_, partial_.size());
          partial_expected_ = 0;
          if (partial_.capacity() > consumer_.capacity()) partial_ = {};  // give big buffers back
        }
        break;
      }
      case RecordType::kFragmentAbort:
        partial_.clear();
        partial_expected_ = 0;
        break;
      case RecordType::kPadding:
        break;  // try_take skips padding
    }
    // Give space back in batches, after the frames using it were delivered.
    if (consumer_.unreleased_bytes() >= consumer_.capacity() / 4) consumer_.publish_head();
  }
  return delivered;
}

WakeupArm ShmChannel::arm_wakeup(WakeWord& word) noexcept {
  // Test before test-and-set, as ReceiveLease does. SYNC POINT: acquire, as in ReceiveLease;
  // end_wakeup()'s release store hands the receive end on.
  if (receive_lease_.load(std::memory_order_relaxed) ||
      receive_lease_.exchange(true, std::memory_order_acquire)) {
    return WakeupArm::kCannot;  // another thread receives: it delivers what comes
  }
  if (consumer_.has_data() || inbox_depth_.load(std::memory_order_relaxed) != 0 ||
      broken_.load(std::memory_order_relaxed) || closed_.load(std::memory_order_relaxed)) {
    receive_lease_.store(false, std::memory_order_release);
    return WakeupArm::kFrameWaiting;  // poll() delivers (or reports) these
  }
  word = {&consumer_.data_signal(), consumer_.flag_sleep(), /*process_private=*/false};
  return WakeupArm::kArmed;
}

bool ShmChannel::confirm_wakeup() noexcept { return consumer_.confirm_sleep(); }

void ShmChannel::end_wakeup() noexcept {
  consumer_.end_sleep();
  receive_lease_.store(false, std::memory_order_release);  // SYNC POINT: see arm_wakeup()
}

void ShmChannel::cap_inbox(std::size_t bytes) noexcept {
  inbox_cap_.store(std::max<std::size_t>(bytes, 1), std::memory_order_relaxed);
}

std::size_t ShmChannel::drain_into_inbox() {
  ReceiveLease lease(receive_lease_);
  if (!lease || broken_.load(std::memory_order_relaxed)) return 0;
  const std::size_t held = inbox_bytes_.load(std::memory_order_relaxed);
  const std::size_t cap = inbox_cap_.load(std::memory_order_relaxed);
  if (held >= cap) return 0;  // full: the sender waits without draining
  std::size_t room = cap - held;
  const std::size_t n = take_frames(
      [&](FrameBytes frame) {
        inbox_.emplace_back(frame.begin(), frame.end());
        inbox_depth_.fetch_add(1, std::memory_order_relaxed);
        inbox_bytes_.fetch_add(frame.size(), std::memory_order_relaxed);
      },
      std::numeric_limits<std::size_t>::max(), room);
  consumer_.publish_head();
  return n;
}

std::size_t ShmChannel::poll(FunctionRef<void(FrameBytes)> on_frame, std::size_t max_frames,
                             std::size_t max_bytes, Deadline deadline, std::error_code& ec) {
  ec.clear();
  if (max_frames == 0) return 0;
  // A look that must not wait, on a channel with nothing to deliver, returns before taking
  // the lease (an atomic exchange): the runtime's waiters look this way in a tight loop.
  if (deadline == kNoWait && !consumer_.maybe_has_data() &&
      inbox_depth_.load(std::memory_order_relaxed) == 0 &&
      !broken_.load(std::memory_order_relaxed) && !closed_.load(std::memory_order_relaxed)) {
    return 0;
  }
  // Another thread receiving (or a blocked sender draining) delivers the frames: this caller
  // returns at once instead of queueing behind it.
  ReceiveLease lease(receive_lease_);
  if (!lease) return 0;
  std::size_t delivered = 0;
  std::size_t bytes_left = std::max<std::size_t>(max_bytes, 1);
  for (;;) {
    while (delivered < max_frames && bytes_left > 0 && !inbox_.empty()) {
      std::vector<std::byte> frame = std::move(inbox_.front());
      inbox_.pop_front();
      inbox_depth_.fetch_sub(1, std::memory_order_relaxed);
      inbox_bytes_.fetch_sub(frame.size(), std::memory_order_relaxed);
      on_frame(frame);
      ++delivered;
      bytes_left -= std::min(bytes_left, frame.size());
    }
    if (delivered < max_frames && bytes_left > 0) {
      delivered += take_frames(on_frame, max_frames - delivered, bytes_left);
    }
    if (broken_.load(std::memory_order_relaxed)) {
      ec = Errc::kMalformedFrame;
      break;
    }
    if (delivered > 0) break;
    if (closed_.load(std::memory_order_acquire)) {
      ec = Errc::kClosed;
      break;
    }
    ec = receive_waiter_.wait(
        [&] { return consumer_.has_data() || closed_.load(std::memory_order_relaxed); },
        [&](std::chrono::nanoseconds slice) { consumer_.sleep_for_data(slice); },
        [&] { return peer_gone(); }, deadline);
    if (ec) {
      // The waiter's last look may have asked only the shared tail (has_data() after a batch),
      // which a peer that died between publishing a frame and storing its tail left behind:
      // frames it published are delivered before its death or the timeout is reported.
      delivered += take_frames(on_frame, max_frames, bytes_left);
      if (ec == Errc::kTimeout || delivered > 0) ec.clear();
      break;
    }
  }
  consumer_.publish_head();
  return delivered;
}

void ShmChannel::close() noexcept {
  if (closed_.exchange(true, std::memory_order_acq_rel)) return;
  control_->side_closed[static_cast<std::size_t>(side_)].store(1, std::memory_order_seq_cst);
  // End every wait on this channel, ours and the peer's.
  wake_all(ring_at(segment_, 0, control_->ring_capacity));
  wake_all(ring_at(segment_, 1, control_->ring_capacity));
  // A closed channel's name serves nobody: remove it now rather than when the last reference
  // to this object goes (the mapping stays valid until then).
  segment_.unlink();
}

std::size_t ShmChannel::inbox_bytes() const noexcept {
  return inbox_bytes_.load(std::memory_order_relaxed);
}

std::size_t ShmChannel::inbox_depth() const noexcept {
  return inbox_depth_.load(std::memory_order_relaxed);
}

ChannelStats ShmChannel::stats() const noexcept {
  ChannelStats s;
  s.frames_sent = frames_sent_.load(std::memory_order_relaxed);
  s.frames_received = frames_received_.load(std::memory_order_relaxed);
  s.bytes_sent = bytes_sent_.load(std::memory_order_relaxed);
  s.bytes_received = bytes_received_.load(std::memory_order_relaxed);
  s.malformed_dropped = malformed_.load(std::memory_order_relaxed);
  s.send_waits = send_waits_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace troupe::shm
