#pragma once
// A single-producer single-consumer ring of variable-length records in shared memory (layout:
// ring_layout.hpp). Aeron's record protocol: a record's header is its publication, so the
// consumer reads the lines that hold records, and the shared tail only as a hint (while it waits
// after a batch, see has_data()); rigtorp's cached head on the producer's side.
//
// Roles: one SpscRingProducer and one SpscRingConsumer per ring, usually in two processes. Only
// one thread at a time may call a given producer's (or consumer's) methods; the owner of the
// object serialises (ShmChannel does it with its send lock and receive lease).
//
// Invariants, on the producer's tail (the end of what it published) and the consumer's head:
// head <= tail <= head + capacity - 8; [head, tail) holds whole records, and the word at tail
// is zero ("no record here yet": a header word is never 0, its type is not). The producer
// keeps that last word free, holds back the header of the first record it writes after a
// publication (that word stays zero meanwhile), and stores a zero "terminator" word after the
// last record of a publication before it publishes; the data area starts zeroed. Bytes of
// earlier laps elsewhere are never read as headers: the consumer reads a header only where the
// previous record ends.
//
// Publication: the producer writes a record's payload, then its 8-byte header word (length and
// type) with a release store; the consumer acquire-loads the header word at its head and takes
// the record when it is not zero. Batched publication: try_write() appends records privately,
// holding back the header of the first one; publish() stores the terminator after the last
// one, then that held-back header, which makes the whole run visible (the consumer reaches the
// later headers and the terminator only through it, and its acquire covers their relaxed
// stores). try_append() appends a RecordBatch (records laid out in private memory) the same
// way in one copy: a batched stream's producer then stores full lines instead of a record's
// pieces (record_batch.hpp). The consumer releases space in batches (publish_head()).
//
// One terminator a publication, not one a record: a store fewer per record, and no store into
// the next record's line before the record's own. A publication's first record, which may stay
// alone (a request, a reply), still gets its terminator in try_write() (unless a padding record
// at the wrap came first), so that the terminator's line is fetched with the record's instead
// of delaying publish().
//
// The shared tail is the producer's record of what it published: a hint for other threads of
// the consumer's process (maybe_has_data()), for a consumer that just took a batch (has_data()
// says why), and where a producer taking over the ring starts looking for the end. No one
// synchronises on it. A record costs the consumer the transfer of its own lines (and, after a
// batch, of the tail's line while it waits for the next), and the consumer never writes to the
// data area.
//
// Sleeper handshake (data; space is the mirror image) — an asymmetric Dekker. The consumer,
// finding the ring empty, before it sleeps:
//   C1 s = data_signal.load()   C2 consumer_sleeping.exchange(1)   C2' heavy_barrier()
//   C3 re-check the header word at head   C4 futex_wait(data_signal, s)
// The producer, in publish():
//   P1 header.store(word, release)   P1' compiler fence   P2 if consumer_sleeping.load(relaxed):
//   exchange(0), data_signal++, futex_wake
// heavy_barrier() is membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED): every running thread of every
// registered process executes a full fence. So either the producer's P2 runs after that fence
// and sees the flag, or its P1 is visible to C3. In the first case its increment of the signal
// follows C1, so futex_wait's own comparison with `s` catches a wake that precedes C4 (the
// snapshot must come before the flag: taken after it, it could already include the increment
// of a producer whose P1 the re-check missed). No wake-up is lost, and the producer's hot path
// pays a plain store and a plain load instead of a locked instruction (a seq_cst store is an
// xchg on x86: it cost 1.6x of a raw ring's round trip here). The sleeper pays the barrier
// (~1 us), only after its spin and yield phases. A process whose membarrier registration fails
// (old kernel, seccomp) uses seq_cst stores and loads instead, which need no barrier.
// Read-modify-writes and seq_cst accesses rather than fences: g++ 12 rejects
// atomic_thread_fence under -fsanitize=thread.
//
// Records are packed: publication does not pad to a cache line. Padding each publication to a
// line made no measurable difference to the round trip, and cost streaming one-by-one almost
// half its rate (a 72-byte record took two lines instead of 1.125).
#include <algorithm>
#include <atomic>
#include <cassert>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>

#include "troupe/shm/futex.hpp"
#include "troupe/shm/record_batch.hpp"
#include "troupe/shm/ring_layout.hpp"

namespace troupe::shm {

/// Initialises a ring's control block. Precondition: the data area is zeroed (a new segment
/// is; see the invariants above).
inline void initialize_ring(RingControl& ring, std::size_t capacity) noexcept {
  ring.tail.store(0, std::memory_order_relaxed);
  ring.head.store(0, std::memory_order_relaxed);
  ring.consumer_sleeping.store(0, std::memory_order_relaxed);
  ring.data_signal.store(0, std::memory_order_relaxed);
  ring.producer_sleeping.store(0, std::memory_order_relaxed);
  ring.space_signal.store(0, std::memory_order_relaxed);
  ring.capacity = capacity;  // published by the segment's ready flag
}

/// Wakes every thread, of this process or the peer, sleeping on either signal of `ring`
/// (closing a channel ends all its waits at once).
inline void wake_all(RingControl& ring) noexcept {
  ring.data_signal.fetch_add(1, std::memory_order_seq_cst);
  ring.space_signal.fetch_add(1, std::memory_order_seq_cst);
  futex_wake(ring.data_signal, 1 << 30);
  futex_wake(ring.space_signal, 1 << 30);
}

/// True when `capacity` is a power of two within [kMinRingCapacity, kMaxRingCapacity].
constexpr bool valid_ring_capacity(std::size_t capacity) noexcept {
  return capacity >= kMinRingCapacity && capacity <= kMaxRingCapacity &&
         (capacity & (capacity - 1)) == 0;
}

/// The header word of the record at `at` (8-byte aligned, in the ring's data area): the one
/// word of a record that both sides access atomically.
inline std::atomic_ref<std::uint64_t> header_word(std::byte* at) noexcept {
  return std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(at));
}
/// The consumer's view (it only loads): atomic_ref needs a non-const object.
inline std::atomic_ref<std::uint64_t> header_word(const std::byte* at) noexcept {
  return header_word(const_cast<std::byte*>(at));
}

/// The end of the records published in `ring` (whose data area is `data`), where a producer
/// taking it over starts; nullopt when its positions or records break the protocol (a peer
/// corrupted them). Only reads. The shared tail is stored after the headers it covers, so a
/// producer that died between the two left it behind (and the consumer may have released past
/// it): from the later of tail and head, this walks the published records to the zero word
/// that ends them.
inline std::optional<std::uint64_t> find_published_end(const RingControl& ring,
                                                       const std::byte* data) noexcept {
  const std::uint64_t capacity = ring.capacity;
  const std::uint64_t head = ring.head.load(std::memory_order_acquire);
  std::uint64_t end = std::max(ring.tail.load(std::memory_order_relaxed), head);
  if (head % kRecordAlignment != 0) return std::nullopt;
  for (;;) {
    if (end % kRecordAlignment != 0 || end - head > capacity - sizeof(std::uint64_t)) {
      return std::nullopt;
    }
    // SYNC POINT: acquire, as the consumer's: the records it publishes are written.
    const std::uint64_t word =
        header_word(data + (end & (capacity - 1))).load(std::memory_order_acquire);
    if (word == 0) return end;
    const std::size_t size = record_size(static_cast<std::uint32_t>(word));
    const auto type = static_cast<RecordType>(word >> 32);
    if (size > capacity - (end & (capacity - 1)) || type < RecordType::kPadding ||
        type > RecordType::kFragmentAbort) {
      return std::nullopt;
    }
    end += size;
  }
}

class SpscRingProducer {
 public:
  /// Takes the producer's side of `ring`, new or used: it starts after the last record
  /// published there (find_published_end()). Precondition: ring.capacity is valid.
  SpscRingProducer(RingControl& ring, std::byte* data) noexcept
      : ring_(&ring),
        data_(data),
        capacity_(ring.capacity),
        head_cache_(ring.head.load(std::memory_order_acquire)),
        asymmetric_(asymmetric_barrier_available()) {
    if (const auto end = find_published_end(ring, data)) {
      tail_ = published_ = *end;
      // The hint, exact again if a producer died before storing it. Relaxed, as in publish().
      ring.tail.store(tail_, std::memory_order_relaxed);
    } else {
      broken_ = true;
      tail_ = published_ = head_cache_ & ~std::uint64_t{kRecordAlignment - 1};
    }
  }

  std::size_t capacity() const noexcept { return capacity_; }
  /// True when the ring's positions or records contradict the protocol (a peer corrupted
  /// them): then nothing can be written, for good.
  bool broken() const noexcept { return broken_; }
  std::size_t max_payload() const noexcept { return max_record_payload(capacity_); }

  /// Appends one record whose payload is `first` followed by `second`, without publishing it.
  /// Returns false, writing nothing, when the ring lacks space now.
  /// Precondition: first.size() + second.size() <= max_payload().
  bool try_write(RecordType type, std::span<const std::byte> first,
                 std::span<const std::byte> second = {}) noexcept {
    const std::size_t payload = first.size() + second.size();
    assert(payload <= max_payload());
    const std::size_t size = record_size(payload);
    std::byte* at = reserve(size);
    if (at == nullptr) return false;
    if (tail_ == published_) {
      // The first record of a publication, which may stay alone (a request, a reply): its
      // terminator goes now, so that fetching the line after it overlaps with fetching its own
      // instead of delaying publish().
      terminated_ = tail_ + size;
      header_word(data_ + (terminated_ & (capacity_ - 1))).store(0, std::memory_order_relaxed);
    }
    if (!first.empty()) std::memcpy(at + sizeof(std::uint64_t), first.data(), first.size());
    if (!second.empty()) {
      std::memcpy(at + sizeof(std::uint64_t) + first.size(), second.data(), second.size());
    }
    write_header(at, make_header(payload, type));
    tail_ += size;
    return true;
  }

  /// The most bytes of records one try_append() takes: half the ring, as a record.
  std::size_t max_batch_bytes() const noexcept { return record_size(max_payload()); }

  /// Appends a batch of records in one copy (record_batch.hpp says why), without publishing
  /// them: the consumer takes the same records as after try_write() for each, in order, but
  /// the batch stays whole (a padding record at the wrap moves all of it to the ring's start).
  /// Returns false, writing nothing, when the ring lacks space now. A batch larger than
  /// max_batch_bytes() could never be sure to fit: it ends the process, naming the sizes.
  bool try_append(const RecordBatch& batch) noexcept {
    const std::span<const std::byte> records = batch.bytes();
    if (records.size() > max_batch_bytes()) {
      std::fprintf(stderr,
                   "troupe: SpscRingProducer::try_append: a batch of %zu bytes, over "
                   "the %zu a ring of %zu takes\n",
                   records.size(), max_batch_bytes(), capacity_);
      std::abort();
    }
    if (records.empty()) return true;
    std::byte* at = reserve(records.size());
    if (at == nullptr) return false;
    if (tail_ == published_) {
      // The first header is held back, as try_write() holds back a publication's first: the
      // word at `at` stays the terminator (zero) until publish().
      std::memcpy(&held_back_, records.data(), sizeof held_back_);
      std::memcpy(at + sizeof held_back_, records.data() + sizeof held_back_,
                  records.size() - sizeof held_back_);
    } else {
      // Its headers are plain stores, as try_write()'s later ones are relaxed: the consumer
      // reads them only after acquiring the held-back header that publish() stores.
      std::memcpy(at, records.data(), records.size());
    }
    tail_ += records.size();
    return true;
  }

  /// True when a record of `payload` bytes would fit now (refreshes the cached head).
  bool has_space_for(std::size_t payload) noexcept {
    // SYNC POINT: as in reserve().
    head_cache_ = ring_->head.load(std::memory_order_acquire);
    return fits(payload);
  }

  /// True when a batch of `bytes` of records (0, or a multiple of 8 up to max_batch_bytes())
  /// would fit now; reads the consumer's head only when the cached one says it would not.
  /// Space only grows until this producer writes, so a batch that fits now still fits then.
  bool has_space_for_batch(std::size_t bytes) noexcept {
    assert(bytes % kRecordAlignment == 0 && bytes <= max_batch_bytes());
    if (bytes == 0) return true;
    if (fits_bytes(bytes)) return true;
    head_cache_ = ring_->head.load(std::memory_order_acquire);  // SYNC POINT: as in reserve()
    return fits_bytes(bytes);
  }

  /// Makes every record written since the last publish visible, and wakes a sleeping consumer.
  void publish() noexcept {
    if (tail_ == published_) return;
    // SYNC POINT: the held-back header publishes the records in [published_, tail_); pairs
    // with the consumer's acquire load of it. Step P1 of the handshake.
    auto first = header_word(data_ + (published_ & (capacity_ - 1)));
    // The terminator, unless try_write() stored it (a lone record): relaxed, published by the
    // release store below, like the later headers.
    if (terminated_ != tail_) {
      header_word(data_ + (tail_ & (capacity_ - 1))).store(0, std::memory_order_relaxed);
    }
    bool sleeping;
    if (asymmetric_) {
      first.store(held_back_, std::memory_order_release);
      std::atomic_signal_fence(std::memory_order_seq_cst);  // P1': keep P2 after P1
      sleeping = ring_->consumer_sleeping.load(std::memory_order_relaxed) != 0;
    } else {
      first.store(held_back_, std::memory_order_seq_cst);
      sleeping = ring_->consumer_sleeping.load(std::memory_order_seq_cst) != 0;
    }
    published_ = tail_;
    // For maybe_has_data()'s hint (and a producer attaching later): relaxed, synchronising
    // nothing, on a line of its own.
    ring_->tail.store(tail_, std::memory_order_relaxed);
    // P2. The load is cheap: the line stays shared until a consumer goes to sleep.
    if (sleeping && ring_->consumer_sleeping.exchange(0, std::memory_order_seq_cst) != 0) {
      ring_->data_signal.fetch_add(1, std::memory_order_seq_cst);
      futex_wake(ring_->data_signal);
    }
  }

  bool try_push(RecordType type, std::span<const std::byte> payload) noexcept {
    if (!try_write(type, payload)) return false;
    publish();
    return true;
  }

  std::size_t unpublished_bytes() const noexcept { return tail_ - published_; }

  /// Sleeps until the consumer releases space (or `timeout`), unless a record of `payload`
  /// bytes fits already. Returns true when it did not time out. The mirror of the consumer's
  /// handshake, on producer_sleeping and space_signal.
  bool sleep_for_space(std::size_t payload, std::chrono::nanoseconds timeout) noexcept {
    const std::uint32_t signal = ring_->space_signal.load(std::memory_order_seq_cst);
    ring_->producer_sleeping.exchange(1, std::memory_order_seq_cst);
    heavy_barrier();
    // seq_cst, not just acquire: the re-check takes part in the handshake's total order.
    head_cache_ = ring_->head.load(std::memory_order_seq_cst);
    if (fits(payload)) {
      ring_->producer_sleeping.store(0, std::memory_order_relaxed);
      return true;
    }
    const bool woke = futex_wait(ring_->space_signal, signal, timeout);
    ring_->producer_sleeping.store(0, std::memory_order_relaxed);
    return woke;
  }

 private:
  /// Where `size` bytes of records go, after a padding record at the wrap if they do not fit
  /// before the end; nullptr when the ring lacks space now (nothing is written then).
  std::byte* reserve(std::size_t size) noexcept {
    if (!fits_bytes(size)) {
      // SYNC POINT: pairs with the consumer's store of head in publish_head(): the bytes
      // before it are read, and may be overwritten.
      head_cache_ = ring_->head.load(std::memory_order_acquire);
      if (!fits_bytes(size)) return nullptr;
    }
    const std::size_t index = tail_ & (capacity_ - 1);
    const std::size_t to_end = capacity_ - index;
    std::byte* at = data_ + index;
    if (size > to_end) {
      write_header(at, make_header(to_end - sizeof(std::uint64_t), RecordType::kPadding));
      tail_ += to_end;
      at = data_;
    }
    return at;
  }

  bool fits(std::size_t payload) const noexcept { return fits_bytes(record_size(payload)); }

  /// True when `size` bytes of records fit by the cached head: with a padding record first
  /// where they do not fit before the end (since size is at most capacity / 2, one of the two
  /// always fits in an empty ring), and the terminator's word after them.
  bool fits_bytes(std::size_t size) const noexcept {
    const std::size_t to_end = capacity_ - (tail_ & (capacity_ - 1));
    const std::size_t needed = (size <= to_end ? size : to_end + size) + kTerminator;
    return tail_ + needed - head_cache_ <= capacity_ && !broken_;
  }

  /// Stores the header of the record at tail_, or holds it back when it is the first of this
  /// publication (publish() stores it).
  void write_header(std::byte* at, std::uint64_t word) noexcept {
    if (tail_ == published_) {
      held_back_ = word;
    } else {
      // Relaxed: the consumer reads it only after acquiring the held-back header, whose
      // release store follows this one.
      header_word(at).store(word, std::memory_order_relaxed);
    }
  }

  static constexpr std::size_t kTerminator = sizeof(std::uint64_t);  ///< the word kept free

  RingControl* ring_;
  std::byte* data_;
  std::size_t capacity_;
  std::uint64_t tail_;            ///< end of the records written, published or not
  std::uint64_t published_;       ///< the tail the consumer can see
  std::uint64_t head_cache_;      ///< the consumer's head when last read: space known to be free
  std::uint64_t held_back_ = 0;   ///< the header word of the record at published_, if written
  std::uint64_t terminated_ = 0;  ///< where try_write() last stored a terminator
  bool asymmetric_;               ///< this process takes the membarrier handshake's fast path
  bool broken_ = false;           ///< see broken()
};

/// One record as the consumer sees it. The payload stays valid until publish_head().
struct RingRecord {
  RecordType type;
  std::span<const std::byte> payload;
};

class SpscRingConsumer {
 public:
  /// Takes the consumer's side of `ring`, new or used. A head that is not a record boundary
  /// (a peer corrupted it) makes the consumer corrupt() from the start.
  SpscRingConsumer(RingControl& ring, const std::byte* data) noexcept
      : ring_(&ring),
        data_(data),
        capacity_(ring.capacity),
        head_(ring.head.load(std::memory_order_relaxed)),
        released_(head_),
        asymmetric_(asymmetric_barrier_available()) {
    if (head_ % kRecordAlignment != 0) {
      corrupt_ = true;
      head_ = released_ = head_ & ~std::uint64_t{kRecordAlignment - 1};  // peek() stays in bounds
    }
  }

  std::size_t capacity() const noexcept { return capacity_; }

  /// Takes the next record, skipping padding, and advances past it privately (its bytes stay
  /// valid until publish_head()). Returns nullopt when no record is published, or when the
  /// ring holds bytes that break the record protocol: then corrupt() is true for good.
  std::optional<RingRecord> try_take() noexcept {
    while (!corrupt_) {
      const std::uint64_t word = peek(std::memory_order_acquire);
      if (word == 0) {
        // Caught up after a batch: the producer is likely writing the next one right here.
        // After a lone record: a round trip, where the header word answers soonest. After
        // nothing (a second look in a row, as a poll that delivered makes at its next start):
        // what the last burst said still holds.
        if (burst_ > 1) {
          tail_watches_ = kTailWatches;
        } else if (burst_ == 1) {
          tail_watches_ = 0;
        }
        burst_ = 0;
        return std::nullopt;
      }
      const std::size_t index = head_ & (capacity_ - 1);
      const auto length = static_cast<std::uint32_t>(word);
      const auto type = static_cast<RecordType>(word >> 32);
      const std::size_t size = record_size(length);
      // A record must lie in the data area, within the space the producer may write (up to a
      // lap past what we released), and have a known type.
      if (length > capacity_ || size > capacity_ - index || head_ + size > released_ + capacity_ ||
          type < RecordType::kPadding || type > RecordType::kFragmentAbort) {
        corrupt_ = true;
        return std::nullopt;
      }
      head_ += size;
      if (type == RecordType::kPadding) continue;
      ++burst_;
      if (size > 64) prefetch_lines(index + 64, index + size);
      return RingRecord{type, {data_ + index + sizeof(std::uint64_t), length}};
    }
    return std::nullopt;
  }

  /// True when a record is published and not yet taken. A consumer that just took a batch
  /// asks the shared tail first, up to kTailWatches times: the producer is writing the next
  /// batch into the line that holds the header word at our head, and every look there would
  /// take that line from it while it writes (as a raw ring's consumer, which watches the tail,
  /// never does). Paired runs of a batched 64-byte stream: +25-45%. After a lone record (a
  /// round trip) it looks at the header word itself: one line transfer, not two, when the
  /// record comes. Correctness never rests on the tail: it is a hint (maybe_has_data()); a
  /// true answer is confirmed on the header word, and a false one is at worst late.
  bool has_data() noexcept {
    if (tail_watches_ != 0) {
      if (ring_->tail.load(std::memory_order_relaxed) == head_) {
        --tail_watches_;
        return false;
      }
      tail_watches_ = 0;
    }
    return peek(std::memory_order_acquire) != 0;
  }

  /// A hint that any thread may ask (it reads only the shared positions): false when every
  /// record published by the time the producer stored its tail was taken and released. The
  /// loads are relaxed: a hint orders nothing, and whoever acts on it takes the records
  /// through try_take(), whose acquire load of a header synchronises. A record whose tail
  /// store is not visible yet reads as "nothing" for a moment; no one sleeps on the hint (the
  /// sleeper's re-check reads the header, step C3).
  bool maybe_has_data() const noexcept {
    return ring_->tail.load(std::memory_order_relaxed) !=
           ring_->head.load(std::memory_order_relaxed);
  }

  /// Gives the space of every taken record back to the producer; wakes it if it sleeps.
  void publish_head() noexcept {
    if (head_ == released_) return;
    // SYNC POINT: our reads of [released_, head_) are done; pairs with the producer's acquire
    // load of head before it overwrites them. The space handshake's store step.
    bool sleeping;
    if (asymmetric_) {
      ring_->head.store(head_, std::memory_order_release);
      std::atomic_signal_fence(std::memory_order_seq_cst);
      sleeping = ring_->producer_sleeping.load(std::memory_order_relaxed) != 0;
    } else {
      ring_->head.store(head_, std::memory_order_seq_cst);
      sleeping = ring_->producer_sleeping.load(std::memory_order_seq_cst) != 0;
    }
    released_ = head_;
    if (sleeping && ring_->producer_sleeping.exchange(0, std::memory_order_seq_cst) != 0) {
      ring_->space_signal.fetch_add(1, std::memory_order_seq_cst);
      futex_wake(ring_->space_signal);
    }
  }

  std::size_t unreleased_bytes() const noexcept { return head_ - released_; }

  /// Steps C1-C2 of the handshake (top of this file): flags the consumer as sleeping and
  /// returns the data signal's value to sleep on. confirm_sleep() completes it; end_sleep()
  /// clears the flag after the sleep (or if it is not to happen). Split in two so that a
  /// thread flagging several rings needs one barrier for them all (heavy_barrier_since()).
  std::uint32_t flag_sleep() noexcept {
    const std::uint32_t signal = ring_->data_signal.load(std::memory_order_seq_cst);  // C1
    ring_->consumer_sleeping.exchange(1, std::memory_order_seq_cst);                  // C2
    flagged_after_ = heavy_barriers_made();
    return signal;
  }
  /// Steps C2'-C3: false, with the flag cleared, when a record was published meanwhile (then
  /// do not sleep); true when sleeping on the signal flag_sleep() returned is safe (C4).
  bool confirm_sleep() noexcept {
    heavy_barrier_since(flagged_after_);                    // C2'
    if (peek(std::memory_order_seq_cst) == 0) return true;  // C3
    end_sleep();
    return false;
  }
  void end_sleep() noexcept { ring_->consumer_sleeping.store(0, std::memory_order_relaxed); }
  /// The word a consumer sleeps on: the producer bumps it and wakes it when it publishes to a
  /// flagged consumer (and wake_all() on close).
  std::atomic<std::uint32_t>& data_signal() noexcept { return ring_->data_signal; }

  /// Sleeps until the producer publishes (or `timeout`), unless a record is there already.
  /// Returns true when it did not time out.
  bool sleep_for_data(std::chrono::nanoseconds timeout) noexcept {
    const std::uint32_t signal = flag_sleep();
    if (!confirm_sleep()) return true;
    const bool woke = futex_wait(ring_->data_signal, signal, timeout);  // C4
    end_sleep();
    return woke;
  }

  bool corrupt() const noexcept { return corrupt_; }

 private:
  /// The header word at head: 0 when no record is published there.
  std::uint64_t peek(std::memory_order order) const noexcept {
    // SYNC POINT: acquire pairs with the producer's release store of the header in publish().
    return header_word(data_ + (head_ & (capacity_ - 1))).load(order);
  }

  // Fetches the next lines of a record (up to 4: a typical call frame is ~300 bytes) at once,
  // so that their misses overlap instead of following one another through the reader's walk of
  // the frame (a FlatBuffers verifier follows offsets: each line it misses would otherwise cost
  // a whole transfer from the producer's core). Fetching all of a 1 KiB record's lines cost a
  // stream whose reader looks at two of them a fifth of its rate (0.48x -> 0.58x the raw ring
  // with four).
  void prefetch_lines(std::size_t from, std::size_t to) const noexcept {
    const std::size_t end = std::min(to, (from & ~std::size_t{63}) + 4 * 64);
    for (std::size_t i = from & ~std::size_t{63}; i < end; i += 64) {
      __builtin_prefetch(data_ + i);
    }
  }

  /// How many looks at the tail a consumer makes after a batch before it watches the header
  /// word again (a few microseconds of spinning: a streaming producer publishes well within).
  static constexpr std::uint32_t kTailWatches = 256;

  RingControl* ring_;
  const std::byte* data_;
  std::size_t capacity_;
  std::uint64_t head_;      ///< end of the records taken
  std::uint64_t released_;  ///< the head the producer can see
  bool asymmetric_;         ///< see SpscRingProducer::asymmetric_
  bool corrupt_ = false;
  std::uint64_t flagged_after_ = 0;  ///< heavy_barriers_made() when flag_sleep() ran
  std::uint32_t burst_ = 0;          ///< records taken since try_take() last found none
  std::uint32_t tail_watches_ = 0;   ///< looks at the tail left before has_data() peeks
};

}  // namespace troupe::shm
