#pragma once
// Futex wait/wake between threads of one process (FUTEX_PRIVATE: cheaper than the shared kind
// the rings use). Unlike std::atomic::wait, the wait takes a timeout.
#include <atomic>
#include <chrono>
#include <cstdint>

namespace troupe::detail {

void futex_wait_private(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                        std::chrono::nanoseconds timeout) noexcept;
void futex_wake_private(std::atomic<std::uint32_t>& word, int count) noexcept;

}  // namespace troupe::detail
