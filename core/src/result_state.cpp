#include "troupe/core/detail/result_state.hpp"

#include <sched.h>

#include <algorithm>

#include "troupe/core/detail/private_futex.hpp"
#include "troupe/core/error.hpp"

namespace troupe::detail {

template <class Set>
bool ResultState::settle(std::uint32_t status, Set&& set) {
  std::vector<Continuation> ready;
  {
    std::lock_guard lock(continuations_mutex_);
    if (status_.load(std::memory_order_relaxed) != kPending) return false;
    set();
    // SYNC POINT: publishes value_/error_; pairs with the acquire load in status().
    // seq_cst: orders it before the load of sleepers_ (a waiter increments sleepers_, then
    // re-checks status_ before it sleeps: one of the two sees the other).
    status_.store(status, std::memory_order_seq_cst);
    ready.swap(continuations_);
  }
  if (sleepers_.load(std::memory_order_seq_cst) != 0) futex_wake_private(status_, 1 << 30);
  // Each continuation runs whatever another throws: a dependant left out would hang.
  for (const auto& f : ready) {
    try {
      f();
    } catch (...) {
    }
  }
  return true;
}

bool ResultState::resolve(Msg value) {
  return settle(kValue, [&] { value_ = std::move(value); });
}

bool ResultState::fail(std::exception_ptr error) {
  return settle(kFailed, [&] { error_ = std::move(error); });
}

bool ResultState::expire_if_due() noexcept {
  if (Clock::now() < deadline) return false;
  try {
    fail(std::make_exception_ptr(Timeout("call timed out before it could complete")));
  } catch (...) {  // no memory for the error: it stays pending, and the next look tries again
  }
  return settled();
}

void ResultState::on_settled(std::function<void()> f) {
  add_or_run({.fn = nullptr, .context = nullptr, .callable = std::move(f)});
}

void ResultState::on_settled(ContextFn fn, std::shared_ptr<void> context) {
  add_or_run({.fn = fn, .context = std::move(context), .callable = nullptr});
}

void ResultState::add_or_run(Continuation continuation) {
  {
    std::lock_guard lock(continuations_mutex_);
    if (status_.load(std::memory_order_relaxed) == kPending) {
      continuations_.push_back(std::move(continuation));
      return;
    }
  }
  continuation();
}

RescueStarter& thread_rescue_starter() noexcept {
  thread_local RescueStarter starter = nullptr;
  return starter;
}

bool ResultState::wait_until(Deadline until) {
  if (settled()) return true;
  const RescueStarter start_rescuer = thread_rescue_starter();
  if (start_rescuer == nullptr) return wait_alone(until);
  // A lane body: wait briefly by itself first (a remote reply mostly comes within this), then
  // with a rescuer running the graph meanwhile. None free (all busy): look again every slice.
  std::shared_ptr<void> rescuer;  // released when this wait ends, however it ends
  Deadline next = std::min(until, deadline_after(kWaitBeforeRescue));
  for (;;) {
    if (wait_alone(next)) return true;
    if (Clock::now() >= until) return false;
    if (!rescuer) rescuer = start_rescuer();
    next = rescuer ? until : std::min(until, deadline_after(kRescueRetry));
  }
}

bool ResultState::wait_alone(Deadline until) {
  if (driver_ != nullptr) {
    driver_->drive(*this, until);
    if (settled()) return true;
    if (Clock::now() >= until) return false;
  }
  // No driver (or it gave up early): spin briefly, then sleep on the status word, waking for
  // the result's own deadline too (settled_or_expired() fails it then).
  for (int i = 0; i < 64; ++i) {
    if (settled_or_expired()) return true;
    ::sched_yield();
  }
  while (!settled_or_expired()) {
    const auto now = Clock::now();
    if (now >= until) return false;
    const Deadline wake = std::min(until, deadline);
    nap(std::clamp<std::chrono::nanoseconds>(wake - now, std::chrono::nanoseconds(0),
                                             std::chrono::milliseconds(50)));
  }
  return true;
}

void ResultState::nap(std::chrono::nanoseconds timeout) {
  WakeWord word;
  if (!arm_nap(word)) return;
  futex_wait_private(status_, kPending, timeout);
  end_nap();
}

bool ResultState::arm_nap(WakeWord& word) noexcept {
  // SYNC POINT: seq_cst, the Dekker pair with settle(): it stores status_ then loads
  // sleepers_; this increments sleepers_ then loads status_. One of the two sees the other.
  sleepers_.fetch_add(1, std::memory_order_seq_cst);
  if (status_.load(std::memory_order_seq_cst) != kPending) {
    end_nap();
    return false;
  }
  word = {&status_, kPending, /*process_private=*/true};
  return true;
}

const Msg& ResultState::value() {
  wait_until(Deadline::max());
  if (status() == kFailed) std::rethrow_exception(error_);
  return value_;
}

std::exception_ptr ResultState::error() {
  wait_until(Deadline::max());
  return status() == kFailed ? error_ : nullptr;
}

}  // namespace troupe::detail
