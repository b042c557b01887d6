#include "troupe/core/agent_server.hpp"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>
#include <unordered_map>

#include "troupe/core/detail/private_futex.hpp"
#include "troupe/core/error.hpp"
#include "troupe/core/wire.hpp"

namespace troupe {
namespace detail {

struct ServedClient;

struct ServedCall {
  std::shared_ptr<ServedClient> client;
  wire::Kind kind = wire::Kind::Call;
  std::uint64_t call_id = 0;
  std::vector<Msg> inputs;
  std::size_t cost = 0;  ///< what it counts in its client's queued_bytes
  std::string error;     ///< a postman's Error or Refused reply: its text
};

struct ServedAgent {
  std::string name;
  std::string class_name;
  std::unique_ptr<AgentBase> agent;
  bool pinned = false;
  /// `agent` is built by the worker that runs the agent's first Create (never by the
  /// receiver, so that a slow constructor holds up no other client): null until then, and for
  /// good if its constructor failed, saying why in build_error. Touched only by the worker
  /// that owns the mailbox (see `running`), or before the server serves.
  Kwargs kwargs;
  std::string build_error;
  /// How many calls its worker takes from the mailbox at once (1 to kTakeAtOnce): doubled
  /// after a take that ran quickly, back to 1 after a slow one. Touched only by the worker
  /// that owns the mailbox.
  std::size_t take_limit = 1;
  /// Calls taken out of the mailbox that have not started, and calls run: written only by the
  /// worker that owns the mailbox (plain relaxed stores, not read-modify-writes), read by
  /// info().
  std::atomic<std::size_t> in_hand{0};
  std::atomic<std::uint64_t> calls{0};

  std::mutex mutex;  // guards the members below
  std::deque<ServedCall> mailbox;
  bool running = false;  ///< a worker owns the mailbox (one call at a time per agent)
  int bindings = 0;      ///< client handles bound to this agent
  bool deleted = false;

  std::string describe() const { return "agent '" + name + "' (class " + class_name + ")"; }
};

struct ServedClient {
  std::unique_ptr<Channel> channel;
  bool owner = false;
  /// The cost of this client's calls waiting in mailboxes or running: added by the receiver,
  /// taken off by the worker that ran the call. Relaxed: a hint for the receiver's throttle,
  /// which publishes nothing through it.
  std::atomic<std::size_t> queued_bytes{0};
  // Touched only by the receiver (one worker at a time): no lock.
  std::unordered_map<std::uint64_t, std::shared_ptr<ServedAgent>> handles;
  std::unordered_map<std::uint64_t, std::string> failed_handles;  // why creation failed
  /// Carries the replies the receiver makes (to Info, Ping, refused calls and Creates; an
  /// accepted Create is answered from its agent's mailbox, once built): a worker
  /// sends them, as it sends agents' replies, so that the receiver never waits on a client's
  /// full ring while the other clients wait on it. Its mailbox holds ready replies (kinds
  /// Result, Error, Refused, Pong); it has no agent.
  std::shared_ptr<ServedAgent> postman = std::make_shared<ServedAgent>();
};

}  // namespace detail

namespace {

using detail::ServedAgent;
using detail::ServedCall;
using detail::ServedClient;
using namespace std::chrono_literals;

constexpr std::size_t kReceiveBatch = 64;
constexpr int kMailboxTurn = 64;        // calls an agent runs before yielding its worker to others
constexpr std::size_t kTakeAtOnce = 8;  // calls a worker takes from a mailbox under one lock
/// A take of calls that ran longer than this was slow: the next takes one call (a slow agent's
/// calls then leave their client's budget one by one, as they finish).
constexpr auto kQuickTake = std::chrono::microseconds(50);
/// How long an idle receiver keeps looking at its clients' rings (spinning, yielding) before
/// it sleeps on their doorbells.
constexpr auto kBusyReceive = std::chrono::microseconds(250);
/// The longest sleep of an idle receiver: it bounds how late a client that died is dropped.
constexpr auto kIdleReceive = std::chrono::milliseconds(50);
/// How often a follower looks for a vacant receiver's role while an agent runs (the bound on
/// how long a frame can wait behind a long reply()).
constexpr auto kFollowerNap = std::chrono::milliseconds(1);
/// A follower's sleep while no agent runs: the receiver wakes it when there is work.
constexpr auto kFollowerIdle = std::chrono::milliseconds(100);
/// Lazy hand-overs: takes of calls that last this long on average, over a follower's nap,
/// are heavy enough for a second worker to pay for itself.
constexpr auto kHeavyTake = std::chrono::microseconds(10);

// Spare vectors for calls' inputs, per thread. The receiver decodes a call's inputs into one;
// the worker that ran the call hands it back, most often the same thread (a receiver runs the
// agent it made runnable). A vector of one Msg is a ~270-byte block, and bursts of calls in
// flight push its allocation and free past malloc's per-thread cache to its slow path.
class SpareInputs {
 public:
  static std::vector<Msg> take() {
    auto& spares = list();
    if (spares.capacity() == 0) spares.reserve(kKept);  // may throw: take() may
    if (spares.empty()) return {};
    std::vector<Msg> inputs = std::move(spares.back());
    spares.pop_back();
    return inputs;
  }
  static void give(std::vector<Msg>&& inputs) noexcept {
    auto& spares = list();
    // A full list, or none (a thread that never took one): the vector is freed.
    if (inputs.capacity() == 0 || inputs.capacity() > kLargest ||
        spares.size() == spares.capacity()) {
      return;
    }
    inputs.clear();
    spares.push_back(std::move(inputs));  // no throw: there is room
  }

 private:
  static constexpr std::size_t kLargest = 4;  // inputs kept per vector
  static constexpr std::size_t kKept = 1024;
  static std::vector<std::vector<Msg>>& list() {
    thread_local std::vector<std::vector<Msg>> spares;
    return spares;
  }
};

FrameBuilder& reply_builder() {
  thread_local FrameBuilder builder;
  return builder;
}

std::size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

/// A reply that reports a failure: one is never answered with another.
bool is_failure(wire::Kind kind) {
  return kind == wire::Kind::Error || kind == wire::Kind::Refused;
}

}  // namespace

AgentServer::AgentServer(AgentServerOptions options) : options_(options) {
  if (options_.workers < 0) {
    throw Error("AgentServerOptions::workers = " + std::to_string(options_.workers) +
                ": must be >= 0 (0 picks max(2, hardware threads))");
  }
  if (options_.send_patience.count() <= 0) {
    throw Error("AgentServerOptions::send_patience = " +
                std::to_string(options_.send_patience.count()) + " ms: must be > 0");
  }
  if (options_.max_queued_bytes_per_client == 0) {
    throw Error("AgentServerOptions::max_queued_bytes_per_client must be > 0");
  }
  // In nanoseconds, saturating: a patience of milliseconds::max() means no limit.
  send_patience_ = options_.send_patience >= std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 std::chrono::nanoseconds::max())
                       ? std::chrono::nanoseconds::max()
                       : std::chrono::nanoseconds(options_.send_patience);
  if (options_.workers == 0) {
    options_.workers = std::max(2, static_cast<int>(std::thread::hardware_concurrency()));
  }
  const unsigned cores = std::thread::hardware_concurrency();  // 0: unknown
  lazy_handovers_ = cores != 0 && cores <= 2;
}

AgentServer::~AgentServer() {
  stop();
  if (acceptor_.joinable()) acceptor_.join();
}

void AgentServer::host(const std::string& class_name, const std::string& name,
                       const Kwargs& kwargs) {
  std::string error;
  AgentPtr agent = find_or_create(class_name, name, kwargs.dump(), error);
  if (!agent) throw Error(error);
  if (!agent->agent) build(*agent);  // before serving: no worker owns it yet
  if (!agent->agent) throw Error(agent->build_error);
  std::lock_guard lock(agent->mutex);
  agent->pinned = true;
  --agent->bindings;  // find_or_create counted a client binding; a pinned agent has none
}

AgentServer::AgentPtr AgentServer::find_or_create(const std::string& class_name,
                                                  const std::string& name,
                                                  const std::string& kwargs_json,
                                                  std::string& error) {
  std::lock_guard lock(agents_mutex_);
  if (auto it = agents_.find(name); it != agents_.end()) {
    if (it->second->class_name != class_name) {
      error = "this server hosts agent '" + name + "' as class " + it->second->class_name +
              ", not " + class_name;
      return nullptr;
    }
    std::lock_guard agent_lock(it->second->mutex);
    ++it->second->bindings;
    return it->second;
  }
  Kwargs kwargs;
  try {
    kwargs = kwargs_json.empty() ? Kwargs::object() : Kwargs::parse(kwargs_json);
  } catch (const std::exception& e) {
    error = "bad kwargs JSON for agent '" + name + "': " + e.what();
    return nullptr;
  }
  if (!detail::AgentRegistry::instance().contains(class_name)) {
    try {
      // Throws the registry's own error (which names the classes it knows); builds nothing.
      (void)detail::AgentRegistry::instance().create(class_name, name, kwargs);
    } catch (const std::exception& e) {
      error = "creating agent '" + name + "' (class " + class_name + "): " + e.what();
    }
    return nullptr;
  }
  auto served = std::make_shared<ServedAgent>();
  served->name = name;
  served->class_name = class_name;
  served->kwargs = std::move(kwargs);  // built later, by a worker (build())
  served->bindings = 1;
  agents_.emplace(name, served);
  count_agents();
  return served;
}

void AgentServer::build(ServedAgent& served) {
  const std::string what = "creating agent '" + served.name + "' (class " + served.class_name + ")";
  try {
    served.agent =
        detail::AgentRegistry::instance().create(served.class_name, served.name, served.kwargs);
    served.kwargs = Kwargs();  // the agent keeps its own copy
    return;
  } catch (const std::exception& e) {
    served.build_error = what + ": " + e.what();
  } catch (...) {
    served.build_error = what + ": its constructor threw an exception that is not a std::exception";
  }
  // Unlisted, so that a later Create of that name tries again; its handles keep the error.
  std::lock_guard lock(agents_mutex_);
  if (auto it = agents_.find(served.name); it != agents_.end() && it->second.get() == &served) {
    agents_.erase(it);
    count_agents();
  }
}

void AgentServer::add_channel(std::unique_ptr<Channel> channel, bool owner) {
  auto client = std::make_shared<ServedClient>();
  client->channel = std::move(channel);
  client->owner = owner;
  // What a worker's blocked reply drains from this client counts against nothing else.
  client->channel->cap_inbox(options_.max_queued_bytes_per_client);
  nlohmann::json hello{{"pid", ::getpid()}, {"port", port_}, {"protocol", kProtocolVersion}};
  std::vector<Msg> msgs{Msg().set_metadata(hello.dump())};
  send_to(*client, {.kind = wire::Kind::Hello, .messages = msgs});
  {
    std::lock_guard lock(clients_mutex_);
    clients_.push_back(std::move(client));
  }
  clients_version_.fetch_add(1, std::memory_order_release);
  // A receiver asleep on the other clients' doorbells looks at the new one now; with the
  // receiver's role vacant (its last holder runs an agent), a napping follower takes it.
  wake_receiver();
  work_signal_.fetch_add(1, std::memory_order_seq_cst);
  detail::futex_wake_private(work_signal_, 1 << 30);
}

void AgentServer::listen(std::unique_ptr<Listener> listener) {
  port_ = listener->port();
  listener_ = std::move(listener);
  acceptor_ = std::thread([this] {
    while (!stopping_.load(std::memory_order_acquire)) {
      if (auto channel = listener_->accept(Clock::now() + 100ms)) {
        add_channel(std::move(channel), /*owner=*/false);
      }
    }
  });
}

void AgentServer::run() {
  std::vector<std::thread> workers;
  for (int i = 1; i < options_.workers; ++i) workers.emplace_back([this] { worker_loop(); });
  worker_loop();
  for (auto& w : workers) w.join();
  if (listener_) listener_->close();
  if (acceptor_.joinable()) acceptor_.join();
  std::lock_guard lock(clients_mutex_);
  for (auto& client : clients_) {
    client->channel->close();
    // Undelivered replies hold their client: let go of them (and of the cycle).
    std::lock_guard postman_lock(client->postman->mutex);
    client->postman->mailbox.clear();
  }
}

void AgentServer::stop() noexcept {
  if (stopping_.exchange(true, std::memory_order_acq_rel)) return;
  work_signal_.fetch_add(1, std::memory_order_seq_cst);
  detail::futex_wake_private(work_signal_, 1 << 30);
  wake_receiver();
}

void AgentServer::worker_loop() {
  bool napped = false;                // this worker's last turn was a nap
  std::uint64_t progress_at_nap = 0;  // progress_ when that nap began
  Clock::time_point nap_began{};
  while (!stopping_.load(std::memory_order_acquire)) {
    // Lazy hand-overs: back from a nap, a worker joins the work only if no take of calls ended
    // while it napped (the worker at work is held by a slow or blocked reply()), or, on a
    // server hosting several agents, if the takes that ended lasted kHeavyTake or more on
    // average (a second worker then computes beside the first instead of taking turns with it
    // on one core: agents that thought 20 µs a call on one server ran at one worker's speed,
    // with a third of the host idle); else it naps again, briefly, and leaves the core to that
    // worker. Invariant: while an agent is queued or the receiver's role is vacant, either a
    // worker that is not held comes back to them (the one that queued the agent or left the
    // role does), or a follower naps briefly (kFollowerNap) and joins when the workers are
    // held, or a follower in a long sleep is woken (wake_follower() wakes deep sleepers, and
    // run_agent() at a busy period's start). A server whose short takes end more often than
    // once a nap keeps its follower out: its other agents then wait for a mailbox's turn
    // (kMailboxTurn calls), not for good. (progress_ may lose an increment, or even step
    // back, when two workers store it at once: a difference that wraps reads as many takes,
    // and the follower naps again, as before.)
    bool join = !lazy_handovers_ || !napped;
    if (!join) {
      const std::uint64_t takes = progress_.load(std::memory_order_relaxed) - progress_at_nap;
      join = takes == 0 ||
             (hosts_several_agents() &&
              takes <= static_cast<std::uint64_t>((Clock::now() - nap_began) / kHeavyTake));
    }
    if (join) {
      const bool joined_from_nap = napped;
      napped = false;
      if (work_or_receive(joined_from_nap)) continue;
    }
    // A follower: nap until work is handed over, or a millisecond passes (then look for a
    // vacant receiver's role: the receiver may be running a long reply()).
    // The signal's snapshot comes before the flag (the ring's handshake, spsc_ring.hpp).
    // With lazy hand-overs a follower of a server with several agents also stays within a
    // nap's reach while takes end (the server is at work between two agents' runs), and counts
    // itself a deep sleeper otherwise: the wake at a busy period's start is for deep sleepers
    // only, not one per agent. (A lone agent's runs keep lone_running_ set between its takes.)
    const bool takes_ended = lazy_handovers_ && hosts_several_agents() &&
                             progress_.load(std::memory_order_relaxed) != progress_at_nap;
    progress_at_nap = progress_.load(std::memory_order_relaxed);
    if (lazy_handovers_) nap_began = Clock::now();
    const std::uint32_t signal = work_signal_.load(std::memory_order_seq_cst);
    sleeping_followers_.fetch_add(1, std::memory_order_seq_cst);
    // SYNC POINT: seq_cst, the Dekker pair with run_agent()'s busy-period wake: either this
    // sees running_ > 0 and naps briefly, or run_agent() sees this deep sleeper and wakes it.
    deep_sleepers_.fetch_add(1, std::memory_order_seq_cst);
    const bool brief = running_.load(std::memory_order_seq_cst) > 0 ||
                       lone_running_.load(std::memory_order_relaxed) || takes_ended || !join;
    if (brief) deep_sleepers_.fetch_sub(1, std::memory_order_relaxed);
    bool idle = !join;  // one that declined naps whatever is queued
    if (!idle) {
      std::lock_guard lock(runnable_mutex_);
      idle = runnable_.empty();
    }
    if (idle && !stopping_.load(std::memory_order_acquire)) {
      // While an agent runs, the receiver's role may be vacant: look again soon. Otherwise
      // sleep until woken (no CPU for an idle server).
      detail::futex_wait_private(work_signal_, signal, brief ? kFollowerNap : kFollowerIdle);
    }
    if (!brief) deep_sleepers_.fetch_sub(1, std::memory_order_relaxed);
    sleeping_followers_.fetch_sub(1, std::memory_order_relaxed);
    // Awake (woken or not): the next hand-over may wake another follower.
    follower_wake_pending_.store(false, std::memory_order_relaxed);
    napped = true;
  }
}

bool AgentServer::work_or_receive(bool joined_from_nap) {
  {
    AgentPtr agent;
    // A look without the lock first: the count is stored under it, and a worker that misses
    // a push here is woken for it or finds it on its next turn.
    bool more = false;
    if (runnable_size_.load(std::memory_order_relaxed) != 0) {
      std::lock_guard lock(runnable_mutex_);
      if (!runnable_.empty()) {
        agent = std::move(runnable_.front());
        runnable_.pop_front();
        runnable_size_.store(runnable_.size(), std::memory_order_relaxed);
        more = !runnable_.empty();
      }
    }
    if (agent) {
      // More waiting than this worker takes: pass the word on (the hand-overs that found a
      // wake-up already pending did not make one). With lazy hand-overs, only a worker that
      // joined from a nap does: the others are held, and the rest must not wait for a nap.
      if (more) wake_follower(/*even_if_lazy=*/joined_from_nap);
      run_agent(agent);
      return true;
    }
    bool vacant = false;
    // SYNC POINT: acquire/release on the receiver's role hands over the receiver-only state
    // (the clients' handle maps, receiver_runnable_) from one worker to the next.
    if (receiving_.compare_exchange_strong(vacant, true, std::memory_order_acquire)) {
      receive(/*may_block=*/true);
      // The first agent this receive made runnable: the receiver runs it itself (no queue,
      // no hand-over; on_frame handed any other to the followers).
      if (!receiver_runnable_.empty()) {
        agent = std::move(receiver_runnable_.front());
        receiver_runnable_.clear();
      }
      receiving_.store(false, std::memory_order_release);
      if (agent) {
        // This worker leaves the receiver's role to run an agent: while it runs, another
        // agent's calls must still be received, so a napping follower takes the role (a lone
        // agent's calls run one at a time anyway).
        if (hosts_several_agents()) wake_follower();
        run_agent(agent);
      }
      return true;
    }
  }
  return false;
}

void AgentServer::wake_follower(bool even_if_lazy) noexcept {
  // Lazy hand-overs: a follower napping briefly joins by itself (worker_loop()); only one in
  // a long sleep is woken. SYNC POINT: seq_cst, the Dekker pair with the follower's increment
  // of deep_sleepers_ before its look at the queue.
  if (lazy_handovers_ && !even_if_lazy && deep_sleepers_.load(std::memory_order_seq_cst) == 0) {
    return;
  }
  // One wake-up at a time for hand-overs: until the woken follower runs, further hand-overs
  // do not make the system call again; that follower wakes the next one if it finds more
  // agents queued than the one it takes (worker_loop). seq_cst pairs with the follower's
  // increment of sleeping_followers_ before its look at the queue.
  if (sleeping_followers_.load(std::memory_order_seq_cst) > 0 &&
      !follower_wake_pending_.exchange(true, std::memory_order_seq_cst)) {
    work_signal_.fetch_add(1, std::memory_order_seq_cst);
    detail::futex_wake_private(work_signal_, 1);
  }
}

void AgentServer::wake_receiver() noexcept {
  receiver_signal_.fetch_add(1, std::memory_order_seq_cst);
  detail::futex_wake_private(receiver_signal_, 1 << 30);
}

bool AgentServer::sleep_on_clients(const std::vector<ClientPtr>& clients, std::uint32_t signal) {
  // Every client's doorbell and the receiver's signal (stop(), a new client, a throttled
  // client back under its budget) at once; not the followers' signal, whose one-waiter wakes
  // this would swallow. A client over its budget is not read, so not waited on. The sleep's
  // bound is how soon a client that died (its doorbell never rings) is dropped.
  std::vector<Channel*> channels;
  channels.reserve(clients.size());
  for (const auto& client : clients) {
    if (!throttled(*client)) channels.push_back(client->channel.get());
  }
  const auto now = Clock::now();
  return sleep_on_channels(channels, {&receiver_signal_, signal, /*process_private=*/true},
                           now + kIdleReceive, now + 1ms);
}

bool AgentServer::receive(bool may_block) {
  // Before the client list is refreshed: a client added after this wakes the sleep below.
  const std::uint32_t signal = receiver_signal_.load(std::memory_order_seq_cst);
  // The receiver's copy of the client list, refreshed only when it changes. Only the receiver
  // (one worker at a time, handed over by receiving_) touches it.
  if (const auto version = clients_version_.load(std::memory_order_acquire);
      version != receiver_clients_version_) {
    std::lock_guard lock(clients_mutex_);
    receiver_clients_ = clients_;
    receiver_clients_version_ = version;
  }
  const std::vector<ClientPtr>& clients = receiver_clients_;
  bool any = false;
  auto poll_one = [&](const ClientPtr& client, Deadline deadline) {
    // A client over its queue budget is not read: its ring fills and its sends wait. Under
    // it, no more frames and bytes than the rest of the budget holds, so that a batch
    // overshoots by one frame at most.
    const std::size_t queued = client->queued_bytes.load(std::memory_order_relaxed);
    const std::size_t limit = options_.max_queued_bytes_per_client;
    if (queued >= limit) return;
    const std::size_t room = limit - queued;
    std::error_code ec;
    const std::size_t n = client->channel->poll(
        [&](FrameBytes frame) { on_frame(client, frame); },
        std::min(room / kQueuedCallOverhead + 1, kReceiveBatch), room, deadline, ec);
    any |= n > 0;
    if (ec == Errc::kClosed || ec == Errc::kPeerDead || ec == Errc::kMalformedFrame) {
      if (ec == Errc::kMalformedFrame) {
        std::fprintf(stderr, "troupe server %d: a client broke the channel protocol; dropped\n",
                     ::getpid());
      }
      drop_client(client);
    }
  };
  for (const auto& client : clients) poll_one(client, kNoWait);
  if (any || !may_block) return any;
  if (clients.size() == 1 && !throttled(*clients.front())) {
    if (!can_wait_on_several()) {
      // No futex_waitv: sleep on the ring's doorbell alone (a new client waits for this
      // sleep's end, stop() too).
      poll_one(clients.front(), Clock::now() + kIdleReceive);
      return any;
    }
    // One client: wait on its ring, spinning then yielding, so that a request coming soon is
    // taken at once; then sleep below, where a new client's arrival wakes this too.
    poll_one(clients.front(), Clock::now() + kBusyReceive);
  } else {
    // Several clients (or none, or a throttled one): look around for a while, yielding.
    const auto until = Clock::now() + kBusyReceive;
    while (!any && Clock::now() < until && !stopping_.load(std::memory_order_relaxed)) {
      ::sched_yield();
      for (const auto& client : clients) poll_one(client, kNoWait);
    }
  }
  if (!any) {
    if (!sleep_on_clients(clients, signal)) {
      detail::futex_wait_private(receiver_signal_, signal, 1ms);
    }
    // Idle: a poll whose deadline has passed also asks whether the peer is gone (the looks
    // above do not), so a client that closed or died is dropped.
    const auto now = Clock::now();
    for (const auto& client : clients) poll_one(client, now);
  }
  return any;
}

void AgentServer::on_frame(const ClientPtr& client, FrameBytes frame) {
  std::error_code ec;
  const wire::Envelope* env = verify_frame(frame, ec);
  if (env == nullptr) {
    malformed_.fetch_add(1, std::memory_order_relaxed);
    std::fprintf(stderr, "troupe server %d: dropped an inbound frame: %s\n", ::getpid(),
                 ec.message().c_str());
    return;
  }
  // Whatever one request throws is that request's error: let through, it would end the
  // receiving thread and every agent of this server with it.
  std::string why;
  try {
    handle_frame(client, *env, frame.size());
    return;
  } catch (const std::exception& e) {
    why = e.what();
  } catch (...) {
    why = "an exception that is not a std::exception";
  }
  std::fprintf(stderr, "troupe server %d: a request failed: %s\n", ::getpid(), why.c_str());
  try {
    reply_later(client, wire::Kind::Error, env->call_id(), {},
                "the server could not handle this request: " + why);
  } catch (...) {
    // Out of memory, most likely: the caller's timeout or the link's death will answer.
  }
}

void AgentServer::handle_frame(const ClientPtr& client, const wire::Envelope& envelope,
                               std::size_t frame_bytes) {
  const wire::Envelope* env = &envelope;
  const std::uint64_t call_id = env->call_id();
  std::vector<Msg> inputs;
  if (const auto* msgs = env->messages()) {
    inputs = SpareInputs::take();
    inputs.reserve(msgs->size());
    for (const auto* m : *msgs) inputs.push_back(from_wire(*m));
  }
  switch (env->kind()) {
    case wire::Kind::Call:
    case wire::Kind::Observe:
    case wire::Kind::Release: {
      auto it = client->handles.find(env->agent_id());
      if (it == client->handles.end()) {
        if (env->kind() == wire::Kind::Release) return;
        auto failed = client->failed_handles.find(env->agent_id());
        reply_later(
            client, wire::Kind::Refused, call_id, {},
            failed != client->failed_handles.end()
                ? failed->second
                : "no agent is bound to id " + std::to_string(env->agent_id()) + " on this server");
        return;
      }
      // The handle map's own pointer, not a copy (a reference count's two read-modify-writes
      // per call): copied only when the agent becomes runnable, or when its entry goes.
      AgentPtr released;
      const AgentPtr* agent = &it->second;
      if (env->kind() == wire::Kind::Release) {
        released = std::move(it->second);
        client->handles.erase(it);
        agent = &released;
      }
      const Posted posted = post(
          **agent,
          {client, env->kind(), call_id, std::move(inputs), frame_bytes + kQueuedCallOverhead, {}},
          /*refuse_if_deleted=*/env->kind() != wire::Kind::Release);
      if (posted == Posted::kRefused) {
        reply_later(client, wire::Kind::Refused, call_id, {},
                    (*agent)->describe() + " was deleted from its server");
      }
      if (posted == Posted::kStart) schedule_from_receiver(*agent);
      return;
    }
    case wire::Kind::Create: {
      if (inputs.empty()) {
        reply_later(client, wire::Kind::Error, call_id, {}, "Create without an agent description");
        return;
      }
      std::string error;
      AgentPtr agent =
          find_or_create(inputs[0].content(), inputs[0].name(), inputs[0].metadata(), error);
      if (agent) {
        client->handles[env->agent_id()] = agent;
        // Answered by a worker, in the agent's order: the first Create builds it there, and
        // the calls that follow queue behind.
        if (post(
                *agent,
                {client, wire::Kind::Create, call_id, {}, frame_bytes + kQueuedCallOverhead, {}}) ==
            Posted::kStart) {
          schedule_from_receiver(std::move(agent));
        }
      } else {
        client->failed_handles[env->agent_id()] = error;
        reply_later(client, wire::Kind::Refused, call_id, {}, error);
      }
      return;
    }
    case wire::Kind::Delete:
    case wire::Kind::DeleteAll: {
      std::vector<AgentPtr> removed;
      {
        std::lock_guard lock(agents_mutex_);
        for (auto it = agents_.begin(); it != agents_.end();) {
          if (env->kind() == wire::Kind::DeleteAll ||
              (!inputs.empty() && it->first == inputs[0].name())) {
            removed.push_back(it->second);
            it = agents_.erase(it);
            count_agents();
          } else {
            ++it;
          }
        }
      }
      for (auto& agent : removed) {
        std::lock_guard lock(agent->mutex);
        agent->deleted = true;
      }
      if (removed.empty() && env->kind() == wire::Kind::Delete) {
        reply_later(
            client, wire::Kind::Refused, call_id, {},
            "no agent named '" + (inputs.empty() ? "" : inputs[0].name()) + "' on this server");
      } else {
        reply_later(client, wire::Kind::Result, call_id);
      }
      return;
    }
    case wire::Kind::Info: {
      reply_later(client, wire::Kind::Result, call_id, {Msg().set_metadata(info_json())});
      return;
    }
    case wire::Kind::Ping:
      reply_later(client, wire::Kind::Pong, call_id);
      return;
    default:
      malformed_.fetch_add(1, std::memory_order_relaxed);
      reply_later(client, wire::Kind::Error, call_id, {},
                  "a server does not accept frames of this kind");
      return;
  }
}

void AgentServer::schedule_from_receiver(AgentPtr agent) {
  // The first agent this receive makes runnable is the receiver's own next job; any other
  // goes to the followers at once (a later frame may keep the receiver busy).
  if (receiver_runnable_.empty()) {
    receiver_runnable_.push_back(std::move(agent));
  } else {
    make_runnable(agent, /*wake=*/true);
  }
}

void AgentServer::reply_later(const ClientPtr& client, wire::Kind kind, std::uint64_t call_id,
                              std::vector<Msg> msgs, std::string error) {
  // Counted in the client's budget like a call: a client that floods the server with pings
  // and reads no pong is held back, not given memory without end.
  std::size_t cost = kQueuedCallOverhead + error.size();
  for (const Msg& m : msgs) cost += m.content().size() + m.metadata().size();
  if (post(*client->postman, {client, kind, call_id, std::move(msgs), cost, std::move(error)}) ==
      Posted::kStart) {
    schedule_from_receiver(client->postman);
  }
}

AgentServer::Posted AgentServer::post(detail::ServedAgent& agent, detail::ServedCall call,
                                      bool refuse_if_deleted) {
  ServedClient& client = *call.client;
  std::lock_guard lock(agent.mutex);
  if (refuse_if_deleted && agent.deleted) return Posted::kRefused;
  client.queued_bytes.fetch_add(call.cost, std::memory_order_relaxed);
  agent.mailbox.push_back(std::move(call));
  return std::exchange(agent.running, true) ? Posted::kQueued : Posted::kStart;
}

void AgentServer::make_runnable(const AgentPtr& agent, bool wake) {
  std::size_t waiting;
  {
    std::lock_guard lock(runnable_mutex_);
    runnable_.push_back(agent);
    waiting = runnable_.size();
    runnable_size_.store(waiting, std::memory_order_relaxed);
  }
  // The caller takes one runnable agent itself (unless `wake`); wake a follower for any more.
  if (wake || waiting > 1) wake_follower();
}

void AgentServer::run_agent(const AgentPtr& served) {
  // Someone must keep receiving while this agent runs, if another agent could run meanwhile:
  // on a server with several agents, wake a sleeping follower (a lone agent's calls run one at
  // a time anyway, so a server with one agent skips the wake-up).
  // A server with one agent runs it on one worker at a time: plain stores of a flag tell the
  // followers, instead of two read-modify-writes of the shared count per call.
  const bool counted = hosts_several_agents() || !served->agent;  // a postman runs beside one
  if (counted && running_.fetch_add(1, std::memory_order_seq_cst) == 0 &&
      (lazy_handovers_ ? deep_sleepers_ : sleeping_followers_).load(std::memory_order_seq_cst) >
          0) {
    // Not through wake_follower(): this wake is for receiving, not for a queued agent, and
    // must not be lost to a hand-over's pending one (once per busy period: cheap).
    work_signal_.fetch_add(1, std::memory_order_seq_cst);
    detail::futex_wake_private(work_signal_, 1);
  }
  if (!counted) lone_running_.store(true, std::memory_order_relaxed);
  struct Done {
    AgentServer& server;
    bool counted;
    ~Done() {
      if (counted) {
        server.running_.fetch_sub(1, std::memory_order_acq_rel);
      } else {
        server.lone_running_.store(false, std::memory_order_relaxed);
      }
    }
  } done{*this, counted};
  // The mailbox's calls are taken a few at a time (up to kTakeAtOnce, while they run quickly),
  // under one lock, and what each call leaves (its budget, its client reference) is settled
  // after the few: between one reply's send and the next reply, no locked instruction. Such an
  // instruction waits for the reply's stores into the ring, whose lines the client's core
  // holds: with 1024 calls in flight that wait cost 60-280 ns a call; without it the stores
  // drain while the next reply is made (with the send lock's plain-store release,
  // send_lock.hpp). Each reply is still sent as soon as it is made. Within a take, a finished
  // call's budget is held while the take runs on only if its client is under half its budget;
  // a take that ran slowly makes the next take one call.
  std::array<ServedCall, kTakeAtOnce> taken;
  for (int turn = 0;;) {
    std::size_t n = 0;
    bool backlog = false;  // more than one call waited: worth timing, to adapt take_limit
    {
      std::lock_guard lock(served->mutex);
      if (served->mailbox.empty()) {
        served->running = false;
        return;
      }
      if (turn >= kMailboxTurn) break;  // let other agents run; requeue below
      backlog = served->mailbox.size() > 1;
      n = std::min(served->mailbox.size(), served->take_limit);
      for (std::size_t i = 0; i < n; ++i) {
        taken[i] = std::move(served->mailbox.front());
        served->mailbox.pop_front();
      }
      served->in_hand.store(n, std::memory_order_relaxed);
    }
    turn += static_cast<int>(n);
    // Settles taken[settled, upto): the calls leave their clients' budgets (a run of one
    // client's calls at once), give back their input vectors and drop their client references.
    std::size_t settled = 0;
    auto settle = [&](std::size_t upto) {
      for (std::size_t i = settled; i < upto;) {
        ServedClient& client = *taken[i].client;
        std::size_t cost = 0;
        for (; i < upto && taken[i].client.get() == &client; ++i) {
          cost += taken[i].cost;
          SpareInputs::give(std::move(taken[i].inputs));
        }
        dequeued(client, cost);
      }
      for (std::size_t i = settled; i < upto; ++i) taken[i] = ServedCall{};
      settled = upto;
    };
    const auto started = backlog ? Clock::now() : Clock::time_point{};
    for (std::size_t i = 0; i < n; ++i) {
      // Finished calls keep their budgets through the next call only while their clients are
      // far from the limit (plain loads): a client near it must not wait for its budget behind
      // a call that may be slow, or block for good.
      for (std::size_t k = settled; k < i; ++k) {
        if (taken[k].client->queued_bytes.load(std::memory_order_relaxed) >=
            options_.max_queued_bytes_per_client / 2) {
          settle(i);
          break;
        }
      }
      served->in_hand.store(n - i - 1, std::memory_order_relaxed);
      run_call(served, taken[i]);
    }
    if (backlog) {
      served->take_limit =
          Clock::now() - started < kQuickTake ? std::min(2 * n, kTakeAtOnce) : std::size_t{1};
    }
    progress_.store(progress_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    settle(n);
  }
  make_runnable(served);
}

void AgentServer::run_call(const AgentPtr& served, ServedCall& call) {
  ServedClient& client = *call.client;
  const bool ran_call = call.kind == wire::Kind::Call || call.kind == wire::Kind::Observe;
  if (ran_call) {
    // Counted before its reply goes: a client that has the reply and then asks for the
    // server's report finds the call counted (its request follows the reply it read).
    served->calls.store(served->calls.load(std::memory_order_relaxed) + 1,
                        std::memory_order_relaxed);
  }
  if (ran_call && !served->agent) {
    send_error(client, call.call_id, served->build_error, wire::Kind::Refused);
    return;
  }
  switch (call.kind) {
    case wire::Kind::Create:
      if (!served->agent && served->build_error.empty()) build(*served);
      if (served->agent) {
        send_to(client, {.kind = wire::Kind::Result, .call_id = call.call_id});
      } else {
        send_error(client, call.call_id, served->build_error, wire::Kind::Refused);
      }
      break;
    case wire::Kind::Call:
      try {
        const Msg result = served->agent->reply(call.inputs);
        send_to(client,
                {.kind = wire::Kind::Result,
                 .call_id = call.call_id,
                 .messages = std::span<const Msg>(&result, 1)},
                served.get());
      } catch (const std::exception& e) {
        send_error(client, call.call_id, served->describe() + " raised: " + e.what());
      } catch (...) {
        send_error(client, call.call_id, served->describe() + " raised a non-standard exception");
      }
      break;
    case wire::Kind::Observe:
      try {
        for (const Msg& m : call.inputs) served->agent->observe(m);
        send_to(client, {.kind = wire::Kind::Result, .call_id = call.call_id});
      } catch (const std::exception& e) {
        send_error(client, call.call_id, served->describe() + " observe raised: " + e.what());
      } catch (...) {
        send_error(client, call.call_id, served->describe() + " observe raised");
      }
      break;
    case wire::Kind::Result:
    case wire::Kind::Error:
    case wire::Kind::Refused:
    case wire::Kind::Pong:  // a postman's: a reply the receiver made
      send_to(client, {.kind = call.kind,
                       .call_id = call.call_id,
                       .messages = call.inputs,
                       .error = call.error});
      break;
    case wire::Kind::Release: {
      bool remove;
      {
        std::lock_guard lock(served->mutex);
        remove = --served->bindings <= 0 && !served->pinned;
      }
      if (remove) {
        std::lock_guard lock(agents_mutex_);
        if (auto it = agents_.find(served->name); it != agents_.end() && it->second == served) {
          agents_.erase(it);
          count_agents();
        }
      }
      break;
    }
    default:
      break;
  }
}

void AgentServer::send_to(ServedClient& client, const EnvelopeFields& fields,
                          const ServedAgent* from) {
  // As every other failure of a call says whose it is (describe()), so does this one.
  const auto whose = [from] { return from ? from->describe() + ": " : std::string(); };
  FrameBytes frame;
  try {
    frame = reply_builder().build(fields);
  } catch (const std::exception& e) {
    if (!is_failure(fields.kind)) {
      send_error(client, fields.call_id, whose() + "the reply cannot be sent: " + e.what());
    }
    return;
  }
  // A full ring waits (backpressure), for a bounded time: a client that stopped reading must
  // not hold a worker, and with it every other client, for good.
  const std::error_code ec = client.channel->send(frame, SendLimit(send_patience_));
  // A client that is gone cannot be answered; the receiver drops it with its calls.
  if (!ec || ec == Errc::kClosed || ec == Errc::kPeerDead) return;
  if (ec == Errc::kMessageTooLarge && !is_failure(fields.kind)) {
    send_error(client, fields.call_id,
               whose() + "the reply (a frame of " + std::to_string(frame.size()) +
                   " bytes) is larger than the channel carries: " + ec.message());
    return;
  }
  if (ec != Errc::kTimeout) {
    std::fprintf(stderr, "troupe server %d: a reply could not be sent: %s\n", ::getpid(),
                 ec.message().c_str());
    return;
  }
  std::fprintf(stderr,
               "troupe server %d: a client read nothing for %lld ms; dropping it, so that its "
               "calls fail instead of waiting\n",
               ::getpid(), static_cast<long long>(options_.send_patience.count()));
  client.channel->close();  // the receiver then drops it
}

void AgentServer::send_error(ServedClient& client, std::uint64_t call_id, const std::string& text,
                             wire::Kind kind) {
  send_to(client, {.kind = kind, .call_id = call_id, .error = text});
}

bool AgentServer::throttled(const ServedClient& client) const noexcept {
  return client.queued_bytes.load(std::memory_order_relaxed) >=
         options_.max_queued_bytes_per_client;
}

void AgentServer::dequeued(ServedClient& client, std::size_t cost) noexcept {
  if (cost == 0) return;
  const std::size_t limit = options_.max_queued_bytes_per_client;
  const std::size_t before = client.queued_bytes.fetch_sub(cost, std::memory_order_relaxed);
  if (before >= limit && before - cost < limit) {
    // The receiver sleeps without that client's doorbell (or the role is free, its next
    // holder napping): wake them to read that client again.
    wake_receiver();
    work_signal_.fetch_add(1, std::memory_order_seq_cst);
    detail::futex_wake_private(work_signal_, 1 << 30);
  }
}

bool AgentServer::hosts_several_agents() const {
  return agent_count_.load(std::memory_order_relaxed) > 1;
}

void AgentServer::count_agents() { agent_count_.store(agents_.size(), std::memory_order_relaxed); }

void AgentServer::drop_client(const ClientPtr& client) {
  {
    std::lock_guard lock(clients_mutex_);
    std::erase(clients_, client);
  }
  clients_version_.fetch_add(1, std::memory_order_release);
  // Its handles are released after the calls it already sent.
  for (auto& [id, agent] : client->handles) {
    if (post(*agent, {client, wire::Kind::Release, 0, {}, 0, {}}) == Posted::kStart) {
      make_runnable(agent);
    }
  }
  client->handles.clear();
  // The server ends with its owner (the program that launched it), once no other client
  // (a program attached to its port) still uses it.
  bool last;
  {
    std::lock_guard lock(clients_mutex_);
    if (client->owner) owner_gone_ = true;
    last = owner_gone_ && clients_.empty();
  }
  if (last) stop();
}

ServerInfo AgentServer::info() const {
  ServerInfo info;
  info.pid = ::getpid();
  info.port = port_;
  info.rss_bytes = resident_bytes();
  info.malformed_frames = malformed_.load(std::memory_order_relaxed);
  {
    std::lock_guard lock(clients_mutex_);
    info.clients = clients_.size();
  }
  std::lock_guard lock(agents_mutex_);
  for (const auto& [name, agent] : agents_) {
    std::lock_guard agent_lock(agent->mutex);
    info.agents.push_back({name, agent->class_name,
                           agent->mailbox.size() + agent->in_hand.load(std::memory_order_relaxed),
                           agent->calls.load(std::memory_order_relaxed)});
  }
  return info;
}

std::string AgentServer::info_json() const {
  ServerInfo i = info();
  nlohmann::json agents = nlohmann::json::array();
  for (const auto& a : i.agents) {
    agents.push_back({{"name", a.name},
                      {"class", a.class_name},
                      {"queue_depth", a.queue_depth},
                      {"calls", a.calls}});
  }
  return nlohmann::json{
      {"pid", i.pid},         {"port", i.port},   {"rss_bytes", i.rss_bytes},
      {"clients", i.clients}, {"agents", agents}, {"malformed_frames", i.malformed_frames}}
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);  // names need not be UTF-8
}

}  // namespace troupe
