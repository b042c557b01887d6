#pragma once
// Layout of a ShmChannel segment: two rings, one per direction.
//
//   0                      SegmentHeader (128)
//   128                    ChannelControl (128)
//   256                    RingControl[client -> server] (640)
//   896                    data[capacity]
//   896 + capacity         RingControl[server -> client] (640)
//   1536 + capacity        data[capacity]
//   1536 + 2 * capacity    end
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "troupe/shm/ring_layout.hpp"
#include "troupe/shm/segment_layout.hpp"

namespace troupe::shm {

/// Which end of a channel a process holds. The client sends on ring 0 and receives on ring 1.
enum class ChannelSide : std::uint32_t { kClient = 0, kServer = 1 };

struct alignas(kFalseSharingRange) ChannelControl {
  /// pid of each side once it attached (0 before). SYNC POINT: release store by the attaching
  /// side, acquire load by the peer's liveness check.
  std::atomic<std::int32_t> side_pid[2];
  /// 1 once that side closed its end cleanly (its peer then reports kClosed, not kPeerDead).
  std::atomic<std::uint32_t> side_closed[2];
  std::uint64_t ring_capacity;      ///< bytes of each ring's data area
  std::uint64_t max_message_bytes;  ///< the largest frame either side may send
};
static_assert(sizeof(ChannelControl) == kFalseSharingRange);
static_assert(std::atomic<std::int32_t>::is_always_lock_free);

inline constexpr std::size_t kChannelControlOffset = sizeof(SegmentHeader);
inline constexpr std::size_t kFirstRingOffset = kChannelControlOffset + sizeof(ChannelControl);
static_assert(kFirstRingOffset % kFalseSharingRange == 0);
static_assert(sizeof(RingControl) % kFalseSharingRange == 0);

/// Offset of ring `i`'s control block in a channel segment with rings of `capacity` bytes.
constexpr std::size_t ring_offset(std::size_t i, std::size_t capacity) noexcept {
  return kFirstRingOffset + i * (sizeof(RingControl) + capacity);
}
constexpr std::size_t channel_segment_size(std::size_t capacity) noexcept {
  return ring_offset(2, capacity);
}

}  // namespace troupe::shm
