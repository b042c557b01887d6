#pragma once
// The client side of Troupe in one process: the transport, the fork server, the links to
// servers, and the pumping of replies.
//
// Replies are delivered by the thread that waits for one (drive(): it polls the reply rings
// itself: spin, then yield, then sleep on the ring's doorbell), which on this VM costs a
// fraction of a microsecond where a wake-up by another thread costs tens. A background thread
// pumps only when nobody waits and the program has issued no call for a millisecond, so that
// continuations (calls waiting on results) progress while the program does something else.
#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <vector>

#include "troupe/core/detail/fork_server.hpp"
#include "troupe/core/detail/result_state.hpp"
#include "troupe/core/detail/server_link.hpp"
#include "troupe/core/dist_agent.hpp"
#include "troupe/core/transport.hpp"

namespace troupe::detail {

class Runtime final : public ProgressDriver {
 public:
  /// Starts the runtime with its local transport: forks the fork server (so: call it before
  /// any thread exists). Throws troupe::Error when called twice.
  static void initialise(std::unique_ptr<Transport> local);
  /// The runtime, or nullptr before initialise().
  static Runtime* get() noexcept;
  /// The runtime; throws troupe::Error naming `what` if troupe::init was not called.
  static Runtime& require(const char* what);

  Transport& local() noexcept { return *local_; }
  pid_t fork_server_pid() const noexcept { return fork_server_ ? fork_server_->pid() : 0; }
  /// Starts a server through the fork server; `pinned` (if not null) is {class, name, kwargs}
  /// of an agent to create at launch. Returns a bound link.
  std::shared_ptr<ServerLink> launch(const DistOptions& options, const nlohmann::json& pinned);
  /// A bound link to the running server at host:port, shared by the agents attached to it: the
  /// link this program launched that server with, if it did, or one made on first attach.
  std::shared_ptr<ServerLink> connect(const std::string& host, int port);
  /// Blocks until the fork server reports that `pid` ended (or `timeout`: nullopt); returns
  /// its wait status (0 if the runtime is shutting down or the fork server is gone).
  std::optional<int> wait_exit(pid_t pid,
                               std::chrono::nanoseconds timeout = std::chrono::nanoseconds::max());

  void drive(ResultState& state, Deadline until) override;
  /// Called on every call: lets the background pump keep out of a busy program's way.
  void note_call() noexcept {
    // Not an atomic increment: an approximate count is enough to tell "calls keep coming"
    // (calls from several threads may overwrite each other's), and a plain store is cheaper.
    calls_.store(calls_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  /// A thread that issues (or sends) many calls delivers the replies that have come, from
  /// every link with calls outstanding, once every kDeliverEvery of its calls: while a program
  /// is busy issuing, nobody else reads them (the background pump waits for a quiet program),
  /// and a call whose inputs are in by the time it is issued takes the direct path. Every
  /// link, not the one just used: calls that alternate between servers would otherwise leave
  /// one server's replies unread for the whole burst.
  /// Never throws: the call that triggered it has been sent, and its caller must get its
  /// placeholder (a reply that cannot be delivered for want of memory waits for the next look).
  void deliver_replies_now_and_then() noexcept {
    thread_local std::uint32_t calls = 0;
    if (++calls % kDeliverEvery != 0) return;
    try {
      pump_all(kNoWait, nullptr);
    } catch (...) {
    }
  }
  static constexpr std::uint32_t kDeliverEvery = 32;
  /// For tests: keeps the background pump from delivering replies (it still sweeps deadlines
  /// and retires idle links), so that a test can tell who delivered them.
  void pause_background_pump(bool paused) noexcept {
    background_paused_.store(paused, std::memory_order_relaxed);
  }
  /// Ends everything: links closed (their servers exit), fork server told. Idempotent.
  void shutdown() noexcept;
  bool shutting_down() const noexcept { return stopping_.load(std::memory_order_acquire); }

 private:
  explicit Runtime(std::unique_ptr<Transport> local);
  void start_threads();
  void add_link(const std::shared_ptr<ServerLink>& link);
  void add_link_locked(const std::shared_ptr<ServerLink>& link);  // links_mutex_ held
  using LinkList = std::vector<std::shared_ptr<ServerLink>>;
  std::shared_ptr<const LinkList> links();
  std::size_t pump_all(Deadline deadline, std::vector<std::shared_ptr<ServerLink>>* busy);
  std::size_t pump_links(const LinkList& all, std::vector<std::shared_ptr<ServerLink>>* busy,
                         Deadline deadline = kNoWait);
  void expire_all(Clock::time_point now);
  void watch_deadline(std::weak_ptr<ResultState> state) override;
  void retire_idle_links();
  void background_loop();
  // Asks whether each of `busy` still has its server (see runtime.cpp).
  void check_peers(const std::vector<std::shared_ptr<ServerLink>>& busy);
  void on_exit(pid_t pid, int status);

  std::unique_ptr<Transport> local_;
  std::unique_ptr<ForkServer> fork_server_;

  std::mutex links_mutex_;
  std::vector<std::shared_ptr<ServerLink>> links_;     // guarded by links_mutex_
  std::map<int, std::weak_ptr<ServerLink>> attached_;  // by port; guarded by links_mutex_
  std::atomic<std::uint64_t> links_version_{0};

  std::mutex deadlines_mutex_;
  std::vector<std::weak_ptr<ResultState>> deadlines_;  // watched; guarded by deadlines_mutex_
  std::mutex exits_mutex_;
  std::condition_variable exited_;
  std::map<pid_t, int> exits_;     // guarded by exits_mutex_
  bool fork_server_gone_ = false;  // guarded by exits_mutex_

  std::atomic<int> drivers_{0};                 // threads inside drive()
  std::atomic<bool> background_paused_{false};  // see pause_background_pump()
  std::atomic<std::uint64_t> calls_{0};         // see note_call()
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint32_t> background_signal_{0};
  std::thread background_;
};

}  // namespace troupe::detail
