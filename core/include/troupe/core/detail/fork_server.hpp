#pragma once
// The fork server: a single-threaded process forked by troupe::init before any thread exists,
// which forks every agent server on the main process's behalf. Forking a multi-threaded process
// (the dispatcher's and TBB's threads) would copy locks held by other threads into the child;
// forking from here never does.
//
// It relays each child's exit status to the main process (so AgentDied can name the signal),
// and owns clean-up: when the main process ends (normally, by exception, by a signal, or
// SIGKILL: PR_SET_PDEATHSIG tells it), it terminates the children (SIGTERM, then SIGKILL) and,
// once the main process is gone, removes the shared-memory segments dead processes left.
//
// Protocol: JSON messages on a SOCK_SEQPACKET socket pair.
//   main -> fork server   {"op":"spawn","id":N, ...request...}
//   fork server -> main   {"op":"spawned","id":N,"pid":P}  {"op":"exited","pid":P,"status":S}
#include <sys/types.h>

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

namespace troupe::detail {

class ForkServer {
 public:
  /// What a spawned child runs (in the child): returns its exit code.
  using ChildMain = std::function<int(const nlohmann::json& request)>;
  /// Called on the main process's reader thread when a spawned child ends.
  using ExitHandler = std::function<void(pid_t pid, int wait_status)>;
  /// Called on the reader thread when a child is spawned, before spawn() returns and before
  /// any exit of that child is reported: a reused pid's old exit status can be forgotten then.
  using SpawnHandler = std::function<void(pid_t pid)>;
  /// Called on the reader thread when the fork server is gone: no exit will be reported after.
  using GoneHandler = std::function<void()>;
  /// Removes what dead processes left behind (the transport's segments).
  using Cleanup = std::function<void()>;

  /// Forks the fork server. Call while this process has a single thread.
  static std::unique_ptr<ForkServer> start(ChildMain child_main, Cleanup cleanup);
  ~ForkServer();

  /// Spawns a child running child_main(request); returns its pid. Thread-safe.
  /// Throws troupe::Error if the fork server is gone or fork fails.
  pid_t spawn(nlohmann::json request);
  void set_exit_handler(ExitHandler handler);
  void set_spawn_handler(SpawnHandler handler);
  void set_gone_handler(GoneHandler handler);
  pid_t pid() const noexcept { return pid_; }

 private:
  ForkServer(int socket, pid_t pid);
  void read_loop();

  int socket_;
  pid_t pid_;
  std::thread reader_;
  std::mutex mutex_;
  std::condition_variable replied_;
  std::map<std::uint64_t, nlohmann::json> replies_;  // guarded by mutex_
  std::uint64_t next_id_ = 1;                        // guarded by mutex_
  bool gone_ = false;                                // guarded by mutex_
  ExitHandler exit_handler_;                         // guarded by mutex_
  SpawnHandler spawn_handler_;                       // guarded by mutex_
  GoneHandler gone_handler_;                         // guarded by mutex_
};

}  // namespace troupe::detail
