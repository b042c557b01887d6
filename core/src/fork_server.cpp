#include "troupe/core/detail/fork_server.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "troupe/core/error.hpp"

namespace troupe::detail {
namespace {

constexpr std::size_t kMaxMessage = 1 << 16;

bool send_json(int socket, const nlohmann::json& j) {
  const std::string text = j.dump();
  return ::send(socket, text.data(), text.size(), MSG_NOSIGNAL) ==
         static_cast<ssize_t>(text.size());
}

// Receives one message; nullopt on end of stream or error.
std::optional<nlohmann::json> receive_json(int socket) {
  std::string buffer(kMaxMessage, '\0');
  ssize_t n;
  do {
    n = ::recv(socket, buffer.data(), buffer.size(), 0);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return std::nullopt;
  buffer.resize(static_cast<std::size_t>(n));
  // in_place: nlohmann::json converts implicitly to almost anything, std::optional included.
  try {
    return std::optional<nlohmann::json>(std::in_place, nlohmann::json::parse(buffer));
  } catch (const std::exception&) {
    return std::optional<nlohmann::json>(std::in_place, nlohmann::json::object());
  }
}

sigset_t handled_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGCHLD, SIGTERM}) sigaddset(&set, s);
  return set;
}

// The terminal's signals (Ctrl-C, Ctrl-\, hang-up) reach the whole foreground process group,
// which the fork server leaves (see serve()); should one reach it or an agent server anyway
// (a signal to the session, a job started in the fork server's group), they ignore it and
// follow their program instead. If the
// program dies of the signal, they end with it (PDEATHSIG, pidfd); if it catches the signal
// and carries on, its agents carry on too. A handler that does nothing rather than SIG_IGN:
// handlers survive fork (the agent servers inherit this) but not exec, so a program an agent
// starts gets the default dispositions back, where SIG_IGN would make it deaf to Ctrl-C.
// SA_RESTART: interrupted system calls resume (the waits in Troupe re-check anyway).
void ignore_terminal_signals() {
  struct sigaction action {};
  action.sa_handler = [](int) {};
  action.sa_flags = SA_RESTART;
  sigemptyset(&action.sa_mask);
  for (int s : {SIGINT, SIGQUIT, SIGHUP}) ::sigaction(s, &action, nullptr);
}

// The fork server's life: serve spawn requests, relay exits, clean up at the end.
[[noreturn]] void serve(int socket, pid_t main_pid, const ForkServer::ChildMain& child_main,
                        const ForkServer::Cleanup& cleanup) {
  ::prctl(PR_SET_NAME, "troupe-fork");
  // A process group of its own, which the agent servers inherit: a signal to the program's
  // group (Ctrl-C, `timeout`, `kill -TERM -<pgid>`) is the program's to handle, and the agents
  // follow the program (they end when it ends), not the signal. A SIGTERM sent to a server
  // itself still stops it (a launcher's shutdown does that).
  ::setpgid(0, 0);
  ignore_terminal_signals();
  // A background group's read from the terminal, or write with `stty tostop`, stops the
  // process (SIGTTIN, SIGTTOU): a stopped server is not dead, so its calls would hang. Ignored,
  // the read fails with EIO and the write proceeds. SIG_IGN, not a handler as above, although
  // it survives exec (a program an agent starts inherits it): with a handler and SA_RESTART,
  // such a read would be restarted for ever.
  ::signal(SIGTTIN, SIG_IGN);
  ::signal(SIGTTOU, SIG_IGN);
  // Children's exits must reach the signalfd below: a program that ignored SIGCHLD (or set
  // SA_NOCLDWAIT) before init() would have the kernel reap them unseen, and its waits for a
  // server's end would never return.
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);
  ::sigaction(SIGCHLD, &default_action, nullptr);
  sigset_t signals = handled_signals();
  ::sigprocmask(SIG_BLOCK, &signals, nullptr);
  const int signal_fd = ::signalfd(-1, &signals, SFD_CLOEXEC);
  // Die with the main process: it is single-threaded, so its forking thread is the process.
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  const int main_pidfd = static_cast<int>(::syscall(SYS_pidfd_open, main_pid, 0));
  std::set<pid_t> children;
  bool ending = ::getppid() != main_pid;

  auto reap = [&](int flags) {
    for (;;) {
      int status = 0;
      pid_t pid = ::waitpid(-1, &status, flags);
      if (pid <= 0) return;
      children.erase(pid);
      send_json(socket, {{"op", "exited"}, {"pid", pid}, {"status", status}});
    }
  };

  while (!ending) {
    pollfd fds[2] = {{socket, POLLIN, 0}, {signal_fd, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo info{};
      while (::read(signal_fd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        if (info.ssi_signo == SIGCHLD) {
          reap(WNOHANG);
          cleanup();  // a child killed hard leaves its segments: remove them now
        } else {
          ending = true;
        }
        if (::poll(fds + 1, 1, 0) <= 0) break;
      }
    }
    if (!ending && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
      auto request = receive_json(socket);
      if (!request) {
        ending = true;  // the main process closed its end: it is shutting down
        break;
      }
      const pid_t fork_server = ::getpid();
      const pid_t pid = ::fork();
      if (pid == 0) {
        // A clean mask: nothing the program had blocked when it called init() stays blocked.
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        // Die with the fork server (single-threaded: its forking thread lives as long as it).
        ::prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (::getppid() != fork_server) ::_exit(0);
        // Nothing of the main process's descriptors is the child's business.
        ::syscall(SYS_close_range, 3U, ~0U, 0U);
        int code = 70;
        try {
          code = child_main(*request);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "troupe server %d: %s\n", ::getpid(), e.what());
        } catch (...) {
          std::fprintf(stderr, "troupe server %d: unknown exception\n", ::getpid());
        }
        ::_exit(code);
      }
      nlohmann::json reply{{"op", "spawned"}, {"id", request->value("id", 0)}};
      if (pid < 0) {
        reply["error"] = std::string("fork(): ") + std::strerror(errno);
      } else {
        children.insert(pid);
        reply["pid"] = pid;
      }
      send_json(socket, reply);
    }
  }

  // Clean-up: children first (SIGTERM lets them remove their segments), then, once the main
  // process is gone, whatever dead processes left in /dev/shm.
  for (pid_t child : children) ::kill(child, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (!children.empty() && std::chrono::steady_clock::now() < deadline) {
    reap(WNOHANG);
    if (!children.empty()) ::usleep(2000);
  }
  for (pid_t child : children) ::kill(child, SIGKILL);
  reap(0);
  if (main_pidfd >= 0) {
    pollfd main_gone{main_pidfd, POLLIN, 0};
    ::poll(&main_gone, 1, 10'000);
  }
  cleanup();
  ::_exit(0);
}

}  // namespace

std::unique_ptr<ForkServer> ForkServer::start(ChildMain child_main, Cleanup cleanup) {
  int sockets[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sockets) != 0) {
    throw Error(std::string("socketpair(AF_UNIX, SOCK_SEQPACKET): ") + std::strerror(errno));
  }
  const pid_t main_pid = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw Error(std::string("fork() of the fork server: ") + std::strerror(errno));
  if (pid == 0) {
    ::close(sockets[0]);
    try {
      serve(sockets[1], main_pid, child_main, cleanup);
    } catch (...) {
      // Never back into the program's own code (a main that catches exceptions would carry on
      // in this process): the fork server ends here.
    }
    ::_exit(70);
  }
  ::close(sockets[1]);
  return std::unique_ptr<ForkServer>(new ForkServer(sockets[0], pid));
}

ForkServer::ForkServer(int socket, pid_t pid) : socket_(socket), pid_(pid) {
  reader_ = std::thread([this] { read_loop(); });
}

ForkServer::~ForkServer() {
  // The fork server sees end-of-stream, ends the children, and waits for this process to exit
  // before it removes leftovers; it is not waited for here.
  ::shutdown(socket_, SHUT_RDWR);
  if (reader_.joinable()) reader_.join();
  ::close(socket_);
}

void ForkServer::set_exit_handler(ExitHandler handler) {
  std::lock_guard lock(mutex_);
  exit_handler_ = std::move(handler);
}

void ForkServer::set_spawn_handler(SpawnHandler handler) {
  std::lock_guard lock(mutex_);
  spawn_handler_ = std::move(handler);
}

void ForkServer::set_gone_handler(GoneHandler handler) {
  std::unique_lock lock(mutex_);
  if (gone_) {  // gone before anyone listened: tell now
    lock.unlock();
    handler();
    return;
  }
  gone_handler_ = std::move(handler);
}

pid_t ForkServer::spawn(nlohmann::json request) {
  std::unique_lock lock(mutex_);
  if (gone_) throw Error("the fork server is gone: no agent server can be started");
  const std::uint64_t id = next_id_++;
  request["op"] = "spawn";
  request["id"] = id;
  if (request.dump().size() > kMaxMessage) throw Error("spawn request too large");
  if (!send_json(socket_, request)) {
    throw Error(std::string("sending a spawn request to the fork server: ") + std::strerror(errno));
  }
  replied_.wait(lock, [&] { return gone_ || replies_.count(id) != 0; });
  if (replies_.count(id) == 0) throw Error("the fork server ended before starting the server");
  nlohmann::json reply = std::move(replies_[id]);
  replies_.erase(id);
  if (reply.contains("error")) throw Error(reply["error"].get<std::string>());
  return reply["pid"].get<pid_t>();
}

void ForkServer::read_loop() {
  while (auto message = receive_json(socket_)) {
    const std::string op = message->value("op", "");
    if (op == "spawned") {
      // The fork server is single-threaded: it reports a spawn before that child's exit.
      SpawnHandler handler;
      {
        std::lock_guard lock(mutex_);
        handler = spawn_handler_;
      }
      if (const auto pid = message->value("pid", pid_t{0}); handler && pid > 0) handler(pid);
      const auto id = message->value("id", std::uint64_t{0});
      std::lock_guard lock(mutex_);
      replies_[id] = std::move(*message);
      replied_.notify_all();
    } else if (op == "exited") {
      ExitHandler handler;
      {
        std::lock_guard lock(mutex_);
        handler = exit_handler_;
      }
      if (handler) handler(message->value("pid", pid_t{0}), message->value("status", 0));
    }
  }
  GoneHandler handler;
  {
    std::lock_guard lock(mutex_);
    gone_ = true;
    replied_.notify_all();
    handler = gone_handler_;
  }
  if (handler) handler();
}

}  // namespace troupe::detail
