#pragma once
// A forked child process that runs a function and cannot outlive its parent.
//
// The child dies with the parent (PR_SET_PDEATHSIG, SIGKILL, re-checked against getppid() in
// case the parent died before the call), leaves through _exit (no atexit handlers, no static
// destructors of the parent's objects) and is killed and reaped by the handle's destructor if
// still running. Fork only from a process with a single thread, or accept what POSIX says of
// forking a multi-threaded one (only async-signal-safe calls until exec); the agent runtime
// will fork from a dedicated single-threaded fork server for that reason.
#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>

#include "troupe/core/function_ref.hpp"

namespace troupe {

class ChildProcess {
 public:
  /// Forks; the child runs `body` and exits with its return value (70 if it throws).
  /// Throws troupe::Error when fork fails.
  static ChildProcess fork(FunctionRef<int()> body);

  ChildProcess(ChildProcess&& other) noexcept : pid_(std::exchange(other.pid_, -1)) {}
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ~ChildProcess();

  pid_t pid() const noexcept { return pid_; }
  /// Sends `signal` (no-op once reaped).
  void kill(int signal) const noexcept;
  /// Waits for the child to end and returns its wait status (see describe_exit).
  int wait();
  /// The wait status if the child has ended, without blocking.
  std::optional<int> try_wait();

 private:
  explicit ChildProcess(pid_t pid) noexcept : pid_(pid) {}
  pid_t pid_ = -1;
};

/// "exited with status 3", "killed by signal 9 (Killed)".
std::string describe_exit(int wait_status);

}  // namespace troupe
