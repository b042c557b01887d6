#pragma once
// The agent behind DistAgent handles: where it runs (a link to its server, made at to_dist or
// at the first call under lazy_launch), its id on that link, and its lane of ordered calls.
#include <atomic>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "troupe/core/detail/agent_lane.hpp"
#include "troupe/core/detail/server_link.hpp"
#include "troupe/core/dist_agent.hpp"

namespace troupe::detail {

class RemoteAgent : public std::enable_shared_from_this<RemoteAgent> {
 public:
  RemoteAgent(std::string name, std::string class_name, std::string kwargs_json,
              DistOptions options);
  ~RemoteAgent();

  /// Issues a call (Call or Observe) in program order; returns its placeholder at once. The
  /// inputs are copied only if the call must wait (moved from `movable`, if given, instead).
  std::shared_ptr<ResultState> call(std::span<const Msg> inputs, wire::Kind kind,
                                    std::chrono::nanoseconds timeout,
                                    std::vector<Msg>* movable = nullptr);
  /// Starts (or attaches to) the server and binds the agent there, if not done yet.
  /// Throws what prevents it.
  void ensure_placed();
  /// The server link once placed (places it first).
  std::shared_ptr<ServerLink> link();
  /// Releases the agent after its pending calls; later calls fail.
  void shutdown();

  const std::string& name() const noexcept { return name_; }
  const std::string& class_name() const noexcept { return class_name_; }
  /// "agent 'A' (class Echo)": made once, since every call's error text starts with it.
  const std::string& describe() const noexcept { return *description_; }
  const ServerLink::Who& who() const noexcept { return description_; }

 private:
  struct SendWhenReady;    // a call that waits in the lane (remote_agent.cpp)
  void release_on_link();  // sends Release, unbinds from the link
  // Sends a call whose inputs are resolved; its reply settles `result`.
  void send(wire::Kind kind, std::span<const Msg> inputs, const ResultPtr& result);

  const std::string name_;
  const std::string class_name_;
  const ServerLink::Who description_;
  const std::string kwargs_json_;  // what the server re-creates the agent from
  const DistOptions options_;
  std::shared_ptr<AgentLane> lane_;  // set once, at placement (before placed_)

  std::mutex place_mutex_;
  std::shared_ptr<ServerLink> link_;  // set once, under place_mutex_
  std::atomic<ServerLink*> placed_{nullptr};
  std::uint64_t agent_id_ = 0;
  std::exception_ptr place_error_;  // guarded by place_mutex_
  std::atomic<bool> shut_down_{false};
  std::atomic<bool> released_{false};
};

}  // namespace troupe::detail
