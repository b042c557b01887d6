#pragma once
// AgentServer: the process that hosts agents. It serves any number of client channels, hosts
// many agents, and runs different agents in parallel on its worker threads, one call at a time
// per agent, in the order each client sent them.
//
// Workers follow a leader/followers scheme: one worker at a time receives (polls the channels),
// puts each call in its agent's mailbox in arrival order, and marks an idle agent runnable; a
// worker runs a runnable agent's mailbox. The receiver wakes a sleeping follower only when more
// than one agent became runnable, so a lone call costs no kernel wake-up. While an agent runs
// on a server that hosts several, a sleeping follower is woken and looks every millisecond for
// a vacant receiver's role, which bounds how long a frame can wait behind a long reply(); an
// idle server sleeps on its ring's doorbell and costs no CPU.
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "troupe/core/agent.hpp"
#include "troupe/core/channel.hpp"
#include "troupe/core/transport.hpp"
#include "troupe/core/wire.hpp"

namespace troupe {

struct AgentServerOptions {
  /// Worker threads; 0 picks max(2, hardware threads).
  int workers = 0;
  /// How long a reply may wait for room in a client's ring. A client that reads nothing for
  /// this long is dropped: its channel is closed, so that its pending calls fail (AgentDied)
  /// instead of waiting for replies the server had to discard.
  std::chrono::milliseconds send_patience{30'000};
  /// The most bytes of calls one client may have waiting in mailboxes (each call counts its
  /// frame plus kQueuedCallOverhead). Past it the server reads nothing more from that client
  /// until calls complete: the client's ring fills and its sends wait (backpressure), so a
  /// client calling faster than its agents answer cannot grow the server without bound.
  std::size_t max_queued_bytes_per_client = std::size_t{64} << 20;
};

/// What a queued call counts beyond its frame against max_queued_bytes_per_client: its
/// decoded messages and bookkeeping.
inline constexpr std::size_t kQueuedCallOverhead = 512;

/// What a server reports about itself.
struct ServerInfo {
  pid_t pid = 0;
  int port = 0;
  std::size_t rss_bytes = 0;
  std::size_t clients = 0;
  struct Agent {
    std::string name;
    std::string class_name;
    std::size_t queue_depth = 0;  ///< calls waiting in its mailbox
    std::uint64_t calls = 0;      ///< calls it has run
  };
  std::vector<Agent> agents;
  std::size_t malformed_frames = 0;  ///< inbound frames that failed verification
};

namespace detail {
struct ServedAgent;
struct ServedCall;
struct ServedClient;
}  // namespace detail

class AgentServer {
 public:
  explicit AgentServer(AgentServerOptions options = {});
  AgentServer(const AgentServer&) = delete;
  AgentServer& operator=(const AgentServer&) = delete;
  ~AgentServer();

  /// Creates an agent now, pinned: it stays when clients release it. Throws troupe::Error for
  /// an unknown class or a constructor that throws.
  void host(const std::string& class_name, const std::string& name, const Kwargs& kwargs);
  /// Serves a client. With `owner`, the server stops once this client's channel has closed
  /// and no other client remains.
  void add_channel(std::unique_ptr<Channel> channel, bool owner);
  /// Accepts clients from `listener` on a thread of its own until stop().
  void listen(std::unique_ptr<Listener> listener);
  /// Runs the workers until stop(); the calling thread is one of them.
  void run();
  /// Ends run() (from any thread or a reply()). Idempotent.
  void stop() noexcept;

  int port() const noexcept { return port_; }
  ServerInfo info() const;

 private:
  using AgentPtr = std::shared_ptr<detail::ServedAgent>;
  using ClientPtr = std::shared_ptr<detail::ServedClient>;

  void worker_loop();
  // One turn of a worker that may work: runs a queued agent, or takes the vacant receiver's
  // role and receives (running the first agent that made runnable). False if it did neither.
  // `joined_from_nap`: the worker comes back from a nap (see lazy_handovers_).
  bool work_or_receive(bool joined_from_nap);
  /// Wakes one napping follower for work handed over, unless one is being woken already (and,
  /// with lazy hand-overs, unless `even_if_lazy`).
  void wake_follower(bool even_if_lazy = false) noexcept;
  /// Wakes the receiver if it sleeps on its clients' doorbells (receiver_signal_).
  void wake_receiver() noexcept;
  bool receive(bool may_block);
  // The receiver's sleep while several clients are idle: false when it could not sleep on
  // them all at once (the caller naps instead).
  bool sleep_on_clients(const std::vector<ClientPtr>& clients, std::uint32_t signal);
  void on_frame(const ClientPtr& client, FrameBytes frame);
  // on_frame's work once the frame is verified; may throw (on_frame answers with the error).
  void handle_frame(const ClientPtr& client, const wire::Envelope& envelope,
                    std::size_t frame_bytes);
  void run_agent(const AgentPtr& agent);
  // Runs one call taken from `agent`'s mailbox and sends its reply; counts a Call or an
  // Observe in the agent's calls, before the reply goes.
  void run_call(const AgentPtr& agent, detail::ServedCall& call);
  // Runs the agent's constructor (on a worker, or before serving); on failure sets its
  // build_error and unlists it.
  void build(detail::ServedAgent& served);
  // The receiver's: runs `agent` next itself, or hands it to a follower.
  void schedule_from_receiver(AgentPtr agent);
  // Queues `call` in `agent`'s mailbox, counted in its client's budget (nothing, if
  // `refuse_if_deleted` and the agent was deleted). kStart: no worker owns the mailbox, so
  // the caller must schedule the agent.
  enum class Posted { kQueued, kStart, kRefused };
  Posted post(detail::ServedAgent& agent, detail::ServedCall call, bool refuse_if_deleted = false);
  // The receiver's: a reply to `client`, sent by a worker (the client's postman).
  void reply_later(const ClientPtr& client, wire::Kind kind, std::uint64_t call_id,
                   std::vector<Msg> msgs = {}, std::string error = {});
  void make_runnable(const AgentPtr& agent, bool wake = false);
  AgentPtr find_or_create(const std::string& class_name, const std::string& name,
                          const std::string& kwargs_json, std::string& error);
  void drop_client(const ClientPtr& client);
  // Replies; a reply the channel refuses as too large becomes an error reply (naming `from`,
  // the agent whose reply it is), and a client that reads nothing for options_.send_patience
  // has its channel closed.
  void send_to(detail::ServedClient& client, const EnvelopeFields& fields,
               const detail::ServedAgent* from = nullptr);
  // `kind`: Error, or Refused for a call refused without running (see wire::Kind).
  void send_error(detail::ServedClient& client, std::uint64_t call_id, const std::string& text,
                  wire::Kind kind = wire::Kind::Error);
  // Backpressure per client (options_.max_queued_bytes_per_client).
  bool throttled(const detail::ServedClient& client) const noexcept;
  void dequeued(detail::ServedClient& client, std::size_t cost) noexcept;
  bool hosts_several_agents() const;
  std::string info_json() const;

  AgentServerOptions options_;
  std::chrono::nanoseconds send_patience_{};  // options_.send_patience, saturated
  std::atomic<bool> stopping_{false};
  int port_ = 0;

  mutable std::mutex agents_mutex_;
  std::map<std::string, AgentPtr> agents_;   // by name
  std::atomic<std::size_t> agent_count_{0};  // agents_.size(), read without the lock
  void count_agents();                       // call with agents_mutex_ held after a change

  mutable std::mutex clients_mutex_;
  std::vector<ClientPtr> clients_;
  bool owner_gone_ = false;  // guarded by clients_mutex_
  std::atomic<std::uint64_t> clients_version_{0};
  // The receiver's copy of clients_ (see receive()); owned by whoever holds receiving_.
  std::vector<ClientPtr> receiver_clients_;
  std::uint64_t receiver_clients_version_ = ~std::uint64_t{0};

  std::mutex runnable_mutex_;
  std::deque<AgentPtr> runnable_;
  std::atomic<std::size_t> runnable_size_{0};  // runnable_.size(), stored under the lock
  // The first agent made runnable by the current receive (receiver-owned, see worker_loop()).
  std::vector<AgentPtr> receiver_runnable_;
  std::atomic<bool> receiving_{false};         // the receiver's role is taken
  std::atomic<std::uint32_t> work_signal_{0};  // followers sleep on it (private futex)
  std::atomic<int> sleeping_followers_{0};
  std::atomic<bool> follower_wake_pending_{false};  // a follower was woken and has not run yet
  // The idle receiver sleeps on it, with its clients' doorbells (followers on work_signal_).
  std::atomic<std::uint32_t> receiver_signal_{0};
  std::atomic<int> running_{0};  // workers running an agent's mailbox (several agents hosted)
  std::atomic<bool> lone_running_{false};  // the same while it hosts one agent (see run_agent)
  // Lazy hand-overs (worker_loop()): on a host of two cores or fewer, where a second busy
  // worker only takes turns with the first on the core the program leaves, agents made
  // runnable wake no follower; a follower joins when the working worker makes no progress for
  // a nap (it is held by a slow or blocked reply()), or, hosting several agents, when the
  // takes that ended in the nap were long enough on average for a second worker to compute
  // beside it (kHeavyTake, agent_server.cpp).
  bool lazy_handovers_ = false;
  // Takes of calls run so far (a change signal: plain stores, a lost increment is harmless).
  std::atomic<std::uint64_t> progress_{0};
  std::atomic<int> deep_sleepers_{0};  // followers in a long sleep (kFollowerIdle)
  std::atomic<std::uint64_t> malformed_{0};

  std::unique_ptr<Listener> listener_;
  std::thread acceptor_;
};

}  // namespace troupe
