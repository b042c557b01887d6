#pragma once
// The raw ring every Troupe ring figure is a ratio against: the best simple ring, not a straw
// man (rigtorp's SPSCQueue, in shared memory). Shared by the shm and core benchmarks.
#include <sys/mman.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "troupe/shm/segment_layout.hpp"

namespace troupe::bench {

constexpr std::size_t kLine =
    troupe::shm::kFalseSharingRange;  // 128: adjacent-line prefetch pairs lines

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }
[[noreturn]] void fail_errno(const std::string& call) { fail(call + ": " + std::strerror(errno)); }

/// An anonymous MAP_SHARED mapping, created before fork so that parent and children share it.
class SharedMapping {
 public:
  explicit SharedMapping(std::size_t bytes) : bytes_(bytes) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) {
      fail_errno("mmap(MAP_SHARED | MAP_ANONYMOUS, " + std::to_string(bytes) + " bytes)");
    }
    base_ = static_cast<std::byte*>(p);
  }
  ~SharedMapping() { ::munmap(base_, bytes_); }
  SharedMapping(const SharedMapping&) = delete;
  SharedMapping& operator=(const SharedMapping&) = delete;

  std::byte* at(std::size_t offset) const noexcept { return base_ + offset; }

 private:
  std::size_t bytes_;
  std::byte* base_ = nullptr;
};

constexpr std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

// ---------------------------------------------------------------------------------------------
// RawRing: the baseline. The best simple ring, not a straw man: fixed-size slots and two
// positions, each on its own 128-byte line, each side caching the other's position (rigtorp's
// SPSCQueue, in shared memory). No framing, no sleeper flag, no wake-up: both sides spin (or, in
// the oversubscribed cases, yield or sleep on the Doorbell below).
//
// Roles: one RawProducer and one RawConsumer per ring, each used by one thread (here: one
// process each).
// Invariant: head <= tail <= head + slots; slots [head, tail) hold published messages.

struct RawRingControl {
  /// Messages ever published. Written by the producer only.
  alignas(kLine) std::atomic<std::uint64_t> tail;
  /// Messages ever released (their slots may be overwritten). Written by the consumer only.
  alignas(kLine) std::atomic<std::uint64_t> head;
};
static_assert(offsetof(RawRingControl, head) - offsetof(RawRingControl, tail) >= kLine,
              "producer- and consumer-owned positions must not share a prefetch pair");
static_assert(sizeof(RawRingControl) == 2 * kLine, "the slots start on a line of their own");
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

/// The producer end. Only one thread may call it.
template <std::size_t kSlot>
class RawProducer {
 public:
  RawProducer(RawRingControl& ring, std::size_t slots) noexcept
      : ring_(&ring), slots_(reinterpret_cast<std::byte*>(&ring + 1)), mask_(slots - 1) {}

  /// Copies one message into the next slot without publishing it. False when the ring is full.
  bool try_write(const std::byte* message) noexcept {
    if (tail_ - head_cache_ > mask_) {
      // SYNC POINT: acquire pairs with the consumer's release store of head in release(): its
      // reads of the slots below head are done, so they may be overwritten.
      head_cache_ = ring_->head.load(std::memory_order_acquire);
      if (tail_ - head_cache_ > mask_) return false;
    }
    std::memcpy(slots_ + (tail_ & mask_) * kSlot, message, kSlot);
    ++tail_;
    return true;
  }

  /// Publishes every message written since the last publish with one store. `order` is
  /// release, or seq_cst where the futex strategy orders the store before its load of the
  /// consumer's sleeper flag (the Doorbell handshake).
  void publish(std::memory_order order) noexcept {
    if (tail_ == published_) return;
    // SYNC POINT: publishes the slots written before it; pairs with the consumer's acquire
    // load of tail in front().
    ring_->tail.store(tail_, order);
    published_ = tail_;
  }

  bool try_push(const std::byte* message) noexcept {
    if (!try_write(message)) return false;
    publish(std::memory_order_release);
    return true;
  }

 private:
  RawRingControl* ring_;
  std::byte* slots_;
  std::uint64_t mask_;
  std::uint64_t tail_ = 0;        ///< messages written, published or not
  std::uint64_t published_ = 0;   ///< the tail the consumer can see
  std::uint64_t head_cache_ = 0;  ///< the consumer's head when last read
};

/// The consumer end. Only one thread may call it.
template <std::size_t kSlot>
class RawConsumer {
 public:
  RawConsumer(RawRingControl& ring, std::size_t slots) noexcept
      : ring_(&ring), slots_(reinterpret_cast<const std::byte*>(&ring + 1)), mask_(slots - 1) {}

  /// The oldest published message not yet popped, or nullptr when there is none. It stays
  /// valid until release().
  const std::byte* front() noexcept {
    if (head_ == tail_cache_) {
      // SYNC POINT: acquire pairs with the producer's store of tail in publish(): the slots
      // below it are fully written.
      tail_cache_ = ring_->tail.load(std::memory_order_acquire);
      if (head_ == tail_cache_) return nullptr;
    }
    return slots_ + (head_ & mask_) * kSlot;
  }
  void pop() noexcept { ++head_; }

  /// Gives the slots of every popped message back to the producer with one store.
  void release() noexcept {
    if (head_ == released_) return;
    // SYNC POINT: release orders our reads of the popped slots before the producer's acquire
    // load of head in try_write(), after which it overwrites them.
    ring_->head.store(head_, std::memory_order_release);
    released_ = head_;
  }
  std::uint64_t unreleased() const noexcept { return head_ - released_; }

  /// The futex strategy's re-check before sleeping: seq_cst, so that it is ordered after the
  /// sleeper flag's exchange (step S3 of the Doorbell handshake).
  bool empty_seq_cst() noexcept {
    tail_cache_ = ring_->tail.load(std::memory_order_seq_cst);
    return head_ == tail_cache_;
  }

 private:
  RawRingControl* ring_;
  const std::byte* slots_;
  std::uint64_t mask_;
  std::uint64_t head_ = 0;        ///< messages popped
  std::uint64_t released_ = 0;    ///< the head the producer can see
  std::uint64_t tail_cache_ = 0;  ///< the producer's tail when last read
};

/// `count` raw rings of `slots` slots of kSlot bytes in one shared mapping.
template <std::size_t kSlot>
class RawRings {
 public:
  RawRings(std::size_t count, std::size_t slots)
      : slots_(slots),
        stride_(round_up(sizeof(RawRingControl) + slots * kSlot, kLine)),
        mapping_(count * stride_) {
    if (slots < 2 || (slots & (slots - 1)) != 0) {
      fail("RawRings: slots = " + std::to_string(slots) + ": must be a power of two >= 2");
    }
    for (std::size_t i = 0; i < count; ++i) new (mapping_.at(i * stride_)) RawRingControl{};
  }
  RawProducer<kSlot> producer(std::size_t i) const { return {control(i), slots_}; }
  RawConsumer<kSlot> consumer(std::size_t i) const { return {control(i), slots_}; }

 private:
  RawRingControl& control(std::size_t i) const {
    return *reinterpret_cast<RawRingControl*>(mapping_.at(i * stride_));
  }
  std::size_t slots_;
  std::size_t stride_;
  SharedMapping mapping_;
};

}  // namespace troupe::bench
