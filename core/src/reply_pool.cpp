#include "troupe/core/detail/reply_pool.hpp"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <system_error>
#include <thread>

#include "troupe/core/detail/agent_lane.hpp"
#include "troupe/core/detail/result_state.hpp"

namespace troupe::detail {
namespace {

/// How many times a thread with nothing to do yields, looking for work, before it sleeps: a
/// lane handed over soon after is taken without a kernel wake-up (tens of microseconds on this
/// VM). Yields, not pauses: with 2 cores, the thread that hands the lane over and the program's
/// waiting thread already take both, and a pausing thread kept the pool's from running
/// (a lone call handed over took ~40 us; with yields, ~10 us).
constexpr int kIdleSpins = 200;
/// How long a thread beyond the running limit stays idle before it exits.
constexpr auto kIdleExit = std::chrono::seconds(1);

bool& is_pool_thread() noexcept {
  thread_local bool on_pool = false;
  return on_pool;
}

class ReplyPool {
 public:
  static ReplyPool& get() {
    // Never destroyed, like the graph: its threads may run until the process ends.
    static auto* pool = new ReplyPool;
    return *pool;
  }

  void schedule(std::shared_ptr<AgentLane> lane) noexcept {
    std::unique_lock lock(mutex_);
    // Throws only for want of memory, and then ends the process (noexcept): a lane never run
    // would hold its agent's calls for good (as AgentLane::enter() says).
    lanes_.push_back(std::move(lane));
    queued_.store(lanes_.size(), std::memory_order_relaxed);
    start_if_short(lock);
  }

  void retry_if_starved() noexcept {
    if (!starved_.load(std::memory_order_relaxed)) return;
    std::unique_lock lock(mutex_);
    start_if_short(lock);
  }

  // The RescueStarter of pool threads: this thread waits on a result, so it stops counting as
  // running (and a thread starts for queued work if that leaves it without one) until the
  // returned handle goes. Null when queued work is left without a thread (none could start):
  // the waiter then asks again every kRescueRetry, and so tries again to start one.
  static std::shared_ptr<void> rescue() {
    ReplyPool& pool = get();
    {
      std::unique_lock lock(pool.mutex_);
      ++pool.waiting_;
      if (!pool.start_if_short(lock)) {
        --pool.waiting_;
        return nullptr;
      }
    }
    static int token;
    return std::shared_ptr<void>(&token, [](void*) {
      ReplyPool& p = get();
      std::lock_guard lock(p.mutex_);
      --p.waiting_;
    });
  }

  ReplyPoolCounts counts() {
    std::lock_guard lock(mutex_);
    return {threads_, waiting_, limit_, static_cast<int>(lanes_.size()) + threads_ - idle_};
  }

 private:
  ReplyPool() : limit_(std::max(2, static_cast<int>(std::thread::hardware_concurrency()))) {}

  // With mutex_ held. Queued lanes get a thread: an idle one is woken; failing that, one starts
  // while fewer than limit_ run calls. (Idle threads count as taking a lane each: a burst of
  // schedules before they wake starts no thread they would make redundant.) False when queued
  // work is left with no thread that will take it: none idle, none running (a running one
  // takes the next lane when it is done), and none could start. Then starved_ is set, and
  // every later schedule, wait and retry_if_starved() tries again.
  bool start_if_short([[maybe_unused]] const std::unique_lock<std::mutex>& lock) noexcept {
    const auto queued = static_cast<int>(lanes_.size());
    if (idle_ > 0 && queued > 0) cv_.notify_one();
    if (queued <= idle_ || running() >= limit_) {
      starved_.store(false, std::memory_order_relaxed);
      return true;
    }
    try {
      std::thread([this] { work(); }).detach();
      ++threads_;
      starved_.store(false, std::memory_order_relaxed);
      return true;
    } catch (const std::system_error& e) {
      if (running() > 0) return true;  // a running thread will take it
      if (!starved_.exchange(true, std::memory_order_relaxed)) {
        std::fprintf(stderr,
                     "troupe: the reply pool could not start a thread (%s): in-process calls "
                     "wait until one can start\n",
                     e.what());
      }
      return false;
    }
  }

  void work() noexcept {
    is_pool_thread() = true;
    // A call of this thread that waits long on a result lets another thread run.
    thread_rescue_starter() = &ReplyPool::rescue;
    std::unique_lock lock(mutex_);
    for (;;) {
      if (!lanes_.empty()) {
        std::shared_ptr<AgentLane> lane = std::move(lanes_.front());
        lanes_.pop_front();
        queued_.store(lanes_.size(), std::memory_order_relaxed);
        lock.unlock();
        lane->run_handed_over();
        lane.reset();  // outside the lock: the last reference buries the lane's nodes
        lock.lock();
        continue;
      }
      ++idle_;
      lock.unlock();
      for (int i = 0; i < kIdleSpins && queued_.load(std::memory_order_relaxed) == 0; ++i) {
        ::sched_yield();
      }
      lock.lock();
      bool woken = true;
      if (lanes_.empty()) woken = cv_.wait_for(lock, kIdleExit, [&] { return !lanes_.empty(); });
      --idle_;
      if (!woken && threads_ - waiting_ > limit_) {
        --threads_;
        return;
      }
    }
  }

  // Threads running calls, not counting those waiting on a result. With mutex_ held.
  int running() const noexcept { return threads_ - idle_ - waiting_; }

  const int limit_;  // threads that may run calls at once (not counting waiting ones)
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<AgentLane>> lanes_;  // guarded by mutex_
  std::atomic<std::size_t> queued_{0};  // lanes_.size(), stored under mutex_: idle spins read it
  int threads_ = 0;                     // guarded by mutex_: alive
  int idle_ = 0;                        // guarded by mutex_: looking for work or asleep
  int waiting_ = 0;                     // guarded by mutex_: waiting on a result
  std::atomic<bool> starved_{false};    // queued work had no thread: see start_if_short()
};

}  // namespace

void schedule_on_reply_pool(std::shared_ptr<AgentLane> lane) noexcept {
  ReplyPool::get().schedule(std::move(lane));
}

void retry_reply_pool_if_starved() noexcept { ReplyPool::get().retry_if_starved(); }

ReplyPoolCounts reply_pool_counts() noexcept { return ReplyPool::get().counts(); }

bool on_reply_pool_thread() noexcept { return is_pool_thread(); }

}  // namespace troupe::detail
