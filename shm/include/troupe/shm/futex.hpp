#pragma once
// The raw futex system call on a word in shared memory. Shared (not FUTEX_PRIVATE), because the
// waker is another process; libstdc++ 12's std::atomic::wait is process-private and loses such
// wake-ups. Always with a timeout, so a waiter notices a dead peer.
#include <atomic>
#include <chrono>
#include <cstdint>

namespace troupe::shm {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));

/// Sleeps while `*word == expected`, at most `timeout`. Returns false on timeout, true when
/// woken or when the word already differed (spurious wake-ups return true: re-check).
bool futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                std::chrono::nanoseconds timeout) noexcept;

/// Wakes up to `count` waiters on `word`; returns how many were woken.
int futex_wake(std::atomic<std::uint32_t>& word, int count = 1) noexcept;

// The asymmetric barrier of the sleeper handshakes (spsc_ring.hpp, send_lock.hpp): the side
// that is about to sleep pays for a barrier so that the hot side's release needs no locked
// instruction.
/// Registers this process for membarrier(GLOBAL_EXPEDITED) once; true when it may take the
/// asymmetric fast path.
bool asymmetric_barrier_available() noexcept;
/// The sleeper's side of a handshake: a full fence on every running registered thread.
void heavy_barrier() noexcept;
/// How many heavy_barrier_since() calls of this thread made a barrier.
std::uint64_t heavy_barriers_made() noexcept;
/// A heavy barrier, unless this thread made one (through this function) since
/// heavy_barriers_made() returned `made`: a sleeper that flagged several rings before it
/// needs one barrier for them all.
void heavy_barrier_since(std::uint64_t made) noexcept;

}  // namespace troupe::shm
