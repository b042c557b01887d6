#pragma once
// Distributed agents: handles to agents placed in server processes, their placement options,
// and the launcher of stand-alone servers (after AgentScope's to_dist and
// RpcAgentServerLauncher).
#include <sys/types.h>

#include <chrono>
#include <exception>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "troupe/core/agent.hpp"
#include "troupe/core/agent_server.hpp"
#include "troupe/core/call.hpp"
#include "troupe/core/msg.hpp"

namespace troupe {

namespace detail {
class RemoteAgent;
class ResultState;
class ServerLink;
}  // namespace detail

/// Where and how to place an agent (AgentScope's to_dist arguments).
struct DistOptions {
  /// Where the agent's server is. Local mode reaches servers on this host only.
  std::string host = "localhost";
  /// The server's port; 0 picks a free one when launching. In local mode a port names the
  /// server's rendezvous segment (not a socket), so no privileges are needed; AgentScope's
  /// default of 80 would need root over TCP, hence 0 here.
  int port = 0;
  /// true: start a server for this agent as a child of this program; false: attach to the
  /// server already running at host:port.
  bool launch_server = true;
  /// true: shared memory on this host; false: TCP (not available yet: to_dist refuses it).
  bool local_mode = true;
  /// true: start the server at the agent's first call rather than at to_dist.
  bool lazy_launch = true;
  /// A deadline for every call on this agent (0: none). A call past it fails with Timeout.
  std::chrono::nanoseconds timeout{0};
  /// Worker threads of a launched server (0: max(2, hardware threads)).
  int workers = 0;
};

/// A server as its clients see it: state, agents, management.
class ServerHandle {
 public:
  explicit ServerHandle(std::shared_ptr<detail::ServerLink> link) : link_(std::move(link)) {}
  ServerInfo info() const;
  std::vector<std::string> list_agents() const;
  /// Deletes the named agent: its later calls, from any client, fail with troupe::Refused.
  /// Throws troupe::Refused when the server hosts no agent of that name.
  void delete_agent(const std::string& name) const;
  void delete_all() const;
  pid_t pid() const;
  int port() const;

 private:
  std::shared_ptr<detail::ServerLink> link_;
};

/// A handle to a distributed agent. Copies share the agent; it lives until its last handle is
/// gone or shutdown(), its pending calls completing first. Thread-safe.
class DistAgent {
 public:
  DistAgent() = default;
  explicit DistAgent(std::shared_ptr<detail::RemoteAgent> agent) : agent_(std::move(agent)) {}

  /// Calls reply() with one message (none: an empty Msg). Returns a placeholder at once.
  Msg operator()(const Msg& x = Msg()) const;
  /// Calls reply() with several messages: D({y, z}).
  Msg operator()(std::initializer_list<Msg> xs) const;
  Msg operator()(std::vector<Msg> xs) const;
  Msg call(std::vector<Msg> xs, const CallOptions& options) const;
  /// Sends a message without expecting an answer; ordered with reply() calls.
  ObserveHandle observe(const Msg& x) const;
  /// The same as observe(), under the name AgentBase uses for it (the actor model's "tell").
  ObserveHandle tell(const Msg& x) const { return observe(x); }

  const std::string& name() const;
  const std::string& class_name() const;
  /// The server's port (launches a lazily launched server).
  int port() const;
  /// The server's process id (launches a lazily launched server).
  pid_t server_pid() const;
  ServerHandle server() const;
  /// Releases the agent now, for every handle: pending calls complete, later ones fail.
  void shutdown() const;
  explicit operator bool() const noexcept { return agent_ != nullptr; }

 private:
  const detail::RemoteAgent& agent() const;
  // The one path of every call: `xs` is copied only if the call must wait, and moved from
  // `movable` (when given, it holds the same messages) instead.
  Msg call(std::span<const Msg> xs, std::chrono::nanoseconds timeout,
           std::vector<Msg>* movable) const;
  std::shared_ptr<detail::RemoteAgent> agent_;
};

/// Starts an agent server, as AgentScope's RpcAgentServerLauncher: with an agent_class, that
/// agent is created at launch (its name from agent_kwargs["name"]) and clients attach to it
/// with to_dist({.port = ..., .launch_server = false}); without, the server hosts whatever
/// registered classes its clients ask for.
///
/// A launcher owns the server it launched (its destructor shuts it down), so it moves but does
/// not copy, like std::thread: a moved-from launcher is empty and ends nothing.
class RpcAgentServerLauncher {
 public:
  explicit RpcAgentServerLauncher(std::string agent_class = {}, Kwargs agent_kwargs = {},
                                  std::string host = "localhost", int port = 0,
                                  bool local_mode = true);
  RpcAgentServerLauncher(const RpcAgentServerLauncher&) = delete;
  RpcAgentServerLauncher& operator=(const RpcAgentServerLauncher&) = delete;
  RpcAgentServerLauncher(RpcAgentServerLauncher&& other) noexcept;
  /// Shuts down this launcher's server first, then takes over `other`'s.
  RpcAgentServerLauncher& operator=(RpcAgentServerLauncher&& other) noexcept;
  ~RpcAgentServerLauncher();
  /// Starts the server; throws troupe::Error (port in use, unknown class...).
  void launch();
  /// Blocks until the server process ends.
  void wait_until_terminate();
  /// Stops the server (its agents end with it).
  void shutdown();
  int port() const noexcept { return port_; }
  pid_t pid() const noexcept;
  ServerHandle server() const;

 private:
  std::string agent_class_;
  Kwargs agent_kwargs_;
  std::string host_;
  int port_;
  bool local_mode_;
  std::shared_ptr<detail::ServerLink> link_;
};

}  // namespace troupe
