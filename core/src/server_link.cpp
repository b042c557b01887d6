#include "troupe/core/detail/server_link.hpp"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <optional>
#include <vector>

#include "troupe/core/detail/agent_lane.hpp"
#include "troupe/core/error.hpp"
#include "troupe/core/wire.hpp"

namespace troupe::detail {
namespace {

// The failure of type E with the text text() makes, or the std::bad_alloc that making it threw:
// a call taken out of pending_ must be settled, even when memory has run out.
template <class E, class Text>
std::exception_ptr failure(Text text) noexcept {
  try {
    return std::make_exception_ptr(E(text()));
  } catch (...) {
    return std::current_exception();
  }
}

constexpr std::chrono::nanoseconds kSendPatience = std::chrono::seconds(30);
constexpr std::size_t kPumpBatch = 256;
/// Entries of the deadline heap a link keeps room for once no timed call is in flight.
constexpr std::size_t kKeptDeadlines = 4096;
/// How long a link whose channel reports the peer gone waits for the fork server's exit status
/// before failing its calls without it.
constexpr auto kExitStatusGrace = std::chrono::milliseconds(50);

FrameBuilder& request_builder() {
  thread_local FrameBuilder builder;
  return builder;
}

}  // namespace

ServerLink::ServerLink(std::unique_ptr<Channel> channel, pid_t pid, bool launched,
                       std::string where)
    : channel_(std::move(channel)), launched_(launched), where_(std::move(where)), pid_(pid) {
  if (pid != 0) channel_->expect_peer(pid);
}

ServerLink::~ServerLink() { close(); }

void ServerLink::close() noexcept { channel_->close(); }

std::shared_ptr<AgentLane> ServerLink::lane_for(const std::string& name, const Who& who) {
  std::shared_ptr<AgentLane> lane;
  {
    std::lock_guard lock(lanes_mutex_);
    if (lanes_.size() >= lanes_sweep_at_) {
      std::erase_if(lanes_, [](const auto& entry) { return entry.second.lane.expired(); });
      lanes_sweep_at_ = std::max<std::size_t>(64, 2 * lanes_.size());
    }
    PlacedLane& placed = lanes_[name];
    lane = placed.lane.lock();
    if (lane) return lane;
    lane = std::make_shared<AgentLane>();
    placed = {lane, who};
  }
  // mark_dead() sets dead_ before it looks at the lanes: it found this one, or this sees it.
  if (dead()) fail_waiting_calls(*lane, who);
  return lane;
}

void ServerLink::fail_waiting_calls(AgentLane& lane, const Who& who) {
  std::string death;
  {
    std::lock_guard lock(mutex_);
    death = death_;
  }
  lane.fail_unstarted(std::make_exception_ptr(AgentDied(*who + ": " + death)));
}

void ServerLink::request(wire::Kind kind, std::uint64_t agent_id, std::span<const Msg> msgs,
                         const ResultPtr& state, const Who& who, bool flush) {
  std::uint64_t call_id;
  std::optional<std::string> death;
  {
    std::lock_guard lock(mutex_);
    call_id = next_call_id_++;
    if (dead_.load(std::memory_order_relaxed)) {
      death = death_;
    } else if (state) {
      pending_.insert(call_id, Pending{state, who});
      if (state->deadline != Deadline::max()) {
        try {
          deadlines_.emplace_back(state->deadline, call_id);
        } catch (...) {
          pending_.take(call_id);
          throw;
        }
        std::push_heap(deadlines_.begin(), deadlines_.end(), std::greater<>());
        ++timed_;
      }
      count_outstanding();
    }
  }
  // States settle outside mutex_: a continuation may drop the last handle of an agent on
  // this link, whose destructor sends a Release through here.
  if (death) {
    if (state) state->fail(std::make_exception_ptr(AgentDied(*who + ": " + *death)));
    return;
  }
  std::error_code ec;
  try {
    const FrameBytes frame = request_builder().build(
        {.kind = kind, .call_id = call_id, .agent_id = agent_id, .messages = msgs});
    // A full ring waits (backpressure), but not without bound: a server that is alive but
    // stuck must not hold this thread (a TBB worker, a destructor) for good.
    const SendLimit limit = state && state->deadline != Deadline::max() ? SendLimit(state->deadline)
                                                                        : SendLimit(kSendPatience);
    ec = channel_->send(frame, limit, flush);
  } catch (...) {
    // Out of memory, most likely: the call fails with it rather than waiting for ever.
    if (ResultPtr failed = take_pending(call_id).state) failed->fail(std::current_exception());
    return;
  }
  if (!ec) return;
  if ((ec == Errc::kPeerDead || ec == Errc::kClosed) && launched_ && state) {
    // A server this program launched: the fork server's exit notice, which names the status,
    // follows within moments, and mark_dead() fails this call with it; without it, the grace
    // runs out (pump(), expire()) and mark_dead() fails it all the same. Not waited for here:
    // this thread may hold the agent's lane.
    note_peer_gone();
    return;
  }
  ResultPtr failed = take_pending(call_id).state;
  if (!failed) return;
  std::string text = *who + ": sending to its server (" + where_ + "): " + ec.message();
  if (ec == Errc::kPeerDead || ec == Errc::kClosed) {
    // A server that failed to start says why before it closes: report that, not the close.
    read_last_words();
    std::lock_guard lock(mutex_);
    if (dead_.load(std::memory_order_acquire) && !death_.empty()) text = *who + ": " + death_;
  }
  if (ec == Errc::kPeerDead || ec == Errc::kClosed) {
    failed->fail(std::make_exception_ptr(AgentDied(text)));
  } else if (ec == Errc::kTimeout) {
    failed->fail(std::make_exception_ptr(Timeout(text)));
  } else {
    failed->fail(std::make_exception_ptr(Error(text)));
  }
}

ServerLink::Pending ServerLink::take_pending(std::uint64_t call_id) {
  std::lock_guard lock(mutex_);
  std::optional<Pending> call = pending_.take(call_id);
  if (!call) return {};
  if (call->state->deadline != Deadline::max()) {
    --timed_;
    // The call's entry in deadlines_ stays until it comes due, or the entries of answered
    // calls outnumber the timed calls in flight (then they go, in one pass, no allocation),
    // or no timed call is left in flight (then all go).
    if (timed_ == 0) {
      drop_stale_deadlines();
    } else if (deadlines_.size() > 2 * timed_ + 64) {
      std::erase_if(deadlines_,
                    [this](const auto& entry) { return !pending_.contains(entry.second); });
      std::make_heap(deadlines_.begin(), deadlines_.end(), std::greater<>());
    }
  }
  count_outstanding();
  return std::move(*call);
}

std::size_t ServerLink::pump(Deadline deadline) {
  if (dead()) return 0;
  std::error_code ec;
  std::error_code malformed;
  const std::size_t n = channel_->poll(
      [this, &malformed](FrameBytes frame) {
        if (!malformed) (void)on_frame(frame, malformed);  // after a bad frame, nothing more
      },
      kPumpBatch, deadline, ec);
  if (malformed) {
    // The frames of a server that sent one it should not have can no longer be trusted to
    // answer the calls it owes: they fail now, clearly, rather than wait for good.
    mark_dead("its server sent a frame that fails verification (" + malformed.message() + ")");
    return n;
  }
  if (!ec) return n;  // the common case, without three error-code comparisons
  if (ec == Errc::kPeerDead || ec == Errc::kClosed || ec == Errc::kMalformedFrame) {
    if (!launched_ || ec == Errc::kMalformedFrame) {
      mark_dead(ec == Errc::kMalformedFrame ? "its server broke the channel protocol"
                                            : "lost its server (" + where_ + "): " + ec.message());
    } else if (note_peer_gone()) {
      // The first news: the fork server's exit notice, which names the status, gets a moment.
    } else if (gone_for_long(Clock::now())) {
      mark_dead("its server process " + std::to_string(pid()) + " is gone");
    }
  }
  return n;
}

bool ServerLink::note_peer_gone() noexcept {
  if (peer_gone_.exchange(true)) return false;
  // The fork server's exit notice names the status: give it a moment (kExitStatusGrace).
  peer_gone_at_.store(Clock::now().time_since_epoch().count(), std::memory_order_release);
  return true;
}

bool ServerLink::gone_for_long(Clock::time_point now) const noexcept {
  const Clock::time_point since{Clock::duration{peer_gone_at_.load(std::memory_order_acquire)}};
  return since.time_since_epoch().count() != 0 && now - since > kExitStatusGrace;
}

bool ServerLink::on_frame(FrameBytes frame, std::error_code& ec) {
  const wire::Envelope* env = verify_frame(frame, ec);
  if (env == nullptr) {
    std::fprintf(stderr, "troupe: a frame from %s fails verification: %s\n", where_.c_str(),
                 ec.message().c_str());
    return false;
  }
  const wire::Kind kind = env->kind();
  if (kind == wire::Kind::Hello) {
    on_hello(*env);
    return true;
  }
  if (kind == wire::Kind::Error && env->call_id() == 0) {  // the server could not start
    const std::string why = env->error() ? env->error()->str() : "unknown reason";
    fail_start(why, "its server failed to start: " + why);
    return true;
  }
  if (kind != wire::Kind::Result && kind != wire::Kind::Error && kind != wire::Kind::Refused &&
      kind != wire::Kind::Pong) {
    return true;
  }
  Pending call = take_pending(env->call_id());
  if (!call.state) return true;  // timed out earlier: the late reply is dropped
  if (kind == wire::Kind::Error) {
    call.state->fail(std::make_exception_ptr(
        RemoteError(env->error() ? env->error()->str() : *call.who + " failed")));
  } else if (kind == wire::Kind::Refused) {
    call.state->fail(std::make_exception_ptr(
        Refused(env->error() ? env->error()->str() : *call.who + " was refused")));
  } else if (env->messages() && env->messages()->size() > 0) {
    call.state->resolve(from_wire(*env->messages()->Get(0)));
  } else {
    call.state->resolve(Msg());
  }
  return true;
}

void ServerLink::expire(Clock::time_point now) {
  if (peer_gone_.load(std::memory_order_acquire) && !dead() && gone_for_long(now)) {
    mark_dead("its server process " + std::to_string(pid()) + " is gone");
  }
  std::vector<Pending> expired;
  {
    std::lock_guard lock(mutex_);
    try {
      while (!deadlines_.empty() && deadlines_.front().first <= now) {
        // Room first: once a call leaves pending_, nothing may fail before it is failed.
        if (expired.size() == expired.capacity()) expired.reserve(2 * expired.size() + 8);
        std::pop_heap(deadlines_.begin(), deadlines_.end(), std::greater<>());
        const std::uint64_t call_id = deadlines_.back().second;
        deadlines_.pop_back();
        if (std::optional<Pending> call = pending_.take(call_id)) {  // else answered already
          expired.push_back(std::move(*call));
          --timed_;
        }
      }
      if (timed_ == 0) drop_stale_deadlines();
    } catch (...) {
      // Out of memory: the calls taken so far fail below; the next sweep takes the rest.
    }
    count_outstanding();
  }
  for (auto& call : expired) {
    call.state->fail(failure<Timeout>([&] { return *call.who + ": call timed out"; }));
  }
}

void ServerLink::drop_stale_deadlines() noexcept {
  // No timed call in flight: every entry left is an answered call's. A burst of timed calls
  // may have grown the heap large; a link then idle or untimed gives that memory back.
  if (deadlines_.capacity() > kKeptDeadlines) {
    std::vector<std::pair<Deadline, std::uint64_t>>().swap(deadlines_);
  } else {
    deadlines_.clear();
  }
}

void ServerLink::mark_dead(const std::string& why) {
  std::vector<Pending> failed;
  {
    std::lock_guard lock(mutex_);  // dead_ changes only under it
    if (dead_.load(std::memory_order_relaxed)) return;
    failed = pending_.take_all();  // first: if memory runs out, nothing has changed
    drop_stale_deadlines();
    timed_ = 0;
    dead_.store(true, std::memory_order_release);
    count_outstanding();
    try {
      death_ = why;
    } catch (...) {
      // Out of memory: later calls fail with an empty reason rather than not at all.
    }
  }
  for (auto& call : failed) {
    call.state->fail(failure<AgentDied>([&] { return *call.who + ": " + why; }));
  }
  channel_->close();  // nothing more will travel on it
  // Calls not sent yet fail too: those waiting for inputs that may never come, and those
  // queued behind them (and the lanes refuse later ones at once).
  std::vector<std::pair<std::shared_ptr<AgentLane>, Who>> lanes;
  {
    std::lock_guard lock(lanes_mutex_);
    for (const auto& [name, placed] : lanes_) {
      if (auto lane = placed.lane.lock()) lanes.emplace_back(std::move(lane), placed.who);
    }
  }
  for (const auto& [lane, who] : lanes) fail_waiting_calls(*lane, who);
}

void ServerLink::on_hello(const wire::Envelope& env) {
  // Read whole before anything is stored: a Hello that is refused changes nothing.
  bool readable = false;
  pid_t pid = 0;
  int port = 0;
  int protocol = 0;  // 0: not stated (a server older than the field)
  if (env.messages() && env.messages()->size() > 0) {
    try {
      const auto hello = nlohmann::json::parse(from_wire(*env.messages()->Get(0)).metadata());
      pid = hello.at("pid").get<pid_t>();
      port = hello.at("port").get<int>();
      protocol = hello.value("protocol", 0);
      readable = true;
    } catch (const std::exception&) {
    }
  }
  const std::string ours = std::to_string(kProtocolVersion);
  std::string refusal;
  if (!readable) {
    refusal = "sent a first frame this program cannot read";
  } else if (protocol == 0) {
    refusal = "does not state its Troupe protocol (an older build); this program speaks " + ours;
  } else if (protocol != kProtocolVersion) {
    refusal = "speaks Troupe protocol " + std::to_string(protocol) + ", this program " + ours;
  }
  if (!refusal.empty()) {
    const std::string why =
        "the server (" + where_ + ") " + refusal + ": run the same Troupe version on both sides";
    fail_start(why, why);
    return;
  }
  pid_.store(pid, std::memory_order_release);
  port_.store(port, std::memory_order_release);
  if (!launched_) channel_->expect_peer(pid);
  hello_.store(1, std::memory_order_release);
}

void ServerLink::fail_start(const std::string& why, const std::string& death) {
  {
    std::lock_guard lock(mutex_);
    startup_error_ = why;
  }
  hello_.store(2, std::memory_order_release);
  mark_dead(death);
}

void ServerLink::read_last_words() {
  // Another thread may be delivering right now (pump() then returns 0): give it a moment.
  const auto until = Clock::now() + std::chrono::milliseconds(50);
  while (hello_.load(std::memory_order_acquire) == 0 && !dead() && Clock::now() < until) {
    pump(Clock::now() + std::chrono::milliseconds(1));
  }
  pump(kNoWait);
}

void ServerLink::on_server_exit(const std::string& why) {
  read_last_words();
  mark_dead(why);
}

void ServerLink::wait_ready(Deadline deadline) {
  while (hello_.load(std::memory_order_acquire) == 0) {
    if (dead()) break;
    if (Clock::now() >= deadline) {
      throw Timeout("no answer from the server (" + where_ + ") in time");
    }
    pump(std::min(deadline, Clock::now() + std::chrono::milliseconds(5)));
    expire(Clock::now());
  }
  if (hello_.load(std::memory_order_acquire) == 1) return;
  std::lock_guard lock(mutex_);
  if (!startup_error_.empty()) throw Error(startup_error_);
  throw AgentDied("the server (" + where_ + "): " + death_);
}

}  // namespace troupe::detail
