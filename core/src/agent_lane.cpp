#include "troupe/core/detail/agent_lane.hpp"

#include <oneapi/tbb/info.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <algorithm>
#include <boost/container/small_vector.hpp>
#include <chrono>
#include <deque>
#include <utility>

#include "troupe/core/detail/private_futex.hpp"
#include "troupe/core/detail/reply_pool.hpp"
#include "troupe/core/error.hpp"

namespace troupe::detail {

namespace {

// How many rescuers may run at once (start_rescuer): one per lane body that waits on a TBB
// worker. Past it a body waits without one (another's rescuer keeps the graph going: rescuers
// never wait on a result themselves, see is_rescuer()). Each holds a slot of the dispatcher's arena
// reserved for external threads (TBB's workers are limited to the cores); not more slots: each
// one more reserved slot made calls through the graph slower (BM_CallsThatWait/1: about 25%
// with 64 of them, within noise with 4).
constexpr int kRescuers = 4;
std::atomic<int> g_rescuers{0};

// The arena the dispatcher's graph runs in: TBB's usual workers, plus the main thread's slot
// and one for each rescuer.
tbb::task_arena& dispatcher_arena() {
  // Never destroyed, like the graph.
  static auto* arena = [] {
    const int workers = tbb::info::default_concurrency() - 1;
    auto* a = new tbb::task_arena(workers + 1 + kRescuers, 1 + kRescuers);
    a->initialize();
    return a;
  }();
  return *arena;
}

// Whether this thread is a rescuer. A rescuer hands the in-process calls it would run to the
// reply pool, so that it never waits on a result itself: one rescuer keeps the graph going
// however deep the waits of the replies it hands over nest.
bool& is_rescuer() noexcept {
  thread_local bool rescuer = false;
  return rescuer;
}

// A rescuer joins the arena and runs its tasks until `wake` runs: its `group` waits for that
// task, spawned when the body's wait ends. The body's own thread cannot do this work: a thread
// waiting inside a task takes no enqueued task, and work put into the graph from outside the
// arena (an input resolved by the thread that reads replies) arrives as one. The group has a
// context of its own: cancelling the body's graph must not reach it.
struct Rescuer {
  tbb::task_group_context context{tbb::task_group_context::isolated};
  tbb::task_group group{context};
  tbb::task_handle wake;
};

// The RescueStarter of lane bodies. The rescuer runs detached: the body never waits for it
// (a task it runs may need what the body holds), and it leaves after the task it is running
// once the handle goes. It counts against kRescuers until its thread leaves the arena.
std::shared_ptr<void> start_rescuer() {
  if (g_rescuers.fetch_add(1, std::memory_order_relaxed) >= kRescuers) {
    g_rescuers.fetch_sub(1, std::memory_order_relaxed);
    return nullptr;
  }
  std::shared_ptr<Rescuer> rescuer;
  std::shared_ptr<void> handle;
  try {
    rescuer = std::make_shared<Rescuer>();
    rescuer->wake = rescuer->group.defer([] {});
    // Made before the thread starts: nothing after it can throw. Its deleter, run on this
    // thread (in the arena: a lane body's), spawns the prepared task, allocating nothing.
    handle = std::shared_ptr<void>(
        rescuer.get(), [rescuer](void*) noexcept { rescuer->group.run(std::move(rescuer->wake)); });
    std::thread([rescuer] {
      is_rescuer() = true;
      dispatcher_arena().execute([&] { rescuer->group.wait(); });
      g_rescuers.fetch_sub(1, std::memory_order_relaxed);
    }).detach();
  } catch (...) {
    // No thread (or no memory) for one: the body waits without (and asks again later).
    g_rescuers.fetch_sub(1, std::memory_order_relaxed);
    return nullptr;  // `handle`, if made, spawns `wake` for a group nobody waits on: harmless
  }
  return handle;
}

}  // namespace

int rescuers_running() noexcept { return g_rescuers.load(std::memory_order_relaxed); }

tbb::flow::graph& dispatcher_graph() {
  // Never destroyed: lanes (owned by user handles) may outlive static destruction order. Made
  // inside the arena, it runs its tasks there.
  static auto* graph = [] {
    tbb::flow::graph* g = nullptr;
    dispatcher_arena().execute([&] { g = new tbb::flow::graph; });
    return g;
  }();
  return *graph;
}

bool AgentLane::fail_on_failed_input(std::span<const Msg> inputs, ResultState& result) {
  for (const Msg& input : inputs) {
    if (std::exception_ptr error = input.error()) {  // resolved by now: does not block
      result.fail(error);
      return true;
    }
  }
  return false;
}

void AgentLane::execute(LaneCall& call) {
  // A call whose result settled before it could run (it timed out waiting for an input, or
  // its lane closed) is abandoned: it neither runs nor is sent.
  if (call.result->settled()) return;
  if (!fail_on_failed_input(call.inputs, *call.result)) call.run();
}

namespace {

// Nodes of dead lanes, kept for a grace period. After the runner's body returns, TBB's task
// still touches the node (its concurrency count, the next buffered message), and the lane's
// owner may be freed as soon as the body has run, even by that very task (a LaneCall holding
// the last reference to its agent). Nothing tells when TBB is done with a node short of
// graph::wait_for_all(), which may wait on every other lane; so a dead lane's nodes are
// destroyed a second later, by the next lane to die after that.
constexpr auto kNodeGrace = std::chrono::seconds(1);

struct DeadNodes {
  std::chrono::steady_clock::time_point died;
  std::unique_ptr<tbb::flow::sequencer_node<LaneCallPtr>> sequencer;
  std::unique_ptr<tbb::flow::function_node<LaneCallPtr>> runner;
};

void bury_nodes(DeadNodes dead) {
  static auto* mutex = new std::mutex;  // never destroyed, like the graph
  static auto* graveyard = new std::deque<DeadNodes>;
  std::deque<DeadNodes> expired;
  {
    std::lock_guard lock(*mutex);
    while (!graveyard->empty() && dead.died - graveyard->front().died > kNodeGrace) {
      expired.push_back(std::move(graveyard->front()));
      graveyard->pop_front();
    }
    graveyard->push_back(std::move(dead));
  }
  // `expired` is destroyed here, outside the lock: runner before sequencer (edge order).
  for (auto& nodes : expired) nodes.runner.reset();
}

}  // namespace

AgentLane::~AgentLane() {
  if (sequencer_) {
    bury_nodes({std::chrono::steady_clock::now(), std::move(sequencer_), std::move(runner_)});
  }
}

void AgentLane::make_nodes() {
  sequencer_ = std::make_unique<tbb::flow::sequencer_node<LaneCallPtr>>(
      dispatcher_graph(), [](const LaneCallPtr& call) { return call->seq; });
  // The runner holds the lane weakly: a lane is destroyed only once its calls have run.
  runner_ = std::make_unique<tbb::flow::function_node<LaneCallPtr>>(
      dispatcher_graph(), tbb::flow::serial, [this](const LaneCallPtr& message) {
        // The call, not a copy of the message: TBB's task holds the message, copied there by
        // whichever thread made the task, and TSan, which does not see libtbb hand the task
        // over, reports reads of it as races (tests/tsan.supp quiets the read here); a copy
        // reads more of it. hand_over() takes its own reference from the call.
        LaneCall& call = *message;
        // A call runs here, on a TBB thread, unless it is an in-process one that a rescuer
        // took (it goes to the reply pool: see is_rescuer()), or the lane's earlier calls went
        // there (it follows them, in order).
        if (handed_over_pending() || (call.runs_user_code && is_rescuer())) {
          hand_over(call);
          return tbb::flow::continue_msg();
        }
        // A reply() that waits long for a result gets a rescuer to run the graph meanwhile.
        const RescueStarter outer = std::exchange(thread_rescue_starter(), &start_rescuer);
        run_call(call);
        thread_rescue_starter() = outer;
        return tbb::flow::continue_msg();
      });
  tbb::flow::make_edge(*sequencer_, *runner_);
}

void AgentLane::run_call(LaneCall& call) noexcept {
  // SYNC POINT: seq_cst, the Dekker pairs with close() (see closed()): either close() sees
  // this call started and executing and waits for it, or this call sees the lane closed and
  // runs nothing.
  executing_.fetch_add(1, std::memory_order_seq_cst);
  executing_thread_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  call.started.store(true, std::memory_order_seq_cst);
  // An exception escaping a runner's body would cancel the whole graph: it fails this call.
  try {
    execute(call);
  } catch (...) {
    call.result->fail(std::current_exception());
  }
  executing_thread_.store(std::thread::id{}, std::memory_order_relaxed);
  // SYNC POINT: seq_cst, the Dekker pair with close()'s wait: it stores closing_, then reads
  // the count and sleeps on it unless it is 0; this lowers the count, then reads closing_.
  // Either close() sees the count drop, or this sees it closing and wakes it (a system call
  // only for the calls that end while their owner is being destroyed).
  executing_.fetch_sub(1, std::memory_order_seq_cst);
  if (closing_.load(std::memory_order_seq_cst)) futex_wake_private(executing_, 1 << 30);
  // SYNC POINT: release pairs with the acquire load in admit(): a direct call that sees the
  // count drop runs after this one.
  queued_.fetch_sub(1, std::memory_order_acq_rel);
}

void AgentLane::hand_over(LaneCall& call) noexcept {
  bool schedule;
  {
    std::lock_guard lock(handed_over_mutex_);
    // For want of memory this ends the process (noexcept): a call lost here would hold every
    // later call of the lane for good, as in enter().
    handed_over_.push_back(call.shared_from_this());
    schedule = !scheduled_.exchange(true, std::memory_order_relaxed);
  }
  // The call holds its lane (admit() set call.lane): the pool keeps it until it has run.
  if (schedule) {
    schedule_on_reply_pool(call.lane);
  } else {
    retry_reply_pool_if_starved();  // the lane is queued: is there a thread for it?
  }
}

bool AgentLane::handed_over_pending() const noexcept {
  // SYNC POINT: acquire pairs with run_handed_over()'s release store, made after the last
  // handed-over call has run: a call that sees false runs after those.
  return scheduled_.load(std::memory_order_acquire);
}

void AgentLane::run_handed_over() noexcept {
  // A turn of a few calls, then the lane goes to the back of the pool's queue: lanes that
  // keep being handed calls share the pool's threads.
  constexpr int kTurn = 16;
  for (int turn = 0; turn < kTurn; ++turn) {
    LaneCallPtr call;
    {
      std::lock_guard lock(handed_over_mutex_);
      if (handed_over_.empty()) {
        scheduled_.store(false, std::memory_order_release);
        return;
      }
      call = std::move(handed_over_.front());
      handed_over_.pop_front();
    }
    run_call(*call);
  }
  schedule_on_reply_pool(shared_from_this());  // still scheduled_
}

void AgentLane::warm_up() {
  // A task through the arena, from this thread: TBB creates its worker threads on the first
  // demand for them, and a thread's first use of TBB records it (reading /proc/self/maps for
  // the main thread's stack).
  dispatcher_arena().execute([] {
    tbb::task_group group;
    group.run([] {});
    group.wait();
  });
  // And a lane's nodes, made and buried like any lane's: the graph's first nodes cost more.
  AgentLane lane;
  lane.make_nodes();
}

void AgentLane::admit(LaneCallPtr call) {
  std::unique_lock lock(admit_mutex_);
  bool inputs_ready = true;
  for (const Msg& input : call->inputs) inputs_ready = inputs_ready && input.ready();
  if (inputs_ready && queued_.load(std::memory_order_acquire) == 0) {
    execute(*call);  // the direct path: no graph node, no task, no wake-up
    return;
  }
  std::exception_ptr refusal;
  {
    std::lock_guard admitted_lock(admitted_mutex_);
    refusal = refusal_;
    if (!refusal) {
      if (admitted_.size() >= sweep_at_) {
        std::erase_if(admitted_, [](const std::weak_ptr<LaneCall>& c) { return c.expired(); });
        sweep_at_ = std::max<std::size_t>(64, 2 * admitted_.size());
      }
      admitted_.push_back(call);
    }
  }
  if (refusal) {
    // The agent's server is gone: fail at once rather than wait for inputs, and take no
    // sequence number (no later call waits for this one). Settled outside the locks.
    lock.unlock();
    call->result->fail(refusal);
    return;
  }
  if (!sequencer_) make_nodes();
  // Nothing below throws until the lock is released: a call that took a sequence number must
  // reach the sequencer, or every later call of the lane would wait for it.
  call->seq = next_seq_++;
  queued_.fetch_add(1, std::memory_order_relaxed);
  lock.unlock();

  try {
    // One count per pending input, plus one held while continuations are registered.
    // Inputs found pending here are counted and registered even if they resolve in between
    // (on_settled then runs the continuation at once).
    boost::container::small_vector<const Msg*, 4> waiting_on;
    for (const Msg& input : call->inputs) {
      if (!input.ready()) waiting_on.push_back(&input);
    }
    call->lane = shared_from_this();
    call->unresolved.store(static_cast<int>(waiting_on.size()) + 1, std::memory_order_relaxed);
    for (const Msg* input : waiting_on) input->state()->on_settled(&release_input, call);
    if (!waiting_on.empty() && call->result->deadline != Deadline::max()) {
      // Weakly: the result's continuations must not keep the call (which holds the result).
      call->result->on_settled([weak = std::weak_ptr<LaneCall>(call)] {
        if (auto c = weak.lock()) c->lane->enter(c);
      });
      if (ProgressDriver* driver = call->result->driver()) driver->watch_deadline(call->result);
    }
    release_input(call);
  } catch (...) {
    // Out of memory, most likely: the call fails (so it never runs) and still takes its turn.
    call->result->fail(std::current_exception());
    enter(call);
  }
}

void AgentLane::enter(const LaneCallPtr& call) noexcept {
  // noexcept: a call that took its sequence number and failed to enter would hold every later
  // call of the lane for good (try_put fails only for want of memory): better a loud end.
  if (!call->queued.exchange(true, std::memory_order_acq_rel)) sequencer_->try_put(call);
}

void AgentLane::release_input(const std::shared_ptr<void>& context) {
  auto* call = static_cast<LaneCall*>(context.get());
  if (call->unresolved.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    call->lane->enter(std::static_pointer_cast<LaneCall>(context));
  }
}

void AgentLane::fail_unstarted(std::exception_ptr error) {
  std::vector<std::weak_ptr<LaneCall>> admitted;
  {
    std::lock_guard lock(admitted_mutex_);
    if (!refusal_) refusal_ = error;
    admitted.swap(admitted_);
  }
  fail_if_unstarted(admitted, error);
}

void AgentLane::fail_if_unstarted(const std::vector<std::weak_ptr<LaneCall>>& calls,
                                  const std::exception_ptr& error) {
  // A call that has not started fails now; when its inputs resolve later it reaches the
  // runner with its result settled, and execute() abandons it. One that started finishes.
  for (const auto& weak : calls) {
    LaneCallPtr call = weak.lock();
    if (call && !call->started.load(std::memory_order_seq_cst)) call->result->fail(error);
  }
}

void AgentLane::close(std::string why) {
  std::vector<std::weak_ptr<LaneCall>> admitted;
  {
    std::lock_guard lock(admitted_mutex_);
    if (closing_.load(std::memory_order_relaxed)) return;
    closed_why_ = std::move(why);
    closing_.store(true, std::memory_order_seq_cst);
    admitted.swap(admitted_);
  }
  fail_if_unstarted(admitted, std::make_exception_ptr(Error(closed_why_)));
  // Not when the owner is destroyed by its own call, on the runner's thread: that call would
  // wait for itself.
  if (executing_thread_.load(std::memory_order_relaxed) == std::this_thread::get_id()) return;
  // Sleeps while a call runs (a reply() may take seconds). SYNC POINT: seq_cst, the Dekker
  // pairs with the runner: with closed() (a call that started after closing_ runs nothing),
  // and with run_call()'s wake (every call that ends after closing_ wakes this; a count read
  // here that is already stale makes the futex return at once). The load that sees 0 acquires
  // the last call's release: its touches of the owner happen before the owner goes. The
  // timeout is a safety net only; no wake-up is lost without it.
  for (std::uint32_t running; (running = executing_.load(std::memory_order_seq_cst)) > 0;) {
    futex_wait_private(executing_, running, std::chrono::seconds(1));
  }
}

}  // namespace troupe::detail
