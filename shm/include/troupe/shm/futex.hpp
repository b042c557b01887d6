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

}  // namespace troupe::shm
