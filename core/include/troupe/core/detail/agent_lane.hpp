#pragma once
// An agent's lane in the dispatcher: admits the agent's calls in program order and runs each
// once its inputs are resolved, one at a time.
//
// A call whose inputs are resolved, on an agent with nothing queued, runs at once on the
// calling thread (for a remote agent: straight to its ring). Any other call takes the TBB flow
// graph: it gets the lane's next sequence number, waits for its inputs (continuations on their
// results), enters the lane's sequencer_node, which releases calls in sequence order to a serial
// function_node that runs them. A call whose input failed still takes its sequence number and
// fails there, with its input's error. The graph nodes are made on the lane's first such call:
// an agent that never waits costs no node.
//
// The function_node runs a call on its TBB thread, except an in-process call that a rescuer
// (a thread that joins the graph while a reply() waits on a TBB thread) would run: that goes to
// the reply pool (reply_pool.hpp), and the lane's later calls follow it there while any are
// left, so that a lane's calls still run one at a time, in order.
//
// Invariant: queued_ counts calls admitted to the graph and not yet run. A call runs directly
// only with queued_ == 0, under admit_mutex_, so it cannot overtake a queued one.
#include <oneapi/tbb/flow_graph.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "troupe/core/detail/result_state.hpp"
#include "troupe/core/msg.hpp"

namespace troupe::detail {

class AgentLane;

/// A call in its lane. The body is a virtual, so that a kind of call and what its body needs
/// come in one allocation (RemoteAgent's calls, on the path of every call that waits).
struct LaneCall : std::enable_shared_from_this<LaneCall> {
  LaneCall() = default;
  LaneCall(const LaneCall&) = delete;
  LaneCall& operator=(const LaneCall&) = delete;
  virtual ~LaneCall() = default;
  /// Runs the call with its (resolved, successful) inputs; must settle `result` eventually.
  virtual void run() = 0;

  std::vector<Msg> inputs;
  ResultPtr result;
  std::shared_ptr<AgentLane> lane;  ///< set by admit() for a call that waits
  std::uint64_t seq = 0;
  std::atomic<int> unresolved{0};
  std::atomic<bool> started{false};  ///< it began to run (AgentLane::close() spares it)
  std::atomic<bool> queued{false};   ///< handed to the sequencer (exactly once)
  /// Runs user code (an in-process agent's reply() or observe()), which may wait on results:
  /// a rescuer hands it to the reply pool (reply_pool.hpp) instead of running it. (Any call of
  /// a lane whose earlier calls were handed over follows them there.) Set before admit().
  bool runs_user_code = false;
};
using LaneCallPtr = std::shared_ptr<LaneCall>;

/// A LaneCall whose body is any callable (in-process agents, a release in program order).
struct FunctionLaneCall final : LaneCall {
  explicit FunctionLaneCall(std::function<void(LaneCall&)> f) : body(std::move(f)) {}
  void run() override { body(*this); }
  std::function<void(LaneCall&)> body;
};

/// The graph every lane's nodes live in.
tbb::flow::graph& dispatcher_graph();
/// Rescuers started and not yet gone (for tests: a rescuer leaves after the task it runs).
int rescuers_running() noexcept;

class AgentLane : public std::enable_shared_from_this<AgentLane> {
 public:
  AgentLane() = default;
  AgentLane(const AgentLane&) = delete;
  AgentLane& operator=(const AgentLane&) = delete;
  /// The nodes outlive the lane by a grace period (see bury_nodes in agent_lane.cpp): the last
  /// reference to a lane can go while a TBB task still finishes its runner's bookkeeping.
  ~AgentLane();

  /// Starts the graph's arena and its worker threads, records the calling thread with TBB
  /// (for the main thread TBB reads /proc/self/maps) and makes and buries a throwaway lane's
  /// nodes (the graph's first cost more): what would otherwise hold the first call that must
  /// wait. troupe::init calls it on its own thread. It starts threads: only once the fork
  /// server exists (DESIGN.md section 4). May throw what TBB throws.
  static void warm_up();

  /// Admits a call after every call admitted before it (by this thread). Never blocks on a
  /// pending input.
  void admit(LaneCallPtr call);
  /// The direct path without a LaneCall: when every input is resolved and nothing is queued,
  /// runs `run()` now, in lane order (or fails `result` with a failed input's error), and
  /// returns true. Otherwise returns false: admit() the call instead.
  template <class Run>
  bool run_if_direct(std::span<const Msg> inputs, const ResultPtr& result, Run&& run) {
    std::lock_guard lock(admit_mutex_);
    for (const Msg& input : inputs) {
      if (!input.ready()) return false;
    }
    if (queued_.load(std::memory_order_acquire) != 0) return false;
    if (!fail_on_failed_input(inputs, *result)) run();
    return true;
  }
  /// Calls admitted to the graph and not yet run.
  int queued() const noexcept { return queued_.load(std::memory_order_acquire); }
  /// The lane's owner is going: every call admitted to the graph that has not started fails
  /// now with troupe::Error(`why`), without waiting for its inputs, and never runs; then this
  /// waits for a call that started to finish. After it, no call touches the owner.
  void close(std::string why);
  /// The agent's server is gone: every admitted call that has not started fails now with
  /// `error` (its inputs may never resolve), and so does every call admitted later, at once.
  /// A call already running is not waited for: it fails on its own, on the dead link.
  void fail_unstarted(std::exception_ptr error);
  /// The reply pool's: runs the calls the graph handed over, in order, one at a time.
  void run_handed_over() noexcept;
  /// After close(): the text calls that have not run fail with; else nullptr. A graph call
  /// asks it after it is counted as executing (the Dekker pair with close()).
  const std::string* closed() const noexcept {
    // SYNC POINT: seq_cst pairs with close(): either this sees the flag, or close() sees the
    // executing count and waits for this call. Also publishes closed_why_.
    return closing_.load(std::memory_order_seq_cst) ? &closed_why_ : nullptr;
  }

 private:
  static void execute(LaneCall& call);
  /// Runs a call that left the graph (on a TBB worker, or on the reply pool), counted as
  /// executing for close(), and then as no longer queued.
  void run_call(LaneCall& call) noexcept;
  /// The runner's: queues a call on the reply pool, behind the lane's earlier ones there.
  void hand_over(LaneCall& call) noexcept;
  /// Whether calls handed over to the pool are queued or running (a later call follows them).
  bool handed_over_pending() const noexcept;
  /// Into the sequencer exactly once: when the last input settles, or when the call's own
  /// result settles first (a timeout), so that the agent's later calls proceed.
  void enter(const LaneCallPtr& call) noexcept;
  /// An input of `call` (a LaneCall) settled: the last one enters it.
  static void release_input(const std::shared_ptr<void>& call);
  /// Fails `result` with the first failed input's error ("the same way"); true if it did.
  static bool fail_on_failed_input(std::span<const Msg> inputs, ResultState& result);
  void make_nodes();
  static void fail_if_unstarted(const std::vector<std::weak_ptr<LaneCall>>& calls,
                                const std::exception_ptr& error);

  std::mutex admit_mutex_;
  std::uint64_t next_seq_ = 0;  // guarded by admit_mutex_
  std::atomic<int> queued_{0};
  std::atomic<bool> closing_{false};
  std::string closed_why_;  // written once, before closing_ is set
  // Graph calls inside execute() right now; the futex word close() sleeps on.
  std::atomic<std::uint32_t> executing_{0};
  std::atomic<std::thread::id> executing_thread_{};  // the thread that executes, meanwhile
  // Graph calls admitted and not yet run, for close(). Its own mutex, not admit_mutex_: an
  // agent destroyed inside its own direct call (which holds admit_mutex_) must not deadlock.
  // Lock order: admit_mutex_, then admitted_mutex_. Expired entries are swept when the list
  // doubles.
  std::mutex admitted_mutex_;
  std::vector<std::weak_ptr<LaneCall>> admitted_;  // guarded by admitted_mutex_
  std::exception_ptr refusal_;  // guarded by admitted_mutex_: set by fail_unstarted()
  std::size_t sweep_at_ = 64;   // guarded by admitted_mutex_
  // Calls the runner handed over to the reply pool, in order; scheduled_: the lane is on the
  // pool's queue or one of its threads runs these (so at most one does). Written under
  // handed_over_mutex_; the runner reads it without (handed_over_pending()).
  std::mutex handed_over_mutex_;
  std::deque<LaneCallPtr> handed_over_;  // guarded by handed_over_mutex_
  std::atomic<bool> scheduled_{false};
  std::unique_ptr<tbb::flow::sequencer_node<LaneCallPtr>> sequencer_;
  std::unique_ptr<tbb::flow::function_node<LaneCallPtr>> runner_;
};

}  // namespace troupe::detail
