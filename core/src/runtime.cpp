#include "troupe/core/detail/runtime.hpp"

#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "troupe/core/agent_server.hpp"
#include "troupe/core/child_process.hpp"
#include "troupe/core/detail/agent_lane.hpp"
#include "troupe/core/detail/cpu_relax.hpp"
#include "troupe/core/detail/private_futex.hpp"
#include "troupe/core/detail/reply_pool.hpp"
#include "troupe/core/error.hpp"
#include "troupe/core/wire.hpp"

namespace troupe::detail {
namespace {

using namespace std::chrono_literals;

constexpr auto kSpin = 20us;            // waiting: spin this long...
constexpr auto kYield = 300us;          // ...then yield this long, then sleep in slices of
constexpr auto kSleepSlice = 1ms;       // this length (futex on the ring's doorbell)
constexpr auto kQuietBeforePump = 1ms;  // the background pump waits for a quiet program
constexpr auto kMultiLinkNap = 100us;
constexpr int kLooksPerClockRead = 8;  // a waiter's looks that delivered, between clock reads
/// How often a waiter napping on several links asks whether their servers live (a syscall
/// each): the bound on noticing the death of a server this program did not launch.
constexpr auto kPeerCheckInterval = 2ms;
constexpr auto kStartTimeout = 10s;

std::atomic<Runtime*> g_runtime{nullptr};
AgentServer* g_child_server = nullptr;  // the server of this process, if it is an agent server

// SIGTERM in an agent server: stop cleanly (its rendezvous segment is removed on the way out).
// stop() only stores atomics and makes a futex call: async-signal-safe.
void on_terminate(int) {
  if (g_child_server != nullptr) g_child_server->stop();
}

// Sleeps on the doorbells of `busy` and on `own` at once (sleep_on_channels()).
bool sleep_on_links(const std::vector<std::shared_ptr<ServerLink>>& busy, const WakeWord& own,
                    Deadline until) {
  std::vector<Channel*> channels;
  channels.reserve(busy.size());
  for (const auto& link : busy) channels.push_back(&link->channel());
  return sleep_on_channels(channels, own, until, Clock::now() + kMultiLinkNap);
}

void send_startup_error(Channel& channel, const std::string& why) {
  FrameBuilder builder;
  (void)channel.send(builder.build({.kind = wire::Kind::Error, .call_id = 0, .error = why}),
                     Clock::now() + 5s);
}

// What a spawned agent server runs (in the fork server's child).
int serve_in_child(Transport& transport, const nlohmann::json& request) {
  ::prctl(PR_SET_NAME, "troupe-server");
  std::unique_ptr<Channel> owner =
      transport.attach_child_channel(request.at("channel").get<std::string>());
  AgentServer server({.workers = request.value("workers", 0)});
  g_child_server = &server;
  struct sigaction action {};
  action.sa_handler = on_terminate;
  ::sigaction(SIGTERM, &action, nullptr);  // SIGINT keeps its do-nothing handler (fork_server.cpp)
  try {
    server.listen(transport.listen(request.value("host", std::string("localhost")),
                                   request.value("port", 0)));
    if (request.contains("agent")) {
      const auto& agent = request["agent"];
      server.host(agent.at("class").get<std::string>(), agent.at("name").get<std::string>(),
                  agent.value("kwargs", Kwargs::object()));
    }
  } catch (const std::exception& e) {
    send_startup_error(*owner, e.what());
    g_child_server = nullptr;
    return 3;
  }
  server.add_channel(std::move(owner), /*owner=*/true);
  server.run();
  g_child_server = nullptr;
  return 0;
}

}  // namespace

Runtime::Runtime(std::unique_ptr<Transport> local) : local_(std::move(local)) {}

void Runtime::initialise(std::unique_ptr<Transport> local) {
  if (g_runtime.load() != nullptr) throw Error("troupe::init called twice");
  // Never destroyed (handles in static storage may outlive any destruction order); shutdown()
  // runs at exit instead.
  auto* runtime = new Runtime(std::move(local));
  Transport* transport = runtime->local_.get();
  runtime->fork_server_ = ForkServer::start(
      [transport](const nlohmann::json& request) { return serve_in_child(*transport, request); },
      [transport] { transport->remove_stale(); });
  runtime->fork_server_->set_exit_handler(
      [runtime](pid_t pid, int status) { runtime->on_exit(pid, status); });
  runtime->fork_server_->set_spawn_handler([runtime](pid_t pid) {
    // A new process with this pid: an exit recorded for the pid belongs to an older one, and
    // would otherwise mark the new server dead at launch.
    std::lock_guard lock(runtime->exits_mutex_);
    runtime->exits_.erase(pid);
  });
  runtime->fork_server_->set_gone_handler([runtime] {
    {
      std::lock_guard lock(runtime->exits_mutex_);
      runtime->fork_server_gone_ = true;
    }
    runtime->exited_.notify_all();  // no exit will be reported: waits for one end now
  });
  // Built here rather than on the program's first call that must wait, which it held for
  // ~3 ms. After the fork server exists: it starts threads (AgentLane::warm_up()). Best
  // effort: if TBB fails now, the first such call builds what it needs, as before.
  try {
    AgentLane::warm_up();
  } catch (...) {
  }
  g_runtime.store(runtime, std::memory_order_release);
  runtime->start_threads();
  std::atexit([] {
    if (Runtime* r = g_runtime.load()) r->shutdown();
  });
}

Runtime* Runtime::get() noexcept { return g_runtime.load(std::memory_order_acquire); }

Runtime& Runtime::require(const char* what) {
  Runtime* runtime = get();
  if (runtime == nullptr) {
    throw Error(std::string(what) +
                ": call troupe::init(argc, argv) at the start of main, before any thread");
  }
  if (runtime->shutting_down()) throw Error(std::string(what) + ": the runtime has shut down");
  return *runtime;
}

void Runtime::start_threads() {
  background_ = std::thread([this] { background_loop(); });
}

void Runtime::shutdown() noexcept {
  if (stopping_.exchange(true, std::memory_order_acq_rel)) return;
  background_signal_.fetch_add(1, std::memory_order_seq_cst);
  futex_wake_private(background_signal_, 1);
  if (background_.joinable()) background_.join();
  std::vector<std::shared_ptr<ServerLink>> all;
  {
    std::lock_guard lock(links_mutex_);
    all.swap(links_);
    attached_.clear();
  }
  for (auto& link : all) {
    link->mark_dead("the program is shutting down");
    link->close();
  }
  fork_server_.reset();  // it ends the servers, then removes leftovers once we are gone
}

void Runtime::add_link(const std::shared_ptr<ServerLink>& link) {
  std::lock_guard lock(links_mutex_);
  add_link_locked(link);
}

void Runtime::add_link_locked(const std::shared_ptr<ServerLink>& link) {
  links_.push_back(link);
  links_version_.fetch_add(1, std::memory_order_release);
}

std::shared_ptr<const Runtime::LinkList> Runtime::links() {
  // Each pumping thread keeps a snapshot, refreshed when the set changes: the hot path pays one
  // reference count, not a copy of the list. Callers hold the snapshot while they iterate (a
  // reply's continuation may refresh this thread's cache meanwhile).
  thread_local std::uint64_t version = ~std::uint64_t{0};
  thread_local std::shared_ptr<const LinkList> snapshot;
  thread_local const Runtime* owner = nullptr;
  const std::uint64_t now = links_version_.load(std::memory_order_acquire);
  if (version != now || owner != this) {
    std::lock_guard lock(links_mutex_);
    snapshot = std::make_shared<const LinkList>(links_);
    version = now;
    owner = this;
  }
  return snapshot;
}

std::shared_ptr<ServerLink> Runtime::launch(const DistOptions& options,
                                            const nlohmann::json& pinned) {
  auto [channel, token] = local_->make_child_channel();
  nlohmann::json request{{"channel", token},
                         {"host", options.host},
                         {"port", options.port},
                         {"workers", options.workers}};
  if (!pinned.is_null()) request["agent"] = pinned;
  const pid_t pid = fork_server_->spawn(std::move(request));
  auto link = std::make_shared<ServerLink>(std::move(channel), pid, /*launched=*/true,
                                           "server process " + std::to_string(pid));
  link->bind_agent();
  add_link(link);
  std::optional<int> exited;
  {
    // The child may already have ended (a start-up failure): its status is known.
    std::lock_guard lock(exits_mutex_);
    if (auto it = exits_.find(pid); it != exits_.end()) exited = it->second;
  }
  if (exited) {
    // What it sent before it went (its start-up error) says more than its exit status.
    link->on_server_exit("its server process " + std::to_string(pid) + " " +
                         describe_exit(*exited));
  }
  return link;
}

std::shared_ptr<ServerLink> Runtime::connect(const std::string& host, int port) {
  {
    std::lock_guard lock(links_mutex_);
    if (auto it = attached_.find(port); it != attached_.end()) {
      if (auto link = it->second.lock(); link && !link->dead()) {
        link->bind_agent();
        return link;
      }
    }
    // A server this program launched: its agents' calls and the attached ones' share a channel
    // (and lanes, by name), so the server reads them in program order.
    for (const auto& link : links_) {
      if (link->launched() && link->port() == port && !link->dead()) {
        link->bind_agent();
        attached_[port] = link;
        return link;
      }
    }
  }
  auto link = std::make_shared<ServerLink>(local_->connect(host, port), 0, /*launched=*/false,
                                           "local port " + std::to_string(port));
  link->bind_agent();
  try {
    link->wait_ready(Clock::now() + kStartTimeout);
  } catch (...) {
    link->close();
    throw;
  }
  // Two threads may attach to one port at once: the first link in serves both (one channel,
  // one lane per agent); the other is closed unused.
  std::shared_ptr<ServerLink> first;
  {
    std::lock_guard lock(links_mutex_);
    if (auto it = attached_.find(port); it != attached_.end()) {
      if (auto existing = it->second.lock(); existing && !existing->dead()) first = existing;
    }
    if (first) {
      first->bind_agent();
    } else {
      attached_[port] = link;
      add_link_locked(link);
    }
  }
  if (!first) return link;
  link->unbind_agent();
  link->close();
  return first;
}

std::optional<int> Runtime::wait_exit(pid_t pid, std::chrono::nanoseconds timeout) {
  std::unique_lock lock(exits_mutex_);
  const auto ended = [&] {
    return exits_.count(pid) != 0 || stopping_.load() || fork_server_gone_;
  };
  if (timeout == std::chrono::nanoseconds::max()) {
    exited_.wait(lock, ended);
  } else if (!exited_.wait_for(lock, timeout, ended)) {
    return std::nullopt;
  }
  auto it = exits_.find(pid);
  return it == exits_.end() ? 0 : it->second;
}

void Runtime::on_exit(pid_t pid, int status) {
  {
    std::lock_guard lock(exits_mutex_);
    exits_[pid] = status;
  }
  exited_.notify_all();
  std::vector<std::shared_ptr<ServerLink>> all;
  {
    std::lock_guard lock(links_mutex_);
    all = links_;
  }
  for (auto& link : all) {
    if (link->pid() == pid) {
      link->on_server_exit("its server process " + std::to_string(pid) + " " +
                           describe_exit(status));
    }
  }
}

std::size_t Runtime::pump_all(Deadline deadline, std::vector<std::shared_ptr<ServerLink>>* busy) {
  return pump_links(*links(), busy, deadline);
}

std::size_t Runtime::pump_links(const LinkList& all, std::vector<std::shared_ptr<ServerLink>>* busy,
                                Deadline deadline) {
  std::size_t handled = 0;
  for (const auto& link : all) {
    if (link->outstanding() == 0) continue;
    handled += link->pump(deadline);
    if (busy != nullptr && link->outstanding() != 0) busy->push_back(link);
  }
  return handled;
}

void Runtime::expire_all(Clock::time_point now) {
  const auto all = links();
  for (const auto& link : *all) link->expire(now);
  // Deferred calls with a deadline (no link tracks them before they are sent). Settling one
  // runs its continuations, which may admit or release calls: not under the lock.
  std::vector<std::shared_ptr<ResultState>> due;
  {
    std::lock_guard lock(deadlines_mutex_);
    std::erase_if(deadlines_, [&](const std::weak_ptr<ResultState>& weak) {
      auto state = weak.lock();
      if (!state || state->settled()) return true;
      if (state->deadline > now) return false;
      due.push_back(std::move(state));
      return true;
    });
  }
  for (auto& state : due) state->settled_or_expired();
}

void Runtime::watch_deadline(std::weak_ptr<ResultState> state) {
  std::lock_guard lock(deadlines_mutex_);
  deadlines_.push_back(std::move(state));
}

void Runtime::retire_idle_links() {
  std::vector<std::shared_ptr<ServerLink>> retired;
  {
    std::lock_guard lock(links_mutex_);
    for (auto it = links_.begin(); it != links_.end();) {
      if ((*it)->idle() || (*it)->dead()) {
        retired.push_back(*it);
        it = links_.erase(it);
      } else {
        ++it;
      }
    }
    if (!retired.empty()) {
      links_version_.fetch_add(1, std::memory_order_release);
      // A retired link must not be handed to the next agent that attaches to its port.
      for (auto it = attached_.begin(); it != attached_.end();) {
        auto link = it->second.lock();
        const bool gone = !link || std::find(retired.begin(), retired.end(), link) != retired.end();
        it = gone ? attached_.erase(it) : std::next(it);
      }
    }
  }
  // Closing a launched server's channel ends that server. Marked dead, not only closed: a
  // request through a handle still held (a ServerHandle) fails at once, saying why.
  for (auto& link : retired) {
    if (link->idle()) link->mark_dead("no agent of this program is placed there any more");
  }
}

void Runtime::drive(ResultState& state, Deadline until) {
  drivers_.fetch_add(1, std::memory_order_relaxed);
  std::vector<std::shared_ptr<ServerLink>> busy;
  Clock::time_point peers_checked{};
  // The clock is read when a look at the rings delivered nothing (the waiter then spins,
  // yields or sleeps by it), and after every kLooksPerClockRead looks that delivered: while
  // replies stream in, a wait mostly ends after a look or two, and a clock read (~30 ns on
  // this VM) at every look and at every wait's start took ~10% of a program's thread with
  // 1024 calls in flight. A timed call looks at its deadline first, as it always did. So a
  // wait whose `until` has passed still looks at the rings once (up to kLooksPerClockRead
  // times while replies keep coming) before it returns, and a deadline that passes while
  // replies stream in is seen up to that many looks late: a reply in that window wins.
  Clock::time_point quiet_since{};  // since when looks deliver nothing; unset while they do
  int looks_unclocked = state.deadline == Deadline::max() ? 0 : kLooksPerClockRead;
  while (!state.settled()) {
    bool delivered = false;
    if (looks_unclocked < kLooksPerClockRead) {
      busy.clear();
      delivered = pump_all(kNoWait, &busy) > 0;
      if (delivered) {
        quiet_since = {};
        if (++looks_unclocked < kLooksPerClockRead) continue;
      }
    }
    looks_unclocked = 0;
    const auto now = Clock::now();
    if (state.deadline <= now) {
      expire_all(now);  // names the agent, when the call was sent
      state.fail(std::make_exception_ptr(Timeout("call timed out")));
      break;
    }
    if (now >= until) break;
    if (delivered) continue;
    if (quiet_since == Clock::time_point{}) quiet_since = now;
    if (now < quiet_since + kSpin) {
      // Look at the rings again and again before the next clock read: a look at an empty
      // ring costs two loads, a clock read ~30 ns here, and a reply is wanted within tens.
      const auto all = links();
      for (int i = 0; i < 32 && !state.settled(); ++i) {
        cpu_relax();
        if (pump_links(*all, nullptr) > 0) {
          quiet_since = {};
          break;
        }
      }
      continue;
    }
    if (now < quiet_since + kYield) {
      ::sched_yield();
      continue;
    }
    const Deadline slice = std::min({until, state.deadline, now + kSleepSlice});
    if (busy.size() == 1) {
      // Sleeps on that ring's doorbell; returns at once if another thread is delivering on
      // it, and then this one naps instead of spinning against it.
      if (busy.front()->pump(slice) == 0 && Clock::now() < slice) {
        state.nap(std::min<std::chrono::nanoseconds>(slice - Clock::now(), kMultiLinkNap));
      }
    } else {
      // Several servers (or a deferred call): sleep on all their doorbells and this result at
      // once; without futex_waitv, nap and look again soon.
      WakeWord own;
      if (state.arm_nap(own)) {
        const bool slept = sleep_on_links(busy, own, slice);
        state.end_nap();
        if (!slept) state.nap(std::min<std::chrono::nanoseconds>(slice - now, kMultiLinkNap));
      }
      if (now - peers_checked >= kPeerCheckInterval) {
        check_peers(busy);
        peers_checked = now;
      }
    }
    expire_all(Clock::now());
  }
  drivers_.fetch_sub(1, std::memory_order_relaxed);
}

void Runtime::background_loop() {
  auto idle_since = Clock::now();
  std::uint64_t calls_seen = calls_.load(std::memory_order_relaxed);
  auto last_call = idle_since;  // when calls_ was last seen to change
  while (!stopping_.load(std::memory_order_acquire)) {
    // In-process calls queued for the reply pool when no thread could start get another try.
    retry_reply_pool_if_starved();
    const auto now = Clock::now();
    if (const std::uint64_t calls = calls_.load(std::memory_order_relaxed); calls != calls_seen) {
      calls_seen = calls;
      last_call = now;
    }
    bool outstanding = false;
    const auto all = links();
    for (const auto& link : *all) outstanding = outstanding || link->outstanding() != 0;
    if (!outstanding || drivers_.load(std::memory_order_relaxed) > 0 ||
        background_paused_.load(std::memory_order_relaxed) || now - last_call < kQuietBeforePump) {
      // Nothing to do, or a thread is pumping, or the program is busy issuing calls.
      expire_all(now);
      retire_idle_links();
      const std::uint32_t signal = background_signal_.load(std::memory_order_seq_cst);
      if (!stopping_.load(std::memory_order_acquire)) {
        futex_wait_private(background_signal_, signal, outstanding ? kQuietBeforePump : 5ms);
      }
      idle_since = Clock::now();
      continue;
    }
    std::vector<std::shared_ptr<ServerLink>> busy;
    if (pump_all(kNoWait, &busy) > 0) {
      idle_since = now;
      continue;
    }
    expire_all(now);
    if (now - idle_since < kYield) {
      ::sched_yield();
    } else if (busy.size() == 1) {
      busy.front()->pump(now + kSleepSlice);
    } else {
      const std::uint32_t signal = background_signal_.load(std::memory_order_seq_cst);
      if (!sleep_on_links(busy, {&background_signal_, signal, /*process_private=*/true},
                          now + kSleepSlice)) {
        futex_wait_private(background_signal_, signal, kSleepSlice);
      }
      check_peers(busy);
    }
  }
}

void Runtime::check_peers(const std::vector<std::shared_ptr<ServerLink>>& busy) {
  // A pump whose deadline has passed waits for nothing but asks whether the peer lives (a
  // look with kNoWait does not). Needed for servers this program did not launch: no exit
  // notice from the fork server reports their death. Only while napping: it costs a syscall.
  const Deadline past = Clock::now();
  for (const auto& link : busy) link->pump(past);
}

}  // namespace troupe::detail
