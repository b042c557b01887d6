#include "troupe/shm/futex.hpp"

#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

#include "troupe/shm/spsc_ring.hpp"

namespace troupe::shm {

bool futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                std::chrono::nanoseconds timeout) noexcept {
  if (timeout.count() <= 0) return false;
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
  // FUTEX_WAIT (shared): the kernel re-checks *word == expected atomically with queueing us, so
  // a wake between the caller's last check and this call is not lost.
  long rc = ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT, expected, &ts,
                      nullptr, 0);
  return rc == 0 || errno != ETIMEDOUT;
}

int futex_wake(std::atomic<std::uint32_t>& word, int count) noexcept {
  long rc = ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE, count,
                      nullptr, nullptr, 0);
  return rc < 0 ? 0 : static_cast<int>(rc);
}

}  // namespace troupe::shm

namespace troupe::shm {

bool asymmetric_barrier_available() noexcept {
  // Once per process; a forked child inherits the registration (and this value) from its parent.
  static const bool registered =
      ::syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0;
  return registered;
}

namespace {
thread_local std::uint64_t t_barriers_made = 0;
}  // namespace

std::uint64_t heavy_barriers_made() noexcept { return t_barriers_made; }

void heavy_barrier_since(std::uint64_t made) noexcept {
  if (t_barriers_made != made) return;  // one made after the caller's flags already
  heavy_barrier();
  ++t_barriers_made;
}

void heavy_barrier() noexcept {
  // Harmless without registration: then no producer relies on it (they use seq_cst).
  ::syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0);
}

}  // namespace troupe::shm
