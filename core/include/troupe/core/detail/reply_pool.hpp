#pragma once
// The reply pool: Troupe's own threads for in-process agents' deferred calls (their reply()
// and observe()) that a rescuer took from the dispatcher's graph.
//
// Why: a user's reply() may read a result that is still pending, and the call that settles it
// may be another in-process deferred call, which needs a thread of its own. A TBB worker whose
// reply() waits long gets a rescuer, a thread that joins the graph's arena and runs its tasks
// meanwhile (agent_lane.cpp); but the arena caps the threads that can join it (each extra slot
// slowed every call through the graph), so rescuers that ran such calls themselves, and waited
// in them, once hung nested waits five deep. A rescuer hands them to this pool instead and never
// waits: in the pool, a thread that waits long on a result stops counting as running and
// another one takes the queued calls, so such waits nest as deep as threads can be made.
//
// Invariants: a thread starts for queued work only while fewer than max(2, hardware threads)
// pool threads run calls, not counting those waiting on results (marked by the handle their
// thread_rescue_starter() gives; one that stops waiting runs on, so more may run for a while);
// a lane is queued at most once (AgentLane's scheduled_) and run by one thread at a time, in
// the order its calls left the graph. Threads beyond that count exit after a second idle.
#include <memory>

namespace troupe::detail {

class AgentLane;

/// Runs `lane`'s calls handed over by its graph (AgentLane::run_handed_over) on a pool thread.
/// Never throws. When the system refuses a thread and no pool thread will take the lane, it
/// says so on stderr once, and later schedules, waits and retry_reply_pool_if_starved() try
/// again.
void schedule_on_reply_pool(std::shared_ptr<AgentLane> lane) noexcept;
/// Tries again to start a thread for queued work that has none (cheap when there is none).
void retry_reply_pool_if_starved() noexcept;

/// Pool threads alive, those of them waiting on a result, how many may run calls at once before
/// no more start, and lanes queued or being run (for tests).
struct ReplyPoolCounts {
  int threads = 0;
  int waiting = 0;
  int limit = 0;
  int busy = 0;
};
ReplyPoolCounts reply_pool_counts() noexcept;
/// Whether the calling thread is one of the pool's (for tests).
bool on_reply_pool_thread() noexcept;

}  // namespace troupe::detail
