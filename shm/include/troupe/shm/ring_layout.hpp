#pragma once
// Shared-memory layout of one single-producer single-consumer byte ring (the algorithms are in
// spsc_ring.hpp). Plain data and positions only, never pointers.
//
// RingControl, five 128-byte lines, then the data area:
//
//   +0     tail               uint64   producer-owned: a hint of the bytes published (records
//                                      are published by their headers, see spsc_ring.hpp)
//   +128   head               uint64   consumer-owned: bytes ever released
//   +256   consumer_sleeping  uint32   consumer about to sleep / data_signal: futex word
//   +384   producer_sleeping  uint32   producer about to sleep / space_signal: futex word
//   +512   capacity           uint64   read-only after creation (a power of two)
//   +640   data[capacity]
//
// Positions grow forever (2^64 bytes never wrap in practice); a position's index in the data
// area is `position & (capacity - 1)`.
//
// Records are 8-byte aligned so that FlatBuffers fields in a payload read aligned:
//
//   +--------------+--------------+----------------------------+---------+
//   | length  (u32)| type   (u32) | payload (length bytes)     | pad to 8|
//   +--------------+--------------+----------------------------+---------+
//
// The header is one 8-byte word (length in the low half, type in the high half, little-endian),
// stored last and atomically: it publishes the record. The type is never 0, so a zero word is
// "nothing here yet": the producer keeps a zero word after the last record it published (the
// data area starts zeroed; each publication zeroes the word after its last record before it
// stores the header that makes it visible).
//
// A record never wraps: when it does not fit before the end of the data area, the producer
// fills the rest with one padding record (type kPadding, any length) and starts at index 0.
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>

#include "troupe/shm/segment_layout.hpp"

namespace troupe::shm {

enum class RecordType : std::uint32_t {
  kPadding = 1,         ///< fills the end of the data area; skipped by the consumer
  kMessage = 2,         ///< one whole frame
  kFragmentFirst = 3,   ///< payload: u64 total frame length, then the first bytes
  kFragmentMiddle = 4,  ///< next bytes of the frame
  kFragmentLast = 5,    ///< last bytes: the frame is complete
  kFragmentAbort = 6,   ///< the producer gave up mid-frame (deadline): drop the partial frame
};

struct RecordHeader {
  std::uint32_t length;  ///< payload bytes, not counting this header or the padding
  RecordType type;
};
static_assert(sizeof(RecordHeader) == 8);
static_assert(std::endian::native == std::endian::little, "the header word's layout");

/// A record's header as the one word that publishes it (the bytes of RecordHeader{length, type}).
constexpr std::uint64_t make_header(std::size_t length, RecordType type) noexcept {
  return static_cast<std::uint32_t>(length) | std::uint64_t{static_cast<std::uint32_t>(type)} << 32;
}

inline constexpr std::size_t kRecordAlignment = 8;
inline constexpr std::size_t kMinRingCapacity = 4096;
inline constexpr std::size_t kMaxRingCapacity = std::size_t{1} << 30;

/// Bytes a record with `payload` bytes occupies in the ring.
constexpr std::size_t record_size(std::size_t payload) noexcept {
  return (sizeof(RecordHeader) + payload + kRecordAlignment - 1) & ~(kRecordAlignment - 1);
}
/// The largest payload of one record: half the ring, so that any record fits in an empty ring
/// whatever the wrap position (see SpscRingProducer::try_write).
constexpr std::size_t max_record_payload(std::size_t capacity) noexcept {
  return capacity / 2 - sizeof(RecordHeader);
}

struct RingControl {
  /// The producer's record of what it published, stored relaxed after the headers that
  /// publish the records (spsc_ring.hpp): a hint for the consumer's process, and where a
  /// producer that attaches later starts looking for the end. It may lag the published
  /// records, and even the consumer's head, for a moment; no one synchronises on it.
  alignas(kFalseSharingRange) std::atomic<std::uint64_t> tail;
  /// SYNC POINT (consumer): the release store says "bytes before head are read, reuse them";
  /// pairs with the producer's acquire load before it overwrites them.
  alignas(kFalseSharingRange) std::atomic<std::uint64_t> head;
  /// 1 while the consumer is (about to be) asleep on data_signal. Written by the consumer, and
  /// cleared by the producer that wakes it.
  alignas(kFalseSharingRange) std::atomic<std::uint32_t> consumer_sleeping;
  std::atomic<std::uint32_t> data_signal;  ///< futex word: bumped to wake the consumer
  /// 1 while the producer is (about to be) asleep on space_signal.
  alignas(kFalseSharingRange) std::atomic<std::uint32_t> producer_sleeping;
  std::atomic<std::uint32_t> space_signal;  ///< futex word: bumped to wake the producer
  alignas(kFalseSharingRange) std::uint64_t capacity;
};

static_assert(offsetof(RingControl, head) - offsetof(RingControl, tail) >= kFalseSharingRange,
              "producer- and consumer-owned positions must not share a prefetch pair");
static_assert(offsetof(RingControl, consumer_sleeping) == 256, "the layout diagram above");
static_assert(offsetof(RingControl, producer_sleeping) == 384, "the layout diagram above");
static_assert(sizeof(RingControl) == 640, "the layout diagram above");
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

}  // namespace troupe::shm
