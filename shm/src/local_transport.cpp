#include "troupe/shm/local_transport.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "troupe/core/error.hpp"
#include "troupe/shm/futex.hpp"
#include "troupe/shm/rendezvous_layout.hpp"

namespace troupe::shm {
namespace {

constexpr int kFirstPickedPort = 20000;
constexpr int kLastPickedPort = 59999;

// A server's end sleeps in longer slices: an idle server then wakes 20 times a second, not
// 200, and a client that died is still noticed (the fork server also ends orphaned servers).
WaitPolicy server_wait(WaitPolicy policy) {
  policy.sleep_slice =
      std::max<std::chrono::nanoseconds>(policy.sleep_slice, std::chrono::milliseconds(50));
  return policy;
}

bool is_local_host(const std::string& host) {
  return host.empty() || host == "localhost" || host == "127.0.0.1" || host == "::1";
}

void require_local(const std::string& host, const char* what) {
  if (!is_local_host(host)) {
    throw Error(std::string(what) + ": host '" + host +
                "' is not this host; local mode reaches servers on this host only (use "
                "local_mode = false for TCP)");
  }
}

RendezvousControl& control_of(Segment& s) {
  return *reinterpret_cast<RendezvousControl*>(s.base() + kRendezvousControlOffset);
}
ConnectSlot& slot_of(Segment& s, std::size_t i) {
  return reinterpret_cast<ConnectSlot*>(s.base() + kSlotsOffset)[i];
}

// The server's end of a local port.
class LocalListener final : public Listener {
 public:
  LocalListener(Segment segment, int port, ShmChannelOptions options)
      : segment_(std::move(segment)), port_(port), options_(options) {}
  ~LocalListener() override { close(); }

  int port() const noexcept override { return port_; }

  std::unique_ptr<Channel> accept(Deadline deadline) override {
    RendezvousControl& control = control_of(segment_);
    for (;;) {
      if (closed_.load(std::memory_order_acquire)) return nullptr;
      for (std::size_t i = 0; i < kConnectSlots; ++i) {
        ConnectSlot& slot = slot_of(segment_, i);
        // SYNC POINT: acquire pairs with the client's release store of kSlotReady.
        if (slot.state.load(std::memory_order_acquire) != kSlotReady) continue;
        std::string name(slot.channel_name, strnlen(slot.channel_name, kChannelNameBytes));
        slot.state.store(kSlotFree, std::memory_order_release);  // SYNC POINT: slot reusable
        try {
          auto channel = ShmChannel::attach(name, ChannelSide::kServer, server_wait(options_.wait));
          return channel;
        } catch (const Error&) {
          continue;  // a client that gave up (or lied): serve the others
        }
      }
      const auto now = Clock::now();
      if (now >= deadline) return nullptr;
      // The ring's sleeper handshake, on the rendezvous signal.
      // The ring's sleeper handshake (spsc_ring.hpp): the snapshot before the flag.
      const std::uint32_t signal = control.signal.load(std::memory_order_seq_cst);
      control.sleeping.exchange(1, std::memory_order_seq_cst);
      bool any_ready = false;
      for (std::size_t i = 0; i < kConnectSlots && !any_ready; ++i) {
        any_ready = slot_of(segment_, i).state.load(std::memory_order_seq_cst) == kSlotReady;
      }
      if (!any_ready && !closed_.load(std::memory_order_acquire)) {
        futex_wait(
            control.signal, signal,
            std::min<std::chrono::nanoseconds>(deadline - now, std::chrono::milliseconds(50)));
      }
      control.sleeping.store(0, std::memory_order_relaxed);
    }
  }

  void close() noexcept override {
    if (closed_.exchange(true)) return;
    RendezvousControl& control = control_of(segment_);
    control.signal.fetch_add(1, std::memory_order_seq_cst);
    futex_wake(control.signal, 1 << 30);
    segment_.unlink();
  }

 private:
  Segment segment_;
  int port_;
  ShmChannelOptions options_;
  std::atomic<bool> closed_{false};
};

// True when a shared-memory object of this name exists (whoever made it).
bool segment_exists(const std::string& name) {
  const int fd = ::shm_open(("/" + name).c_str(), O_RDONLY, 0);
  if (fd >= 0) ::close(fd);
  return fd >= 0 || errno != ENOENT;
}

Segment create_rendezvous(int port) {
  Segment s = Segment::create(rendezvous_name(port), kRendezvousSize, SegmentKind::kRendezvous);
  auto* control = new (s.base() + kRendezvousControlOffset) RendezvousControl{};
  control->server_pid.store(::getpid(), std::memory_order_relaxed);
  for (std::size_t i = 0; i < kConnectSlots; ++i) new (&slot_of(s, i)) ConnectSlot{};
  s.mark_ready();
  return s;
}

}  // namespace

std::string rendezvous_name(int port) { return "troupe.port." + std::to_string(port); }

std::unique_ptr<Listener> LocalTransport::listen(const std::string& host, int port) {
  require_local(host, "listen");
  if (port < 0 || port > 65535) {
    throw Error("port " + std::to_string(port) + ": must be in [0, 65535] (0 picks a free one)");
  }
  if (port != 0) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      try {
        return std::make_unique<LocalListener>(create_rendezvous(port), port, options_);
      } catch (const Error&) {
        // In use, or left by a dead run: remove stale rendezvous segments and try once more.
        if (attempt == 0 && !remove_stale_segments().empty()) continue;
        if (!segment_exists(rendezvous_name(port))) throw;  // another failure (ENOSPC...)
        throw Error("local port " + std::to_string(port) + " is in use on this host (" +
                    rendezvous_name(port) + " belongs to a live server)");
      }
    }
  }
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> pick(kFirstPickedPort, kLastPickedPort);
  for (int attempt = 0; attempt < 200; ++attempt) {
    const int candidate = pick(rng);
    try {
      return std::make_unique<LocalListener>(create_rendezvous(candidate), candidate, options_);
    } catch (const Error&) {
      if (!segment_exists(rendezvous_name(candidate))) throw;  // not taken: a real failure
      // taken: pick another
    }
  }
  throw Error("listen: no free local port found in [20000, 60000)");
}

std::unique_ptr<Channel> LocalTransport::connect(const std::string& host, int port) {
  require_local(host, "connect");
  Segment rendezvous = [&] {
    try {
      return Segment::attach(rendezvous_name(port), SegmentKind::kRendezvous);
    } catch (const Error& e) {
      throw Error("no Troupe server listens on local port " + std::to_string(port) + " (" +
                  e.what() + ")");
    }
  }();
  const std::string name = unique_segment_name("ch");
  auto channel = ShmChannel::create(name, ChannelSide::kClient, options_);
  RendezvousControl& control = control_of(rendezvous);
  channel->expect_peer(control.server_pid.load(std::memory_order_relaxed));
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  for (;;) {
    for (std::size_t i = 0; i < kConnectSlots; ++i) {
      ConnectSlot& slot = slot_of(rendezvous, i);
      std::uint32_t expected = kSlotFree;
      if (!slot.state.compare_exchange_strong(expected, kSlotWriting, std::memory_order_acquire)) {
        continue;
      }
      slot.client_pid = ::getpid();
      std::memset(slot.channel_name, 0, kChannelNameBytes);
      std::memcpy(slot.channel_name, name.data(), std::min(name.size(), kChannelNameBytes - 1));
      slot.state.store(kSlotReady, std::memory_order_seq_cst);  // SYNC POINT: name published
      control.signal.fetch_add(1, std::memory_order_seq_cst);
      if (control.sleeping.load(std::memory_order_seq_cst) != 0) futex_wake(control.signal);
      return channel;
    }
    if (Clock::now() >= deadline) {
      throw Error("local port " + std::to_string(port) + ": the server accepts no connection");
    }
    ::usleep(1000);  // every slot taken: connections pending acceptance
  }
}

std::pair<std::unique_ptr<Channel>, std::string> LocalTransport::make_child_channel() {
  std::string name = unique_segment_name("ch");
  auto channel = ShmChannel::create(name, ChannelSide::kClient, options_);
  return {std::move(channel), std::move(name)};
}

std::unique_ptr<Channel> LocalTransport::attach_child_channel(const std::string& token) {
  return ShmChannel::attach(token, ChannelSide::kServer, server_wait(options_.wait));
}

}  // namespace troupe::shm

namespace troupe::shm {

void LocalTransport::remove_stale() noexcept {
  try {
    remove_stale_segments();
  } catch (...) {
  }
}

}  // namespace troupe::shm
