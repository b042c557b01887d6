#pragma once
// A named POSIX shared-memory segment (Boost.Interprocess) with a validated header.
//
// create(): O_EXCL, mode 0600, sized with posix_fallocate so that a full /dev/shm is a clear
// error now rather than a SIGBUS on first touch; the creator owns the name and unlinks it when
// the Segment is destroyed. attach(): refuses a segment whose magic, layout version, kind or
// size does not match. Names are unique per run ("troupe.<pid>.<nonce>.<n>.<tag>") so that
// segments of dead runs can be found by creator pid and removed (remove_stale_segments, and the
// troupe-shm tool).
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "troupe/shm/segment_layout.hpp"

namespace troupe::shm {

class Segment {
 public:
  /// Creates and maps a new segment of `size` bytes (header included). Throws troupe::Error
  /// naming the segment and the failing call (EEXIST, ENOSPC...); nothing is left behind.
  static Segment create(const std::string& name, std::size_t size, SegmentKind kind);
  /// Maps an existing segment after validating its header. Throws troupe::ProtocolError on a
  /// mismatch (and troupe::Error when it does not exist).
  static Segment attach(const std::string& name, SegmentKind kind);

  Segment(Segment&&) noexcept;
  Segment& operator=(Segment&&) noexcept;
  ~Segment();

  const std::string& name() const noexcept { return name_; }
  std::size_t size() const noexcept { return size_; }
  std::byte* base() const noexcept { return base_; }
  SegmentHeader& header() const noexcept { return *reinterpret_cast<SegmentHeader*>(base_); }
  bool owns_name() const noexcept { return owner_; }

  /// Declares the layout initialised: attach() refuses the segment until then.
  void mark_ready() noexcept {
    // SYNC POINT: publishes every byte the creator initialised; pairs with attach's acquire.
    header().ready.store(1, std::memory_order_release);
  }
  /// Removes the name now (the mapping stays valid until destruction). Idempotent.
  void unlink() noexcept;
  /// Gives up ownership of the name: this object will not unlink it (a forked child inherits
  /// its parent's Segment objects and must not remove the parent's names).
  void disown() noexcept { owner_ = false; }

 private:
  struct Mapping;  // the Boost.Interprocess region, kept out of this header
  Segment(std::string name, std::unique_ptr<Mapping> mapping, bool owner) noexcept;
  void release() noexcept;

  std::string name_;
  std::unique_ptr<Mapping> mapping_;
  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
  bool owner_ = false;
};

/// A segment name unique to this process and call: "troupe.<pid>.<nonce>.<n>[.<tag>]".
std::string unique_segment_name(std::string_view tag = {});

/// Start time of a process in clock ticks since boot (/proc/<pid>/stat field 22), or 0 when
/// the process does not exist or has ended: a zombie counts as ended (a killed run's orphans
/// stay zombies until pid 1 reaps them, which in some containers is never), unless only its
/// main thread has ended and others still run. With the pid it identifies a process even
/// across pid reuse.
std::uint64_t process_start_ticks(pid_t pid);

/// What the troupe-shm tool shows of one segment in /dev/shm.
struct SegmentInfo {
  std::string name;
  std::size_t size = 0;
  pid_t creator_pid = 0;
  bool header_valid = false;  ///< magic and version matched
  bool creator_alive = false;
};

/// Lists Troupe segments in /dev/shm.
std::vector<SegmentInfo> list_segments();
/// Removes the segments whose creator is dead (or whose pid now names another process).
/// Returns the names removed. Safe while other runs are live: their segments are kept.
std::vector<std::string> remove_stale_segments();

}  // namespace troupe::shm
