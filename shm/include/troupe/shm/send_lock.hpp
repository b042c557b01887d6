#pragma once
// The lock of a channel's send end: a mutex whose release is a plain store.
//
// Why: a send writes a frame into the ring, whose lines the peer's core last read, so the
// frame's stores wait in the store buffer for those lines. On x86 a locked instruction (the
// `xchg` of std::mutex's unlock, the next lock, a reference count) waits for the whole store
// buffer to drain, so every send paid a transfer from the peer's core right there. Measured on
// a server answering 1024 calls in flight (TSC stamps on both sides): 60-280 ns between one
// reply's send and the next reply starting, whatever the next call did; with this lock, and
// the worker taking its calls a few at a time (agent_server.cpp), 10-20 ns: the stores drain
// while the next reply is being made.
//
// Protocol — an asymmetric Dekker, as the ring's sleeper handshake (spsc_ring.hpp):
//   lock():   CAS word 0 -> 1 (acquire). Contended: spin a little, then
//             W1 waiters.fetch_add(1)   W2 heavy_barrier()   W3 CAS 0 -> 1 again
//             W4 futex_wait(word, 1)    (and W3 again when woken)
//   unlock(): U1 word.store(0, release)   U1' compiler fence   U2 if waiters.load(relaxed):
//             futex_wake(word)
// heavy_barrier() runs a full fence on every running thread of the process, so either the
// holder's U2 follows it and sees W1, or its U1 is visible to W3: a waiter never sleeps on a
// lock that was released without a wake-up. futex_wait's own comparison with 1 catches a
// release between W3 and W4. Where membarrier is unavailable, U1 and U2 are seq_cst (the
// store an xchg), W2 is not needed, and the lock is an ordinary futex mutex.
//
// Invariants: word is 1 while held, 0 while free; waiters counts the threads between W1 and
// their acquisition. Not recursive; the thread that locked unlocks. unlock() reads waiters
// after the release: the lock must outlive every unlock() in progress (a channel outlives its
// senders).
#include <atomic>
#include <chrono>
#include <cstdint>

#include "troupe/core/detail/cpu_relax.hpp"
#include "troupe/shm/futex.hpp"

namespace troupe::shm {

class SendLock {
 public:
  /// `asymmetric`: take the membarrier protocol above (false: the seq_cst fallback; tests use
  /// it to run both).
  explicit SendLock(bool asymmetric = asymmetric_barrier_available()) noexcept
      : asymmetric_(asymmetric) {}
  SendLock(const SendLock&) = delete;
  SendLock& operator=(const SendLock&) = delete;

  void lock() noexcept {
    if (try_lock()) return;
    lock_contended();
  }

  bool try_lock() noexcept {
    std::uint32_t free = 0;
    // SYNC POINT: acquire pairs with unlock()'s release store: the holder before us is done
    // with the send end.
    return word_.compare_exchange_strong(free, 1, std::memory_order_acquire,
                                         std::memory_order_relaxed);
  }

  void unlock() noexcept {
    bool waiting;
    if (asymmetric_) {
      word_.store(0, std::memory_order_release);            // U1
      std::atomic_signal_fence(std::memory_order_seq_cst);  // U1': keep U2 after U1
      waiting = waiters_.load(std::memory_order_relaxed) != 0;
    } else {
      word_.store(0, std::memory_order_seq_cst);
      waiting = waiters_.load(std::memory_order_seq_cst) != 0;
    }
    if (waiting) futex_wake(word_, 1);  // U2
  }

 private:
  void lock_contended() noexcept {
    // A holder usually lets go within a send (~100 ns): look again for a few microseconds
    // before paying for the barrier and a sleep.
    for (int i = 0; i < kSpins; ++i) {
      cpu_relax();
      if (word_.load(std::memory_order_relaxed) == 0 && try_lock()) return;
    }
    waiters_.fetch_add(1, std::memory_order_seq_cst);  // W1
    if (asymmetric_) heavy_barrier();                  // W2
    while (!try_lock()) {                              // W3
      // W4. Bounded, so that a wake-up lost to a bug (or to a failed membarrier) costs a few
      // milliseconds, not the program; long enough that a waiter behind a holder that waits
      // for ring space does not spin in and out of the kernel.
      futex_wait(word_, 1, std::chrono::milliseconds(5));
    }
    waiters_.fetch_sub(1, std::memory_order_relaxed);
  }

  static constexpr int kSpins = 200;

  std::atomic<std::uint32_t> word_{0};
  std::atomic<std::uint32_t> waiters_{0};
  bool asymmetric_;
};

}  // namespace troupe::shm
