#pragma once
// The header at offset 0 of every Troupe shared-memory segment. Plain data and offsets only,
// never pointers: each process maps the segment at its own address.
//
//   0        8        12       16                24       28       32                40     44
//   +--------+--------+--------+-----------------+--------+--------+-----------------+------+--
//   | magic  |version | kind   | size            | pid    | (pad)  | start ticks     |ready | ...
//   to 128
//   +--------+--------+--------+-----------------+--------+--------+-----------------+------+--
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace troupe::shm {

inline constexpr std::uint64_t kSegmentMagic = 0x3150555152544C53ULL;  // "SLTRQUP1" little-endian
/// Bumped whenever any shared-memory layout or the wire schema changes (a frame kind an older
/// peer cannot read would be dropped by it, and its call would wait for ever): peers of
/// different builds refuse each other when they attach. 3: Kind::Refused.
inline constexpr std::uint32_t kLayoutVersion = 3;
inline constexpr std::size_t kCacheLine = 64;
/// Producer- and consumer-owned words sit this far apart: adjacent-line prefetch pairs lines.
inline constexpr std::size_t kFalseSharingRange = 128;

enum class SegmentKind : std::uint32_t {
  kChannel = 1,     ///< a ShmChannel: two rings, one per direction
  kScratch = 2,     ///< tests and tools
  kRendezvous = 3,  ///< a local-mode port: where clients hand a server their channels
};

struct alignas(kFalseSharingRange) SegmentHeader {
  std::uint64_t magic;
  std::uint32_t layout_version;
  SegmentKind kind;
  std::uint64_t size;  ///< bytes of the whole segment
  std::int32_t creator_pid;
  std::uint32_t reserved;
  std::uint64_t creator_start_ticks;  ///< tells a reused pid apart (see process_start_ticks)
  /// 0 while the creator initialises, 1 once the segment may be used.
  /// SYNC POINT: the creator's release store publishes every initialised byte; pairs with the
  /// acquire load in Segment::attach.
  std::atomic<std::uint32_t> ready;
};

static_assert(sizeof(SegmentHeader) == kFalseSharingRange);
static_assert(offsetof(SegmentHeader, ready) == 40, "the layout diagram above");
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

}  // namespace troupe::shm
