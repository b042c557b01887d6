#pragma once
// The shared state behind a placeholder Msg: pending, then resolved with a value or failed with
// an exception, exactly once. Continuations registered on it run when it settles (on the
// thread that settles it). A thread that reads a pending result does not sleep on the state
// first: it asks the state's driver to make progress (poll the reply channel itself), which on
// this VM is two orders of magnitude cheaper than being woken by another thread.
//
// Invariant: status goes kPending -> kValue or kPending -> kFailed once; value/error are written
// before that store and never after.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "troupe/core/channel.hpp"
#include "troupe/core/detail/recycling_allocator.hpp"
#include "troupe/core/msg.hpp"
#include "troupe/core/wake_word.hpp"

namespace troupe::detail {

class ResultState;

/// Who can make a pending result progress while a thread waits for it (the runtime).
class ProgressDriver {
 public:
  virtual ~ProgressDriver() = default;
  /// Makes progress on `state` (polls replies, runs due timeouts) until it settles or `until`.
  virtual void drive(ResultState& state, Deadline until) = 0;
  /// Fails `state` with troupe::Timeout once its deadline passes, even if nobody waits for it
  /// (a call deferred on a pending input holds its agent's later calls until it settles).
  virtual void watch_deadline(std::weak_ptr<ResultState> state) = 0;
};

/// An in-process agent's deferred reply() runs on one of TBB's threads or on the reply pool,
/// and the call that would settle a result it reads may need a thread too. While such a body
/// runs, its thread's RescueStarter is set: a wait that lasts starts a rescuer (on a TBB thread,
/// a thread that runs the graph's tasks meanwhile; on the pool, another pool thread) and lets
/// it go by dropping the returned handle (null if none could start). The waiting thread itself
/// keeps waiting as any other does (driving its result, honouring deadlines): it never waits
/// for the rescuer (agent_lane.cpp, reply_pool.hpp).
using RescueStarter = std::shared_ptr<void> (*)();
RescueStarter& thread_rescue_starter() noexcept;
/// How long a waiting body waits by itself before it starts a rescuer, and how often it asks
/// again while none is free.
inline constexpr std::chrono::microseconds kWaitBeforeRescue{300};
inline constexpr std::chrono::milliseconds kRescueRetry{2};

class ResultState {
 public:
  enum Status : std::uint32_t { kPending = 0, kValue = 1, kFailed = 2 };

  ResultState() = default;
  explicit ResultState(ProgressDriver* driver) : driver_(driver) {}
  ResultState(const ResultState&) = delete;
  ResultState& operator=(const ResultState&) = delete;

  /// Settles with a value; returns false (and does nothing) if already settled.
  bool resolve(Msg value);
  /// Settles with a failure; returns false if already settled.
  bool fail(std::exception_ptr error);

  Status status() const noexcept {
    // SYNC POINT: acquire pairs with the release store in settle(): value/error are visible.
    return static_cast<Status>(status_.load(std::memory_order_acquire));
  }
  bool settled() const noexcept { return status() != kPending; }
  /// Settled, or failed just now with troupe::Timeout because its deadline has passed. Whoever
  /// looks checks the deadline: a call still waiting for an input is on no link, where the
  /// runtime's sweep of sent calls would find it.
  bool settled_or_expired() noexcept {
    return settled() || (deadline != Deadline::max() && expire_if_due());
  }

  /// Blocks until settled or `deadline`; returns settled().
  bool wait_until(Deadline until);
  /// The value; waits, and throws the failure if it failed.
  const Msg& value();
  /// The failure, or nullptr; waits.
  std::exception_ptr error();

  /// Runs `f` when the state settles: now (on this thread) if it already has, else on the
  /// thread that settles it. `f` must not block.
  void on_settled(std::function<void()> f);
  /// The same for the hot path of calls that wait: runs `fn(context)`, holding `context`
  /// until then, with no allocation of its own (a std::function holding a shared_ptr makes
  /// one). `fn` must not block.
  using ContextFn = void (*)(const std::shared_ptr<void>& context);
  void on_settled(ContextFn fn, std::shared_ptr<void> context);

  /// Sleeps at most `timeout` unless the state settles first (a driver's nap).
  void nap(std::chrono::nanoseconds timeout);
  /// A nap's first half, for a wait on several words (wait_on_any): counts this thread as a
  /// sleeper, so that settling wakes the returned word, and returns it; or returns false
  /// (counting nothing) if the state has settled. end_nap() after the wait.
  bool arm_nap(WakeWord& word) noexcept;
  void end_nap() noexcept { sleepers_.fetch_sub(1, std::memory_order_relaxed); }

  /// Hands waiting to a driver (the runtime's reply pump); set before the state is shared.
  void set_driver(ProgressDriver* driver) noexcept { driver_ = driver; }
  ProgressDriver* driver() const noexcept { return driver_; }
  /// A deadline after which the runtime fails the result with troupe::Timeout.
  Deadline deadline = Deadline::max();

 private:
  template <class Set>
  bool settle(std::uint32_t status, Set&& set);
  bool expire_if_due() noexcept;    // the slow half of settled_or_expired()
  bool wait_alone(Deadline until);  // wait_until without a rescuer

  std::atomic<std::uint32_t> status_{kPending};
  std::atomic<std::uint32_t> sleepers_{0};
  Msg value_;
  std::exception_ptr error_;
  // Either a function and its context, or any callable.
  struct Continuation {
    ContextFn fn = nullptr;
    std::shared_ptr<void> context;
    std::function<void()> callable;
    void operator()() const {
      if (fn != nullptr) {
        fn(context);
      } else {
        callable();
      }
    }
  };
  // Keeps `continuation` until the state settles, or runs it now if it has.
  void add_or_run(Continuation continuation);
  std::mutex continuations_mutex_;
  std::vector<Continuation> continuations_;  // guarded; emptied once settled
  ProgressDriver* driver_ = nullptr;
};

using ResultPtr = std::shared_ptr<ResultState>;

/// A new state whose block (with its control block) comes from this thread's recycling cache:
/// a program with many calls in flight makes and drops states in bursts (see
/// recycling_allocator.hpp).
template <class... Args>
ResultPtr make_result_state(Args&&... args) {
  return std::allocate_shared<ResultState>(RecyclingAllocator<ResultState>{},
                                           std::forward<Args>(args)...);
}

}  // namespace troupe::detail
