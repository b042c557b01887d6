#pragma once
// A client's link to one server: one channel, the calls sent on it and not yet answered, and
// the agents bound through it. Requests may be sent from any thread; replies are delivered by
// whichever thread pumps (a thread waiting for a result, or the runtime's background thread).
//
// A link dies when its server process ends (the fork server names the exit status) or the
// channel reports the peer gone: every pending and later call then fails with AgentDied.
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "troupe/core/channel.hpp"
#include "troupe/core/detail/call_map.hpp"
#include "troupe/core/detail/result_state.hpp"
#include "troupe/core/wire.hpp"

namespace troupe::detail {

class AgentLane;

class ServerLink : public std::enable_shared_from_this<ServerLink> {
 public:
  /// Whom a request is for, as error texts name it ("agent 'A' (class Echo)"): shared, so that
  /// a call costs a reference count rather than a copy of the text.
  using Who = std::shared_ptr<const std::string>;

  /// `pid`: the server's process when this program launched it (0: learn it from Hello).
  ServerLink(std::unique_ptr<Channel> channel, pid_t pid, bool launched, std::string where);
  ~ServerLink();

  /// Sends a request of `kind` for `agent_id` (0 for the server itself). `state`, if any, is
  /// settled by the reply: the first message of a Result (or an empty Msg), a RemoteError for
  /// an Error and a Refused for a Refused (named after `who` when the reply has no text),
  /// AgentDied if the link dies, Timeout past state->deadline.
  void request(wire::Kind kind, std::uint64_t agent_id, std::span<const Msg> msgs,
               const ResultPtr& state, const Who& who, bool flush = true);
  std::uint64_t new_agent_id() noexcept {
    return next_agent_id_.fetch_add(1, std::memory_order_relaxed);
  }

  /// Delivers replies that arrived, waiting until `deadline` for the first. Returns how many
  /// frames it handled (0 also when another thread is delivering).
  std::size_t pump(Deadline deadline);
  /// Fails calls whose deadline passed.
  void expire(Clock::time_point now);

  /// Waits for the server's Hello (its pid, port and protocol version); throws troupe::Error
  /// with the server's start-up failure or the reason its Hello was refused (another protocol
  /// version), or AgentDied/Timeout.
  void wait_ready(Deadline deadline);
  /// Marks the link dead: every pending and later call fails with AgentDied(who + ": " + why).
  void mark_dead(const std::string& why);
  bool dead() const noexcept { return dead_.load(std::memory_order_acquire); }
  /// The fork server reports the server process ended: mark_dead(why), after reading what the
  /// server sent first (a start-up failure explains more than its exit status).
  void on_server_exit(const std::string& why);

  pid_t pid() const noexcept { return pid_.load(std::memory_order_acquire); }
  int port() const noexcept { return port_.load(std::memory_order_acquire); }
  bool launched() const noexcept { return launched_; }
  const std::string& where() const noexcept { return where_; }
  std::size_t outstanding() const noexcept { return outstanding_.load(std::memory_order_acquire); }

  /// Agents bound through this link; a link with none and nothing outstanding can be closed.
  void bind_agent() noexcept { bound_.fetch_add(1, std::memory_order_relaxed); }
  void unbind_agent() noexcept { bound_.fetch_sub(1, std::memory_order_acq_rel); }
  bool idle() const noexcept {
    return bound_.load(std::memory_order_acquire) == 0 && outstanding() == 0;
  }
  void close() noexcept;
  Channel& channel() noexcept { return *channel_; }

  /// The lane of the agent `name` on this server, shared by every handle placed through this
  /// link under that name (launched with it, joined or attached by name): one agent, one
  /// program order, and one channel, whose frames the server reads in order. When the link
  /// dies, the calls waiting in its lanes fail with AgentDied (named after `who`) too.
  std::shared_ptr<AgentLane> lane_for(const std::string& name, const Who& who);

 private:
  struct Pending {
    ResultPtr state;
    Who who;
  };
  // Handles one frame from the server. False, with `ec` set, when the frame fails
  // verification: the server broke the protocol, and pump() gives the link up.
  bool on_frame(FrameBytes frame, std::error_code& ec);
  // Publishes pending_.size() (mutex_ held): a plain store, not a read-modify-write per call.
  // The count drops when a call leaves pending_, just before its state settles.
  void count_outstanding() noexcept {
    outstanding_.store(pending_.size(), std::memory_order_release);
  }
  bool gone_for_long(Clock::time_point now) const noexcept;
  // The channel says the peer is gone: starts the grace for its exit notice. True the first
  // time.
  bool note_peer_gone() noexcept;
  // Takes call `call_id` out of pending_ (its state null if it is not there: settled already).
  Pending take_pending(std::uint64_t call_id);
  // Empties deadlines_ when no timed call is in flight (timed_ == 0: every entry left is an
  // answered call's), giving back a large buffer. mutex_ held.
  void drop_stale_deadlines() noexcept;
  // Delivers what the server sent before it went (a start-up error, its Hello).
  void read_last_words();
  // Takes the server's pid and port from its Hello, or refuses the server (fail_start()) when
  // the Hello cannot be read or states another protocol version.
  void on_hello(const wire::Envelope& env);
  // The server will not serve this link: wait_ready() throws Error(why); calls fail with
  // AgentDied(death).
  void fail_start(const std::string& why, const std::string& death);
  // Fails the calls waiting in `lane` (for inputs, or behind such calls): the link is dead.
  void fail_waiting_calls(AgentLane& lane, const Who& who);

  std::unique_ptr<Channel> channel_;
  const bool launched_;
  const std::string where_;  // "local port 23456" or "server pid 123": for messages
  std::atomic<pid_t> pid_;
  std::atomic<int> port_{0};
  std::atomic<int> hello_{0};  // 0 waiting, 1 ready, 2 failed to start
  std::atomic<bool> dead_{false};
  std::atomic<bool> peer_gone_{false};       // the channel said so; the exit status may follow
  std::atomic<Clock::rep> peer_gone_at_{0};  // Clock ticks

  mutable std::mutex mutex_;  // guards the members below
  CallMap<Pending> pending_;
  std::string death_;
  std::string startup_error_;
  // The deadlines of the pending calls that have one, as a min-heap of (deadline, call id):
  // expire() looks at the due ones only, however many calls are in flight. An answered call's
  // entry stays until it comes due (and finds nothing), a compaction drops it, or the last
  // timed call in flight leaves: a timed call costs a heap push, no allocation once the vector
  // has grown (until the link, with no timed call left, gives back a buffer past 4096 entries).
  std::vector<std::pair<Deadline, std::uint64_t>> deadlines_;
  std::size_t timed_ = 0;  // pending calls that have a deadline

  std::atomic<std::size_t> outstanding_{0};
  std::uint64_t next_call_id_ = 1;  // guarded by mutex_
  std::atomic<std::uint64_t> next_agent_id_{1};
  std::atomic<int> bound_{0};

  std::mutex lanes_mutex_;  // apart from mutex_: taken only when an agent is placed
  struct PlacedLane {
    std::weak_ptr<AgentLane> lane;
    Who who;
  };
  std::unordered_map<std::string, PlacedLane> lanes_;  // guarded by lanes_mutex_
  std::size_t lanes_sweep_at_ = 64;  // guarded by lanes_mutex_; expired entries go when reached
};

}  // namespace troupe::detail
