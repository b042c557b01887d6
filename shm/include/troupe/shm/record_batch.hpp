#pragma once
// Records laid out in private memory, for SpscRingProducer::try_append() to copy into a ring in
// one piece.
//
// Why: a producer that writes records one by one into the ring stores each in pieces (16-byte
// chunks of payload, then the header word), and in a stream every one of those stores waits in
// the store buffer for a line the consumer last read. One copy of a whole batch (libc's
// memcpy) stores aligned full lines instead, so that many more lines are on their way at once.
// A stream of 64-byte payloads in batches of 32 made 0.60x of the raw ring's rate written
// record by record and 1.01x appended as batches, in the same runs (bench/shm/stream_pairs, 25
// rounds); Boost.Lockfree's bulk push, which copies its elements the same way, 1.01x.
// A lone record (a request, a reply) gains nothing: write it with try_write().
//
// Not thread-safe; reusable after clear(), without allocating.
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "troupe/shm/ring_layout.hpp"

namespace troupe::shm {

class RecordBatch {
 public:
  /// A batch of up to `max_bytes` of records, headers included (record_size() each). To fit a
  /// ring, a batch may take at most half its capacity (SpscRingProducer::max_batch_bytes()).
  explicit RecordBatch(std::size_t max_bytes) : words_(max_bytes / sizeof(std::uint64_t)) {}

  /// Adds a record of `payload` bytes and returns where its payload goes, to be filled before
  /// the batch is appended (8-byte aligned, valid until clear()); nullptr, adding nothing, when
  /// the batch has no room for it or `type` is not a record type (a header word of zero, or an
  /// unknown type, would end or break the consumer's reading).
  std::byte* add(RecordType type, std::size_t payload) noexcept {
    if (type < RecordType::kPadding || type > RecordType::kFragmentAbort) return nullptr;
    if (payload > capacity() - bytes_) return nullptr;  // before record_size(), which may wrap
    const std::size_t size = record_size(payload);
    if (size > capacity() - bytes_) return nullptr;
    std::byte* at = data() + bytes_;
    const std::uint64_t header = make_header(payload, type);
    std::memcpy(at, &header, sizeof header);
    bytes_ += size;
    ++records_;
    return at + sizeof header;
  }

  /// Adds a record holding a copy of `payload`; false, adding nothing, when there is no room.
  bool append(RecordType type, std::span<const std::byte> payload) noexcept {
    std::byte* to = add(type, payload.size());
    if (to == nullptr) return false;
    if (!payload.empty()) std::memcpy(to, payload.data(), payload.size());
    return true;
  }

  /// The records as they go into the ring.
  std::span<const std::byte> bytes() const noexcept { return {data(), bytes_}; }
  std::size_t records() const noexcept { return records_; }
  bool empty() const noexcept { return records_ == 0; }
  std::size_t capacity() const noexcept { return words_.size() * sizeof(std::uint64_t); }
  void clear() noexcept {
    bytes_ = 0;
    records_ = 0;
  }

 private:
  std::byte* data() noexcept { return reinterpret_cast<std::byte*>(words_.data()); }
  const std::byte* data() const noexcept {
    return reinterpret_cast<const std::byte*>(words_.data());
  }

  std::vector<std::uint64_t> words_;  // 8-byte aligned, as the ring's records are
  std::size_t bytes_ = 0;
  std::size_t records_ = 0;
};

}  // namespace troupe::shm
