// Benchmarks of the shared-memory transport, each subject with its baselines measured in the same
// run so that every figure reads as a ratio (issue 2; STYLE.md, rule 20). After the table the
// program prints the ratios the issue sets as targets, with PASS or MISS.
//
//   RoundTrip/*       a 64-byte message to an echo child process and back (time per round trip).
//   Stream/<size>/*   messages/s from a producer child to the parent, 64 B, 1 KiB and 64 KiB.
//                     TroupeRing/record/* carries <size> - 8 bytes, so that the record with its
//                     8-byte header has the raw ring's slot size. Batched: each/batch32 publish
//                     every record / every 32; TroupeRing/bulk32 appends 32 records as one
//                     RecordBatch (the ring's batched write), TroupeRing/batch32 writes them
//                     one by one; BoostLockfree/bulk32 is Boost's bulk push of 32.
//   ChannelCost/*     what ShmChannel::send adds to its ring's write, one thread writing 64-byte
//                     frames in batches (time per frame; taking them back is not timed).
//   Oversub8/*        8 echo children against one parent on this 2-core machine, 8 requests in
//                     flight per child (round trips/s).
//
// Subjects: Troupe's SpscRingProducer/SpscRingConsumer used directly ("TroupeRing", waiting with
// Troupe's AdaptiveWaiter) and the whole ShmChannel. Baselines: "RawRing" (below: the best simple
// ring, not a straw man), Boost.Lockfree spsc_queue in a shared mapping, Boost.Interprocess
// message_queue, a pipe pair and a Unix socketpair.
//
// Each case runs 3 times, interleaved with the others of its group; the table shows its median
// run and the spread of the three, and each ratio is the median of 3 ratios between runs a few
// seconds apart (this VM's speed drifts).
// Children are forked per run, before the timed loop, and ended (told, or killed and reaped by
// troupe::ChildProcess) after it; every case measures the parent's wall clock (UseRealTime).
// Every message carries its sequence number in its first and last 8 bytes and the receiver
// checks both, so no copy can be elided and loss, duplication or reordering fails the case.
//
//   build/release/bench/spsc_ring_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/interprocess/ipc/message_queue.hpp>
#include <boost/lockfree/spsc_queue.hpp>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "support/guarded.hpp"
#include "support/raw_ring.hpp"
#include "support/stall_guard.hpp"
#include "support/troupe_rings.hpp"
#include "troupe/core/child_process.hpp"
#include "troupe/core/error.hpp"
#include "troupe/shm/futex.hpp"
#include "troupe/shm/record_batch.hpp"
#include "troupe/shm/segment.hpp"
#include "troupe/shm/shm_channel.hpp"
#include "troupe/shm/spsc_ring.hpp"
#include "troupe/shm/wait_strategy.hpp"

namespace {

using namespace std::chrono_literals;
using namespace troupe::bench;
using troupe::Clock;
using troupe::Deadline;
namespace shm = troupe::shm;
namespace bip = boost::interprocess;

constexpr std::uint64_t kStopSequence = ~std::uint64_t{0};  // tells an echo child to end
constexpr std::size_t kBatch = 32;                          // messages per publication when batched
constexpr std::size_t kRoundTripBytes = 64;
constexpr std::size_t kRoundTripRingBytes = 64 * 1024;
constexpr std::size_t kStreamRingBytes = 1024 * 1024;  // every streaming ring or queue holds 1 MiB
constexpr std::size_t kOversubChildren = 8;
constexpr std::size_t kInFlight = 8;  // requests in flight per oversubscribed child
// Each case runs 3 times for at least 0.5 s, interleaved with the other cases of its group (see
// "The table and the ratios" below); the whole program takes about 2 minutes. (Each case is
// registered 3 times rather than given Repetitions(3): Google Benchmark 1.7.1 aborts when one
// repetition fails and the others do not.)
constexpr double kMinSeconds = 0.5;
constexpr int kRepetitions = 3;
/// Any wait of a run gives up after this: a dead peer or a bug fails the case, never hangs it.
constexpr auto kGiveUp = StallGuard::kGiveUp;

// ---------------------------------------------------------------------------------------------
// Plumbing

/// A file descriptor closed on destruction.
class Fd {
 public:
  explicit Fd(int fd = -1) noexcept : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const noexcept { return fd_; }
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

template <class Ready>
void spin_until(Ready&& ready) {
  StallGuard stall;
  while (!ready()) {
    shm::cpu_relax();
    stall.idle();
  }
}

/// How a Troupe ring end waits here: Troupe's AdaptiveWaiter (spin, yield, then sleep on the
/// ring's futex), or a plain spin (to tell the waiter's cost from the ring's).
class RingWait {
 public:
  explicit RingWait(bool adaptive) : adaptive_(adaptive), give_up_(Clock::now() + kGiveUp) {}

  template <class Ready, class Sleep>
  void until(Ready&& ready, Sleep&& sleep) {
    if (!adaptive_) return spin_until(ready);
    auto alive = [] { return std::error_code{}; };  // the children are ours: they die with us
    if (waiter_.wait(ready, sleep, alive, give_up_)) fail("stalled: AdaptiveWaiter gave up");
  }

 private:
  bool adaptive_;
  shm::AdaptiveWaiter waiter_;
  Deadline give_up_;
};

/// Waits up to 5 s for a child that was told to end, then kills it. Throws unless it exited 0.
void expect_clean_exit(troupe::ChildProcess& child) {
  const pid_t pid = child.pid();
  if (pid <= 0) return;
  if (const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); pidfd >= 0) {
    pollfd exited{pidfd, POLLIN, 0};
    ::poll(&exited, 1, 5000);
    ::close(pidfd);
  }
  std::optional<int> status = child.try_wait();
  if (!status) {
    child.kill(SIGKILL);
    status = child.wait();
  }
  if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    fail("child " + std::to_string(pid) + " " + troupe::describe_exit(*status));
  }
}

// ---------------------------------------------------------------------------------------------
// Messages: the sequence number in the first and the last 8 bytes, a fixed pattern between.

template <std::size_t N>
struct alignas(8) Message {
  static_assert(N >= 16 && N % 8 == 0);
  std::byte bytes[N];
};

inline void stamp(std::byte* message, std::size_t size, std::uint64_t seq) noexcept {
  std::memcpy(message, &seq, sizeof seq);
  std::memcpy(message + size - sizeof seq, &seq, sizeof seq);
}
inline std::uint64_t sequence_of(const std::byte* message) noexcept {
  std::uint64_t seq;
  std::memcpy(&seq, message, sizeof seq);
  return seq;
}

[[noreturn, gnu::cold, gnu::noinline]] void fail_message(std::uint64_t expected,
                                                         const std::byte* message,
                                                         std::size_t size) {
  std::uint64_t last;
  std::memcpy(&last, message + size - sizeof last, sizeof last);
  fail("message " + std::to_string(expected) + " of " + std::to_string(size) +
       " bytes arrived as sequence " + std::to_string(sequence_of(message)) + " / " +
       std::to_string(last) + " (lost, duplicated, reordered or torn)");
}

/// Throws unless `message` is message number `expected`, whole.
inline void check(const std::byte* message, std::size_t size, std::uint64_t expected) {
  std::uint64_t first, last;
  std::memcpy(&first, message, sizeof first);
  std::memcpy(&last, message + size - sizeof last, sizeof last);
  if (first != expected || last != expected) [[unlikely]] {
    fail_message(expected, message, size);
  }
}
inline void check(std::span<const std::byte> frame, std::size_t size, std::uint64_t expected) {
  if (frame.size() != size) [[unlikely]] {
    fail("message " + std::to_string(expected) + " arrived with " + std::to_string(frame.size()) +
         " bytes, not " + std::to_string(size));
  }
  check(frame.data(), size, expected);
}

/// What producers send: 32 prepared messages in turn (Boost's bulk push needs them contiguous;
/// every producer uses the same source so that none reads from a warmer cache than another).
///
/// One by one, a producer stamps each message just before it copies it; batched, it stamps a
/// whole batch before copying any of it (message()), as Boost's bulk push must. A copy that
/// reads a message stamped a moment ago cannot take the stamp from the store buffer (its
/// 16-byte loads overlap the 8-byte store) and waits for the store to reach the cache:
/// stamping each message of a batch just before copying it cost a producer 5.7 ns per message
/// against 2.3 ns (one process, no consumer). Before commit 38b12d1 the batched rings paid
/// that and Boost's bulk push did not.
template <std::size_t N>
class Source {
 public:
  Source() : messages_(kBatch) {
    for (std::size_t i = 0; i < kBatch; ++i) {
      for (std::size_t b = 0; b < N; ++b) {
        messages_[i].bytes[b] = static_cast<std::byte>((i * 131 + b * 7) & 0xff);
      }
    }
  }
  /// Message `seq` (slot seq % 32), stamped.
  const Message<N>& next(std::uint64_t seq) noexcept {
    Message<N>& m = messages_[seq % kBatch];
    stamp(m.bytes, N, seq);
    return m;
  }
  /// Message `seq` of a stream sent in batches of `batch`: one by one (1), stamped now
  /// (next(seq)); batched (any batch > 1), its 32 messages are stamped when the first is asked
  /// for.
  const Message<N>& message(std::uint64_t seq, std::size_t batch) noexcept {
    if (batch == 1) return next(seq);
    if (seq % kBatch == 0) {
      for (std::uint64_t i = seq; i < seq + kBatch; ++i) next(i);
    }
    return messages_[seq % kBatch];
  }
  std::span<const std::byte> bytes(const Message<N>& m) const noexcept { return {m.bytes, N}; }
  /// The first message of a batch stamped with next(seq) for seq = 32k, 32k + 1, ...
  const Message<N>* batch() const noexcept { return messages_.data(); }

 private:
  std::vector<Message<N>> messages_;
};

/// Flags shared with the children: a streaming producer says `ready` once set up and starts on
/// `go`, which the parent sets just before its timed loop; `stop` ends echo children.
struct Control {
  alignas(kLine) std::atomic<std::uint32_t> ready;
  alignas(kLine) std::atomic<std::uint32_t> go;
  alignas(kLine) std::atomic<std::uint32_t> stop;
};

/// The child's side of the start: set up, then this, then produce.
void announce_ready_and_wait_for_go(Control& control) {
  control.ready.store(1, std::memory_order_release);
  spin_until([&] { return control.go.load(std::memory_order_acquire) != 0; });
}
/// The parent's side, just before its timed loop.
void wait_for_ready_and_go(Control& control) {
  spin_until([&] { return control.ready.load(std::memory_order_acquire) != 0; });
  control.go.store(1, std::memory_order_release);
}
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

// Doorbell: what the raw baseline's futex strategy adds (oversubscribed cases): a sleeper flag
// and a futex word, with the handshake of Troupe's ring (spsc_ring.hpp). The sleeper:
//   S1 sleeping.exchange(1)  S2 s = signal.load()  S3 re-check its rings  S4 futex_wait(signal, s)
// The waker, after publishing with a seq_cst store:
//   W1 if sleeping.load() && sleeping.exchange(0): signal++, futex_wake(signal)
// All seq_cst: in their single total order either S3 follows the publication (the sleeper sees
// the data) or S1 precedes W1 (the waker sees the flag; its increment follows S2, so the
// kernel's check in futex_wait catches a wake that comes before S4).
struct Doorbell {
  /// 1 while the owner is (about to be) asleep on signal; cleared by the waker or the owner.
  alignas(kLine) std::atomic<std::uint32_t> sleeping;
  std::atomic<std::uint32_t> signal;  ///< the futex word
};
static_assert(sizeof(Doorbell) == kLine);

template <class StillEmpty>
void sleep_on(Doorbell& bell, StillEmpty&& still_empty) {
  bell.sleeping.exchange(1, std::memory_order_seq_cst);                      // S1
  const std::uint32_t signal = bell.signal.load(std::memory_order_seq_cst);  // S2
  // S3, S4. The timeout only bounds a bug: every wake-up is signalled.
  if (still_empty()) shm::futex_wait(bell.signal, signal, 10ms);
  bell.sleeping.store(0, std::memory_order_relaxed);
}
void ring_if_asleep(Doorbell& bell) {  // W1
  if (bell.sleeping.load(std::memory_order_seq_cst) != 0 &&
      bell.sleeping.exchange(0, std::memory_order_seq_cst) != 0) {
    bell.signal.fetch_add(1, std::memory_order_seq_cst);
    shm::futex_wake(bell.signal);
  }
}
void ring_always(Doorbell& bell) {
  bell.signal.fetch_add(1, std::memory_order_seq_cst);
  shm::futex_wake(bell.signal);
}

// ---------------------------------------------------------------------------------------------
// Boost.Lockfree queues in shared mappings (Troupe rings: support/troupe_rings.hpp).

template <std::size_t N, std::size_t kCapacity>
using BoostQueue = boost::lockfree::spsc_queue<Message<N>, boost::lockfree::capacity<kCapacity>>;

/// `count` Boost.Lockfree queues with compile-time capacity (their storage inline, no pointer)
/// in one shared mapping.
template <class Queue>
class BoostQueues {
 public:
  explicit BoostQueues(std::size_t count)
      : count_(count), stride_(round_up(sizeof(Queue), kLine)), mapping_(count * stride_) {
    for (std::size_t i = 0; i < count; ++i) new (mapping_.at(i * stride_)) Queue();
  }
  ~BoostQueues() {
    for (std::size_t i = 0; i < count_; ++i) (*this)[i].~Queue();
  }
  Queue& operator[](std::size_t i) const {
    return *std::launder(reinterpret_cast<Queue*>(mapping_.at(i * stride_)));
  }

 private:
  std::size_t count_;
  std::size_t stride_;
  SharedMapping mapping_;
};

// ---------------------------------------------------------------------------------------------
// 1. Round trip of a 64-byte message: parent -> echo child -> parent, one in flight.
//
// Each case does one round trip before the timed loop (the child is up), then one per
// iteration, then tells the child to end.

using RoundTripMessage = Message<kRoundTripBytes>;

/// Troupe's rings used directly: requests on ring 0, replies on ring 1. The consumer gives the
/// space back after every message, as ShmChannel::poll does at its end.
void round_trip_troupe_ring(benchmark::State& state, bool adaptive) {
  guarded(state, [&] {
    TroupeRings rings(2, kRoundTripRingBytes);
    auto child = troupe::ChildProcess::fork([&] {
      shm::SpscRingConsumer requests = rings.consumer(0);
      shm::SpscRingProducer replies = rings.producer(1);
      RingWait wait(adaptive);
      for (;;) {
        std::optional<shm::RingRecord> request;
        wait.until([&] { return (request = requests.try_take()).has_value(); },
                   [&](std::chrono::nanoseconds slice) { requests.sleep_for_data(slice); });
        if (sequence_of(request->payload.data()) == kStopSequence) return 0;
        if (!replies.try_push(shm::RecordType::kMessage, request->payload)) return 1;
        requests.publish_head();
      }
    });
    shm::SpscRingProducer requests = rings.producer(0);
    shm::SpscRingConsumer replies = rings.consumer(1);
    RingWait wait(adaptive);
    RoundTripMessage message{};
    std::uint64_t seq = 0;
    auto round_trip = [&] {
      stamp(message.bytes, kRoundTripBytes, seq);
      if (!requests.try_push(shm::RecordType::kMessage, {message.bytes, kRoundTripBytes})) {
        fail("request ring full with one message in flight");
      }
      std::optional<shm::RingRecord> reply;
      wait.until([&] { return (reply = replies.try_take()).has_value(); },
                 [&](std::chrono::nanoseconds slice) { replies.sleep_for_data(slice); });
      check(reply->payload, kRoundTripBytes, seq++);
      replies.publish_head();
    };
    round_trip();
    for (auto _ : state) round_trip();
    stamp(message.bytes, kRoundTripBytes, kStopSequence);
    (void)requests.try_push(shm::RecordType::kMessage, {message.bytes, kRoundTripBytes});
    expect_clean_exit(child);
    state.SetItemsProcessed(state.iterations());
  });
}

/// An echo server over a ShmChannel: returns 0 once the client closes.
int echo_frames(shm::ShmChannel& server, std::size_t size, Deadline give_up) {
  std::vector<std::byte> replies;
  for (;;) {
    replies.clear();
    std::error_code ec;
    server.poll(
        [&](troupe::FrameBytes frame) {
          replies.insert(replies.end(), frame.begin(), frame.end());
        },
        64, give_up, ec);
    if (ec) return ec == troupe::Errc::kClosed ? 0 : 1;
    if (replies.empty()) return 1;  // gave up
    for (std::size_t at = 0; at < replies.size(); at += size) {
      if (auto send_ec = server.send({replies.data() + at, size}, give_up, /*flush=*/false)) {
        return send_ec == troupe::Errc::kClosed ? 0 : 1;
      }
    }
    (void)server.flush();
  }
}

void round_trip_shm_channel(benchmark::State& state) {
  guarded(state, [&] {
    const std::string name = shm::unique_segment_name("bench-rt");
    auto channel = shm::ShmChannel::create(name, shm::ChannelSide::kClient,
                                           {.ring_bytes = kRoundTripRingBytes});
    const Deadline give_up = Clock::now() + kGiveUp;
    auto child = troupe::ChildProcess::fork([&] {
      channel->segment().disown();  // the parent owns (and removes) the segment
      auto server = shm::ShmChannel::attach(name, shm::ChannelSide::kServer);
      return echo_frames(*server, kRoundTripBytes, give_up);
    });
    channel->expect_peer(child.pid());
    RoundTripMessage message{};
    std::uint64_t seq = 0;
    auto round_trip = [&] {
      stamp(message.bytes, kRoundTripBytes, seq);
      if (auto ec = channel->send({message.bytes, kRoundTripBytes}, give_up)) {
        fail("ShmChannel::send: " + ec.message());
      }
      std::error_code ec;
      const std::size_t n = channel->poll(
          [&](troupe::FrameBytes reply) { check(reply, kRoundTripBytes, seq++); }, 1, give_up, ec);
      if (n != 1) fail("ShmChannel::poll: no reply (" + ec.message() + ")");
    };
    round_trip();
    for (auto _ : state) round_trip();
    channel->close();
    expect_clean_exit(child);
    state.SetItemsProcessed(state.iterations());
  });
}

/// The raw ring, both sides spinning; the consumer releases each slot once read (rigtorp).
void round_trip_raw_ring(benchmark::State& state) {
  guarded(state, [&] {
    RawRings<kRoundTripBytes> rings(2, 64);
    auto child = troupe::ChildProcess::fork([&] {
      RawConsumer<kRoundTripBytes> requests = rings.consumer(0);
      RawProducer<kRoundTripBytes> replies = rings.producer(1);
      for (;;) {
        const std::byte* request = nullptr;
        spin_until([&] { return (request = requests.front()) != nullptr; });
        if (sequence_of(request) == kStopSequence) return 0;
        if (!replies.try_push(request)) return 1;
        requests.pop();
        requests.release();
      }
    });
    RawProducer<kRoundTripBytes> requests = rings.producer(0);
    RawConsumer<kRoundTripBytes> replies = rings.consumer(1);
    RoundTripMessage message{};
    std::uint64_t seq = 0;
    auto round_trip = [&] {
      stamp(message.bytes, kRoundTripBytes, seq);
      if (!requests.try_push(message.bytes)) fail("request ring full with one message in flight");
      const std::byte* reply = nullptr;
      spin_until([&] { return (reply = replies.front()) != nullptr; });
      check(reply, kRoundTripBytes, seq++);
      replies.pop();
      replies.release();
    };
    round_trip();
    for (auto _ : state) round_trip();
    stamp(message.bytes, kRoundTripBytes, kStopSequence);
    (void)requests.try_push(message.bytes);
    expect_clean_exit(child);
    state.SetItemsProcessed(state.iterations());
  });
}

void round_trip_boost_lockfree(benchmark::State& state) {
  guarded(state, [&] {
    using Queue = BoostQueue<kRoundTripBytes, 64>;
    BoostQueues<Queue> queues(2);
    Queue& requests = queues[0];
    Queue& replies = queues[1];
    auto child = troupe::ChildProcess::fork([&] {
      bool stop = false;
      for (;;) {
        spin_until([&] {
          return requests.consume_one([&](const RoundTripMessage& request) {
            if (sequence_of(request.bytes) == kStopSequence) {
              stop = true;
            } else if (!replies.push(request)) {
              fail("reply queue full");
            }
          });
        });
        if (stop) return 0;
      }
    });
    RoundTripMessage message{};
    std::uint64_t seq = 0;
    auto round_trip = [&] {
      stamp(message.bytes, kRoundTripBytes, seq);
      if (!requests.push(message)) fail("request queue full with one message in flight");
      spin_until([&] {
        return replies.consume_one(
            [&](const RoundTripMessage& reply) { check(reply.bytes, kRoundTripBytes, seq); });
      });
      ++seq;
    };
    round_trip();
    for (auto _ : state) round_trip();
    stamp(message.bytes, kRoundTripBytes, kStopSequence);
    (void)requests.push(message);
    expect_clean_exit(child);
    state.SetItemsProcessed(state.iterations());
  });
}

/// Removes a Boost.Interprocess message queue's name on the way out.
struct MessageQueueName {
  std::string name;
  ~MessageQueueName() { bip::message_queue::remove(name.c_str()); }
};

void round_trip_message_queue(benchmark::State& state) {
  guarded(state, [&] {
    const MessageQueueName request_name{shm::unique_segment_name("bench-mq-request")};
    const MessageQueueName reply_name{shm::unique_segment_name("bench-mq-reply")};
    bip::message_queue requests(bip::create_only, request_name.name.c_str(), 16, kRoundTripBytes);
    bip::message_queue replies(bip::create_only, reply_name.name.c_str(), 16, kRoundTripBytes);
    auto child = troupe::ChildProcess::fork([&] {
      bip::message_queue in(bip::open_only, request_name.name.c_str());
      bip::message_queue out(bip::open_only, reply_name.name.c_str());
      RoundTripMessage request;
      for (;;) {
        std::size_t got = 0;
        unsigned priority = 0;
        in.receive(request.bytes, kRoundTripBytes, got, priority);
        if (got != kRoundTripBytes) return 0;  // the empty message: stop
        out.send(request.bytes, kRoundTripBytes, 0);
      }
    });
    RoundTripMessage message{}, reply{};
    std::uint64_t seq = 0;
    auto round_trip = [&] {
      stamp(message.bytes, kRoundTripBytes, seq);
      requests.send(message.bytes, kRoundTripBytes, 0);
      std::size_t got = 0;
      unsigned priority = 0;
      replies.receive(reply.bytes, kRoundTripBytes, got, priority);
      check(std::span<const std::byte>(reply.bytes, got), kRoundTripBytes, seq++);
    };
    round_trip();
    for (auto _ : state) round_trip();
    requests.send(message.bytes, 0, 0);
    expect_clean_exit(child);
    state.SetItemsProcessed(state.iterations());
  });
}

bool read_full(int fd, std::byte* to, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::read(fd, to, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    to += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}
bool write_full(int fd, const std::byte* from, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, from, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    from += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

/// Round trips over a pair of byte streams: the parent writes to `out` and reads `in`; the
/// child reads `child_in`, writes `child_out`, and ends at end of file.
void round_trip_streams(benchmark::State& state, Fd& out, Fd& in, Fd& child_in, Fd& child_out) {
  auto child = troupe::ChildProcess::fork([&] {
    out.reset();  // else the child never sees end of file
    in.reset();
    RoundTripMessage request;
    while (read_full(child_in.get(), request.bytes, kRoundTripBytes)) {
      if (!write_full(child_out.get(), request.bytes, kRoundTripBytes)) return 1;
    }
    return 0;
  });
  child_in.reset();
  child_out.reset();
  RoundTripMessage message{}, reply{};
  std::uint64_t seq = 0;
  auto round_trip = [&] {
    stamp(message.bytes, kRoundTripBytes, seq);
    if (!write_full(out.get(), message.bytes, kRoundTripBytes)) fail_errno("write");
    if (!read_full(in.get(), reply.bytes, kRoundTripBytes)) fail_errno("read");
    check(reply.bytes, kRoundTripBytes, seq++);
  };
  round_trip();
  for (auto _ : state) round_trip();
  out.reset();  // end of file for the child (the socket closes with its last descriptor)
  in.reset();
  expect_clean_exit(child);
  state.SetItemsProcessed(state.iterations());
}

void round_trip_pipe(benchmark::State& state) {
  guarded(state, [&] {
    int request[2], reply[2];
    if (::pipe2(request, O_CLOEXEC) != 0) fail_errno("pipe2");
    Fd request_read(request[0]), request_write(request[1]);
    if (::pipe2(reply, O_CLOEXEC) != 0) fail_errno("pipe2");
    Fd reply_read(reply[0]), reply_write(reply[1]);
    round_trip_streams(state, request_write, reply_read, request_read, reply_write);
  });
}

void round_trip_unix_socket(benchmark::State& state) {
  guarded(state, [&] {
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
      fail_errno("socketpair(AF_UNIX, SOCK_STREAM)");
    }
    Fd parent_end(pair[0]), child_end(pair[1]);
    // The same descriptor both ways; `in` is a second descriptor of the parent's end so that
    // round_trip_streams can close each once.
    Fd parent_in(::dup(parent_end.get())), child_out(::dup(child_end.get()));
    if (parent_in.get() < 0 || child_out.get() < 0) fail_errno("dup");
    round_trip_streams(state, parent_end, parent_in, child_end, child_out);
  });
}

// ---------------------------------------------------------------------------------------------
// 2. Streaming: a producer child sends `iterations` messages of N bytes; the parent checks
// each. The child waits for the go flag, set just before the timed loop.
//
// Every consumer gives space back in batches, the way ShmChannel does: once a quarter of the
// ring is read, and whenever it has caught up with the producer.

/// Counts the parent's loop down in chunks: `receive()` takes what is there (at least one
/// message) and returns how many it took.
template <class Receive>
void consume(benchmark::State& state, std::size_t size, Receive&& receive) {
  std::uint64_t credit = 0;
  for (auto _ : state) {
    if (credit == 0) credit = receive();
    --credit;
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(size));
}

/// How a Troupe ring's producer writes a batched stream: record by record (try_write, then
/// publish() every `batch`), or as a RecordBatch appended in one copy (try_append), whose 32
/// records it stamps in place as Boost's bulk push stamps its array: the same work.
enum class Writes { kEach, kBulk };

/// The bulk writer of stream_troupe_ring: the 32 records of a publication in RecordBatches of
/// at most half the ring (one batch below 16 KiB records; 64 KiB ones go 7 to a batch), made
/// before the timed loop, their payloads stamped in place.
template <std::size_t N>
class BulkWriter {
 public:
  BulkWriter(const shm::SpscRingProducer& producer, const Source<N>& source) {
    const std::size_t per_batch =
        std::min(kBatch, producer.max_batch_bytes() / shm::record_size(N));
    batches_.reserve((kBatch + per_batch - 1) / per_batch);  // payloads_ point into them
    for (std::size_t i = 0; i < kBatch; ++i) {
      if (i % per_batch == 0) batches_.emplace_back(per_batch * shm::record_size(N));
      payloads_[i] = batches_.back().add(shm::RecordType::kMessage, N);
      std::memcpy(payloads_[i], source.batch()[i].bytes, N);
    }
  }
  /// Sends whole publications of 32 of the first `count` messages; returns how many it sent.
  std::uint64_t run(shm::SpscRingProducer& producer, RingWait& wait, std::uint64_t count) {
    std::uint64_t seq = 0;
    for (; seq + kBatch <= count; seq += kBatch) {
      for (std::size_t i = 0; i < kBatch; ++i) stamp(payloads_[i], N, seq + i);
      for (const shm::RecordBatch& records : batches_) {
        const std::size_t payload = records.bytes().size() - sizeof(std::uint64_t);
        while (!producer.try_append(records)) {
          producer.publish();
          wait.until(
              [&] { return producer.has_space_for(payload); },
              [&](std::chrono::nanoseconds slice) { producer.sleep_for_space(payload, slice); });
        }
      }
      producer.publish();
    }
    return seq;
  }

 private:
  std::vector<shm::RecordBatch> batches_;
  std::byte* payloads_[kBatch] = {};
};

template <std::size_t N>
void stream_troupe_ring(benchmark::State& state, std::size_t batch, Writes writes = Writes::kEach) {
  guarded(state, [&] {
    TroupeRings rings(1, kStreamRingBytes);
    SharedMapping control_mapping(sizeof(Control));
    auto& control = *new (control_mapping.at(0)) Control{};
    const auto count = static_cast<std::uint64_t>(state.max_iterations);
    auto child = troupe::ChildProcess::fork([&] {
      shm::SpscRingProducer producer = rings.producer(0);
      RingWait wait(true);
      Source<N> source;
      std::optional<BulkWriter<N>> bulk;
      if (writes == Writes::kBulk) bulk.emplace(producer, source);
      announce_ready_and_wait_for_go(control);
      std::uint64_t seq = bulk ? bulk->run(producer, wait, count) : 0;
      std::size_t unpublished = 0;
      for (; seq < count; ++seq) {
        const auto message = source.bytes(source.message(seq, batch));
        while (!producer.try_write(shm::RecordType::kMessage, message)) {
          producer.publish();  // the consumer must see what is written before we wait for it
          wait.until([&] { return producer.has_space_for(N); },
                     [&](std::chrono::nanoseconds slice) { producer.sleep_for_space(N, slice); });
        }
        if (++unpublished == batch) {
          producer.publish();
          unpublished = 0;
        }
      }
      producer.publish();
      return 0;
    });
    shm::SpscRingConsumer consumer = rings.consumer(0);
    RingWait wait(true);
    const std::size_t release_every = consumer.capacity() / 4;
    std::uint64_t expected = 0;
    wait_for_ready_and_go(control);
    consume(state, N, [&]() -> std::uint64_t {
      for (;;) {
        std::uint64_t got = 0;
        while (const std::optional<shm::RingRecord> record = consumer.try_take()) {
          check(record->payload, N, expected++);
          ++got;
          if (consumer.unreleased_bytes() >= release_every) consumer.publish_head();
        }
        if (consumer.corrupt()) fail("the ring broke the record protocol");
        consumer.publish_head();
        if (got != 0) return got;
        wait.until([&] { return consumer.has_data(); },
                   [&](std::chrono::nanoseconds slice) { consumer.sleep_for_data(slice); });
      }
    });
    expect_clean_exit(child);
  });
}

template <std::size_t N>
void stream_shm_channel(benchmark::State& state, std::size_t batch) {
  guarded(state, [&] {
    const std::string name = shm::unique_segment_name("bench-stream");
    auto channel =
        shm::ShmChannel::create(name, shm::ChannelSide::kClient, {.ring_bytes = kStreamRingBytes});
    SharedMapping control_mapping(sizeof(Control));
    auto& control = *new (control_mapping.at(0)) Control{};
    const auto count = static_cast<std::uint64_t>(state.max_iterations);
    const Deadline give_up = Clock::now() + kGiveUp;
    auto child = troupe::ChildProcess::fork([&] {
      channel->segment().disown();
      auto server = shm::ShmChannel::attach(name, shm::ChannelSide::kServer);
      Source<N> source;
      announce_ready_and_wait_for_go(control);
      std::size_t unflushed = 0;
      for (std::uint64_t seq = 0; seq < count; ++seq) {
        const bool flush = ++unflushed == batch;
        if (flush) unflushed = 0;
        if (server->send(source.bytes(source.message(seq, batch)), give_up, flush)) return 1;
      }
      return server->flush() ? 1 : 0;
    });
    channel->expect_peer(child.pid());
    std::uint64_t expected = 0;
    wait_for_ready_and_go(control);
    consume(state, N, [&]() -> std::uint64_t {
      std::error_code ec;
      const std::size_t n = channel->poll(
          [&](troupe::FrameBytes frame) { check(frame, N, expected++); }, 256, give_up, ec);
      if (n == 0) fail("ShmChannel::poll: nothing (" + ec.message() + ")");
      return n;
    });
    expect_clean_exit(child);
    channel->close();
  });
}

template <std::size_t N>
void stream_raw_ring(benchmark::State& state, std::size_t batch) {
  guarded(state, [&] {
    const std::size_t slots = kStreamRingBytes / N;
    RawRings<N> rings(1, slots);
    SharedMapping control_mapping(sizeof(Control));
    auto& control = *new (control_mapping.at(0)) Control{};
    const auto count = static_cast<std::uint64_t>(state.max_iterations);
    auto child = troupe::ChildProcess::fork([&] {
      RawProducer<N> producer = rings.producer(0);
      Source<N> source;
      announce_ready_and_wait_for_go(control);
      std::size_t unpublished = 0;
      for (std::uint64_t seq = 0; seq < count; ++seq) {
        const std::byte* message = source.message(seq, batch).bytes;
        if (!producer.try_write(message)) {
          producer.publish(std::memory_order_release);
          spin_until([&] { return producer.try_write(message); });
        }
        if (++unpublished == batch) {
          producer.publish(std::memory_order_release);
          unpublished = 0;
        }
      }
      producer.publish(std::memory_order_release);
      return 0;
    });
    RawConsumer<N> consumer = rings.consumer(0);
    const std::size_t release_every = slots / 4;
    std::uint64_t expected = 0;
    StallGuard stall;
    wait_for_ready_and_go(control);
    consume(state, N, [&]() -> std::uint64_t {
      for (;;) {
        std::uint64_t got = 0;
        while (const std::byte* message = consumer.front()) {
          check(message, N, expected++);
          consumer.pop();
          ++got;
          if (consumer.unreleased() >= release_every) consumer.release();
        }
        consumer.release();
        if (got != 0) {
          stall.progress();
          return got;
        }
        shm::cpu_relax();
        stall.idle();
      }
    });
    expect_clean_exit(child);
  });
}

/// Boost.Lockfree: push one by one (batch 1) or its bulk push of 32; the consumer takes
/// everything there with consume_all (Boost's own batched release of space).
template <std::size_t N>
void stream_boost_lockfree(benchmark::State& state, std::size_t batch) {
  guarded(state, [&] {
    using Queue = BoostQueue<N, kStreamRingBytes / N>;
    BoostQueues<Queue> queues(1);
    Queue& queue = queues[0];
    SharedMapping control_mapping(sizeof(Control));
    auto& control = *new (control_mapping.at(0)) Control{};
    const auto count = static_cast<std::uint64_t>(state.max_iterations);
    auto child = troupe::ChildProcess::fork([&] {
      Source<N> source;
      announce_ready_and_wait_for_go(control);
      if (batch == 1) {
        for (std::uint64_t seq = 0; seq < count; ++seq) {
          const Message<N>& message = source.next(seq);
          if (!queue.push(message)) spin_until([&] { return queue.push(message); });
        }
        return 0;
      }
      for (std::uint64_t seq = 0; seq < count; seq += kBatch) {
        const std::size_t n =
            static_cast<std::size_t>(std::min<std::uint64_t>(kBatch, count - seq));
        for (std::size_t i = 0; i < n; ++i) source.next(seq + i);
        std::size_t pushed = queue.push(source.batch(), n);
        if (pushed < n) {
          spin_until(
              [&] { return (pushed += queue.push(source.batch() + pushed, n - pushed)) == n; });
        }
      }
      return 0;
    });
    std::uint64_t expected = 0;
    StallGuard stall;
    wait_for_ready_and_go(control);
    consume(state, N, [&]() -> std::uint64_t {
      for (;;) {
        const std::size_t got =
            queue.consume_all([&](const Message<N>& m) { check(m.bytes, N, expected++); });
        if (got != 0) {
          stall.progress();
          return got;
        }
        shm::cpu_relax();
        stall.idle();
      }
    });
    expect_clean_exit(child);
  });
}

// ---------------------------------------------------------------------------------------------
// 2b. What a channel adds to its ring, in one thread (no second core, no transfer between
// caches): 64-byte frames written 32 to a publication, through ShmChannel::send or the bare
// ring's try_write/publish underneath. Time per frame written; taking them back, 8192 at a
// time, is not timed.

constexpr std::size_t kCostFrames = 8192;  // frames between two takes: ~590 KiB of a 1 MiB ring

void cost_troupe_ring(benchmark::State& state) {
  guarded(state, [&] {
    TroupeRings rings(1, kStreamRingBytes);
    shm::SpscRingProducer producer = rings.producer(0);
    shm::SpscRingConsumer consumer = rings.consumer(0);
    Source<64> source;
    std::uint64_t seq = 0, expected = 0;
    for (auto _ : state) {
      if (!producer.try_write(shm::RecordType::kMessage,
                              source.bytes(source.message(seq, kBatch)))) {
        fail("ring full");
      }
      if (++seq % kBatch == 0) producer.publish();
      if (seq % kCostFrames == 0) {
        state.PauseTiming();  // the cost of writing, not of taking back
        while (const auto record = consumer.try_take()) check(record->payload, 64, expected++);
        if (consumer.corrupt() || expected != seq) fail("frames lost or the ring broken");
        consumer.publish_head();
        state.ResumeTiming();
      }
    }
    state.SetItemsProcessed(state.iterations());
  });
}

void cost_shm_channel(benchmark::State& state) {
  guarded(state, [&] {
    auto client =
        shm::ShmChannel::create(shm::unique_segment_name("bench-cost"), shm::ChannelSide::kClient,
                                {.ring_bytes = kStreamRingBytes});
    auto server = shm::ShmChannel::attach(client->name(), shm::ChannelSide::kServer);
    Source<64> source;
    const Deadline give_up = Clock::now() + kGiveUp;
    std::uint64_t seq = 0, expected = 0;
    std::error_code ec;
    for (auto _ : state) {
      const bool flush = ++seq % kBatch == 0;
      if (server->send(source.bytes(source.message(seq - 1, kBatch)), give_up, flush)) {
        fail("send");
      }
      if (seq % kCostFrames == 0) {
        state.PauseTiming();  // the cost of sending, not of receiving
        while (client->poll([&](troupe::FrameBytes f) { check(f, 64, expected++); }, kCostFrames,
                            troupe::kNoWait, ec) != 0) {
        }
        if (ec || expected != seq) fail("frames lost (" + ec.message() + ")");
        state.ResumeTiming();
      }
    }
    state.SetItemsProcessed(state.iterations());
    client->close();
  });
}

// ---------------------------------------------------------------------------------------------
// 3. Oversubscription: 8 echo children and the parent on 2 cores, 8 requests in flight per
// child. The parent serves whichever replies are there, sending a new request for each; an
// iteration is one round trip.

enum class RawWait { kSpin, kYield, kFutex };

struct OversubControl {
  alignas(kLine) std::atomic<std::uint32_t> stop;
  Doorbell parent;                   // futex strategy: the parent sleeps here
  Doorbell child[kOversubChildren];  // and each child here
};

/// Serves two rounds of requests before the timed loop: every child is up and answering.
template <class Serve>
void warm_up(Serve& serve) {
  for (std::uint64_t done = 0; done < 2 * kOversubChildren * kInFlight;) done += serve();
}

template <class Serve>
void count_round_trips(benchmark::State& state, Serve&& serve) {
  std::uint64_t credit = 0;
  for (auto _ : state) {
    if (credit == 0) credit = serve();
    --credit;
  }
  state.SetItemsProcessed(state.iterations());
}

int raw_oversub_child(const RawRings<kRoundTripBytes>& rings, OversubControl& control,
                      std::size_t i, RawWait strategy) {
  RawConsumer<kRoundTripBytes> requests = rings.consumer(2 * i);
  RawProducer<kRoundTripBytes> replies = rings.producer(2 * i + 1);
  const auto order =
      strategy == RawWait::kFutex ? std::memory_order_seq_cst : std::memory_order_release;
  for (;;) {
    std::size_t got = 0;
    while (const std::byte* request = requests.front()) {
      if (!replies.try_write(request)) return 1;  // cannot be: at most 8 in flight
      requests.pop();
      ++got;
    }
    if (got != 0) {
      replies.publish(order);
      requests.release();
      if (strategy == RawWait::kFutex) ring_if_asleep(control.parent);
      continue;
    }
    if (control.stop.load(std::memory_order_acquire) != 0) return 0;
    switch (strategy) {
      case RawWait::kSpin:
        shm::cpu_relax();
        break;
      case RawWait::kYield:
        ::sched_yield();
        break;
      case RawWait::kFutex:
        sleep_on(control.child[i], [&] {
          return requests.empty_seq_cst() && control.stop.load(std::memory_order_seq_cst) == 0;
        });
        break;
    }
  }
}

void oversub_raw_ring(benchmark::State& state, RawWait strategy) {
  guarded(state, [&] {
    RawRings<kRoundTripBytes> rings(2 * kOversubChildren, 16);  // 2i: requests, 2i + 1: replies
    SharedMapping control_mapping(sizeof(OversubControl));
    auto& control = *new (control_mapping.at(0)) OversubControl{};
    std::vector<troupe::ChildProcess> children;
    for (std::size_t i = 0; i < kOversubChildren; ++i) {
      children.push_back(troupe::ChildProcess::fork(
          [&, i] { return raw_oversub_child(rings, control, i, strategy); }));
    }
    const auto order =
        strategy == RawWait::kFutex ? std::memory_order_seq_cst : std::memory_order_release;
    std::vector<RawProducer<kRoundTripBytes>> requests;
    std::vector<RawConsumer<kRoundTripBytes>> replies;
    std::vector<std::uint64_t> sent(kOversubChildren), received(kOversubChildren);
    RoundTripMessage message{};
    for (std::size_t i = 0; i < kOversubChildren; ++i) {
      requests.push_back(rings.producer(2 * i));
      replies.push_back(rings.consumer(2 * i + 1));
      for (std::size_t k = 0; k < kInFlight; ++k) {
        stamp(message.bytes, kRoundTripBytes, sent[i]++);
        if (!requests[i].try_write(message.bytes)) fail("request ring full");
      }
      requests[i].publish(order);
      if (strategy == RawWait::kFutex) ring_if_asleep(control.child[i]);
    }
    StallGuard stall;
    auto serve = [&]() -> std::uint64_t {
      for (;;) {
        std::uint64_t done = 0;
        for (std::size_t i = 0; i < kOversubChildren; ++i) {
          std::size_t got = 0;
          while (const std::byte* reply = replies[i].front()) {
            check(reply, kRoundTripBytes, received[i]++);
            replies[i].pop();
            stamp(message.bytes, kRoundTripBytes, sent[i]++);
            if (!requests[i].try_write(message.bytes)) fail("request ring full");
            ++got;
          }
          if (got == 0) continue;
          requests[i].publish(order);
          replies[i].release();
          if (strategy == RawWait::kFutex) ring_if_asleep(control.child[i]);
          done += got;
        }
        if (done != 0) {
          stall.progress();
          return done;
        }
        stall.idle();
        switch (strategy) {
          case RawWait::kSpin:
            shm::cpu_relax();
            break;
          case RawWait::kYield:
            ::sched_yield();
            break;
          case RawWait::kFutex:
            sleep_on(control.parent, [&] {
              return std::all_of(replies.begin(), replies.end(),
                                 [](auto& r) { return r.empty_seq_cst(); });
            });
            break;
        }
      }
    };
    warm_up(serve);
    count_round_trips(state, serve);
    control.stop.store(1, std::memory_order_seq_cst);
    for (Doorbell& bell : control.child) ring_always(bell);
    for (auto& child : children) expect_clean_exit(child);
  });
}

/// Troupe's rings with Troupe's AdaptiveWaiter on both sides. The parent waits for any of its
/// 8 reply rings; a ring can only flag one consumer asleep on its own futex word, so when the
/// waiter reaches its sleep phase the parent sleeps on one reply ring at a time, in turn.
void oversub_troupe_ring(benchmark::State& state) {
  guarded(state, [&] {
    TroupeRings rings(2 * kOversubChildren, shm::kMinRingCapacity);
    SharedMapping control_mapping(sizeof(Control));
    auto& control = *new (control_mapping.at(0)) Control{};
    std::vector<troupe::ChildProcess> children;
    for (std::size_t i = 0; i < kOversubChildren; ++i) {
      children.push_back(troupe::ChildProcess::fork([&, i] {
        shm::SpscRingConsumer requests = rings.consumer(2 * i);
        shm::SpscRingProducer replies = rings.producer(2 * i + 1);
        RingWait wait(true);
        for (;;) {
          std::size_t got = 0;
          while (const std::optional<shm::RingRecord> request = requests.try_take()) {
            if (!replies.try_write(shm::RecordType::kMessage, request->payload)) return 1;
            ++got;
          }
          if (got != 0) {
            replies.publish();
            requests.publish_head();
            continue;
          }
          if (control.stop.load(std::memory_order_acquire) != 0) return 0;
          wait.until(
              [&] {
                return requests.has_data() || control.stop.load(std::memory_order_relaxed) != 0;
              },
              [&](std::chrono::nanoseconds slice) { requests.sleep_for_data(slice); });
        }
      }));
    }
    std::vector<shm::SpscRingProducer> requests;
    std::vector<shm::SpscRingConsumer> replies;
    std::vector<std::uint64_t> sent(kOversubChildren), received(kOversubChildren);
    RoundTripMessage message{};
    const std::span<const std::byte> payload(message.bytes, kRoundTripBytes);
    for (std::size_t i = 0; i < kOversubChildren; ++i) {
      requests.push_back(rings.producer(2 * i));
      replies.push_back(rings.consumer(2 * i + 1));
      for (std::size_t k = 0; k < kInFlight; ++k) {
        stamp(message.bytes, kRoundTripBytes, sent[i]++);
        if (!requests[i].try_write(shm::RecordType::kMessage, payload)) fail("request ring full");
      }
      requests[i].publish();
    }
    RingWait wait(true);
    std::size_t sleep_ring = 0;
    auto serve = [&]() -> std::uint64_t {
      for (;;) {
        std::uint64_t done = 0;
        for (std::size_t i = 0; i < kOversubChildren; ++i) {
          std::size_t got = 0;
          while (const std::optional<shm::RingRecord> reply = replies[i].try_take()) {
            check(reply->payload, kRoundTripBytes, received[i]++);
            stamp(message.bytes, kRoundTripBytes, sent[i]++);
            if (!requests[i].try_write(shm::RecordType::kMessage, payload)) {
              fail("request ring full");
            }
            ++got;
          }
          if (got == 0) continue;
          requests[i].publish();
          replies[i].publish_head();
          done += got;
        }
        if (done != 0) return done;
        wait.until(
            [&] {
              return std::any_of(replies.begin(), replies.end(),
                                 [](auto& r) { return r.has_data(); });
            },
            [&](std::chrono::nanoseconds slice) {
              replies[sleep_ring++ % kOversubChildren].sleep_for_data(slice);
            });
      }
    };
    warm_up(serve);
    count_round_trips(state, serve);
    control.stop.store(1, std::memory_order_seq_cst);
    for (std::size_t i = 0; i < kOversubChildren; ++i) shm::wake_all(rings.control(2 * i));
    for (auto& child : children) expect_clean_exit(child);
  });
}

/// ShmChannel, one per child. A channel's poll waits on that channel only, so the parent
/// serves them in turn: it waits for the replies of one child (its AdaptiveWaiter spins, or
/// yields once it sees the machine oversubscribed), sends as many new requests, and moves on.
void oversub_shm_channel(benchmark::State& state) {
  guarded(state, [&] {
    const Deadline give_up = Clock::now() + kGiveUp;
    std::vector<std::string> names;
    std::vector<std::unique_ptr<shm::ShmChannel>> channels;
    for (std::size_t i = 0; i < kOversubChildren; ++i) {
      names.push_back(shm::unique_segment_name("bench-oversub"));
      channels.push_back(shm::ShmChannel::create(names.back(), shm::ChannelSide::kClient,
                                                 {.ring_bytes = kRoundTripRingBytes}));
    }
    std::vector<troupe::ChildProcess> children;
    for (std::size_t i = 0; i < kOversubChildren; ++i) {
      children.push_back(troupe::ChildProcess::fork([&, i] {
        for (auto& inherited : channels) inherited->segment().disown();
        auto server = shm::ShmChannel::attach(names[i], shm::ChannelSide::kServer);
        return echo_frames(*server, kRoundTripBytes, give_up);
      }));
      channels[i]->expect_peer(children.back().pid());
    }
    std::vector<std::uint64_t> sent(kOversubChildren), received(kOversubChildren);
    RoundTripMessage message{};
    auto send_requests = [&](std::size_t i, std::size_t n) {
      for (std::size_t k = 0; k < n; ++k) {
        stamp(message.bytes, kRoundTripBytes, sent[i]++);
        if (auto ec = channels[i]->send({message.bytes, kRoundTripBytes}, give_up, false)) {
          fail("ShmChannel::send: " + ec.message());
        }
      }
      (void)channels[i]->flush();
    };
    for (std::size_t i = 0; i < kOversubChildren; ++i) send_requests(i, kInFlight);
    std::size_t next = 0;
    auto serve = [&]() -> std::uint64_t {
      const std::size_t i = next;
      next = (next + 1) % kOversubChildren;
      std::error_code ec;
      const std::size_t n = channels[i]->poll(
          [&](troupe::FrameBytes reply) { check(reply, kRoundTripBytes, received[i]++); },
          kInFlight, give_up, ec);
      if (n == 0) fail("ShmChannel::poll: no reply (" + ec.message() + ")");
      send_requests(i, n);
      return n;
    };
    warm_up(serve);
    count_round_trips(state, serve);
    for (auto& channel : channels) channel->close();
    for (auto& child : children) expect_clean_exit(child);
  });
}

// ---------------------------------------------------------------------------------------------
// The table and the ratios.
//
// The 2-vCPU VM has moods: for minutes at a time the same case runs 2-3x faster or slower
// (where the host places the two vCPUs), and single runs vary by +-30%. So each group of cases
// runs kRepetitions rounds, each round running every case of the group once, and each ratio is
// computed per round, between runs a few seconds apart; the table gives the median of those
// paired ratios and their range.

class RatioReporter final : public benchmark::ConsoleReporter {
 public:
  using benchmark::ConsoleReporter::ConsoleReporter;

  // Once a case has all its runs, shows its median run (by time per iteration) with a
  // "spread_%" counter, (max - min) / median. Failed runs are shown as they are.
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      const std::string& name = run.run_name.function_name;
      Case& c = cases_[name];
      if (c.runs.empty()) order_.push_back(name);
      c.runs.push_back(run);
      if (c.runs.size() == static_cast<std::size_t>(kRepetitions)) show(c);
    }
  }

  void Finalize() override {
    for (const std::string& name : order_) {
      if (!cases_[name].shown) show(cases_[name]);
    }
    std::ostream& out = GetOutputStream();
    bool header = false;
    int missed = 0, passed = 0;
    for (const Row& row : rows()) {
      std::vector<double> ratios;
      std::map<std::string, int> best_counts;
      for (int k = 0; k < kRepetitions; ++k) {
        const auto subject = ns_per_iteration(row.subject, k);
        std::optional<double> best;
        std::string best_name;
        for (const std::string& name : row.baselines) {  // the best baseline of this round
          const auto b = ns_per_iteration(name, k);
          if (b && (!best || *b < *best)) {
            best = b;
            best_name = name;
          }
        }
        if (!subject || !best) continue;
        ratios.push_back(row.time ? *subject / *best : *best / *subject);
        ++best_counts[best_name];
      }
      if (ratios.empty()) continue;  // not run (filtered out, or failed)
      std::sort(ratios.begin(), ratios.end());
      const double ratio = ratios[(ratios.size() - 1) / 2];
      std::string baseline = row.baselines.front();
      if (row.baselines.size() > 1) {
        baseline = "best: " + std::max_element(
                                  best_counts.begin(), best_counts.end(),
                                  [](const auto& a, const auto& b) { return a.second < b.second; })
                                  ->first;
      }
      if (!header) {
        out << "\nRatios of runs a few seconds apart, median of " << kRepetitions
            << " rounds (time: subject / baseline, lower is better;\n"
               "rate: subject / baseline, higher is better)\n";
        print_line(out, "subject", "baseline", "ratio", "range", "target", "result");
        header = true;
      }
      std::string result = "info";
      if (row.bound) {
        const bool pass = row.time ? ratio <= *row.bound
                                   : (row.strict ? ratio > *row.bound : ratio >= *row.bound);
        result = pass ? "PASS" : "MISS";
        ++(pass ? passed : missed);
      }
      char text[32], range[48];
      std::snprintf(text, sizeof text, "%.2fx", ratio);
      std::snprintf(range, sizeof range, "%.2f-%.2f", ratios.front(), ratios.back());
      print_line(out, row.subject, baseline, text, range, target_text(row), result);
    }
    if (passed + missed > 0) out << passed << " targets passed, " << missed << " missed\n";
    out.flush();
  }

 private:
  struct Case {
    std::vector<Run> runs;  ///< in the order of the rounds
    bool shown = false;
  };
  struct Row {
    std::string subject;
    std::vector<std::string> baselines;
    bool time;                    ///< compare times (round trip) rather than rates
    std::optional<double> bound;  ///< the target, if the issue sets one
    bool strict = false;          ///< the rate must be above the bound, not just reach it
  };

  static std::vector<Row> rows() {
    std::vector<Row> list = {
        {"RoundTrip/TroupeRing", {"RoundTrip/RawRing"}, true, 1.30},
        {"RoundTrip/ShmChannel", {"RoundTrip/RawRing"}, true, 1.30},
        {"RoundTrip/TroupeRingSpin", {"RoundTrip/RawRing"}, true, {}},
        {"RoundTrip/RawRing", {"RoundTrip/BoostLockfree"}, true, {}},
    };
    for (const std::string_view size : {"64B", "1KiB", "64KiB"}) {
      const std::string s = "Stream/" + std::string(size) + "/";
      const bool target = size == "64B";
      auto bound = [&](double b) { return target ? std::optional<double>(b) : std::nullopt; };
      list.push_back({s + "TroupeRing/each", {s + "RawRing/each"}, false, bound(0.85)});
      list.push_back({s + "TroupeRing/each", {s + "BoostLockfree/each"}, false, bound(1.0), true});
      // Batched: a RecordBatch appended in one copy (the ring's batched write), and records
      // written one by one and published 32 at a time.
      list.push_back({s + "TroupeRing/bulk32", {s + "RawRing/batch32"}, false, bound(0.70)});
      list.push_back(
          {s + "TroupeRing/bulk32", {s + "BoostLockfree/bulk32"}, false, bound(1.0), true});
      list.push_back({s + "TroupeRing/batch32", {s + "RawRing/batch32"}, false, {}});
      list.push_back({s + "TroupeRing/batch32", {s + "BoostLockfree/bulk32"}, false, {}});
      // The same with 64-byte records (8-byte header + 56-byte payload), the raw ring's slot
      // size: equal bytes per message through the caches.
      list.push_back({s + "TroupeRing/record/each", {s + "RawRing/each"}, false, bound(0.85)});
      list.push_back({s + "TroupeRing/record/bulk32", {s + "RawRing/batch32"}, false, bound(0.70)});
      list.push_back({s + "TroupeRing/record/batch32", {s + "RawRing/batch32"}, false, {}});
      // Against Boost's 64-byte elements at equal bytes per message (no target: the issue's
      // "above Boost.Lockfree's" rows are the 64-byte payload ones above).
      list.push_back({s + "TroupeRing/record/each", {s + "BoostLockfree/each"}, false, {}});
      list.push_back({s + "TroupeRing/record/bulk32", {s + "BoostLockfree/bulk32"}, false, {}});
      list.push_back({s + "ShmChannel/each", {s + "RawRing/each"}, false, {}});
      list.push_back({s + "ShmChannel/flush32", {s + "RawRing/batch32"}, false, {}});
      // How the two baselines compare: the raw ring is the "best simple ring", and
      // Boost's bulk push is the batched target's baseline.
      list.push_back({s + "RawRing/each", {s + "BoostLockfree/each"}, false, {}});
      list.push_back({s + "RawRing/batch32", {s + "BoostLockfree/bulk32"}, false, {}});
    }
    list.push_back({"ChannelCost/ShmChannel", {"ChannelCost/TroupeRing"}, true, {}});
    const std::vector<std::string> raw = {"Oversub8/RawRing/spin", "Oversub8/RawRing/yield",
                                          "Oversub8/RawRing/futex"};
    list.push_back({"Oversub8/TroupeRing/adaptive", raw, false, 0.50});
    list.push_back({"Oversub8/ShmChannel", raw, false, {}});
    return list;
  }

  void show(Case& c) {
    c.shown = true;
    std::vector<Run> shown, good;
    for (const Run& run : c.runs) (run.error_occurred ? shown : good).push_back(run);
    if (!good.empty()) {
      std::sort(good.begin(), good.end(), [](const Run& a, const Run& b) {
        return a.GetAdjustedRealTime() < b.GetAdjustedRealTime();
      });
      Run median = good[(good.size() - 1) / 2];
      const double spread =
          (good.back().GetAdjustedRealTime() - good.front().GetAdjustedRealTime()) /
          median.GetAdjustedRealTime();
      median.counters["spread_%"] = benchmark::Counter(100.0 * spread);
      shown.push_back(median);
    }
    benchmark::ConsoleReporter::ReportRuns(shown);
  }

  /// Real time per iteration of `name`'s run in round `k`, unless it failed or did not run.
  std::optional<double> ns_per_iteration(const std::string& name, int k) const {
    const auto it = cases_.find(name);
    if (it == cases_.end() || static_cast<int>(it->second.runs.size()) <= k) return std::nullopt;
    const Run& run = it->second.runs[static_cast<std::size_t>(k)];
    if (run.error_occurred) return std::nullopt;
    return run.GetAdjustedRealTime();
  }

  static std::string target_text(const Row& row) {
    if (!row.bound) return "-";
    char text[32];
    std::snprintf(text, sizeof text, "%s %.2f", row.time ? "<=" : (row.strict ? ">" : ">="),
                  *row.bound);
    return text;
  }

  static void print_line(std::ostream& out, const std::string& subject, const std::string& baseline,
                         const std::string& ratio, const std::string& range,
                         const std::string& target, const std::string& result) {
    char line[320];
    std::snprintf(line, sizeof line, "%-32s %-34s %7s %11s %8s  %s\n", subject.c_str(),
                  baseline.c_str(), ratio.c_str(), range.c_str(), target.c_str(), result.c_str());
    out << line;
  }

  std::map<std::string, Case> cases_;
  std::vector<std::string> order_;
};

/// Registers the cases group by group; each group runs kRepetitions rounds of all its cases,
/// and within a round a subject runs next to the baselines it is compared with.
void register_benchmarks() {
  using State = benchmark::State;
  using Cases = std::vector<std::pair<std::string, std::function<void(State&)>>>;
  std::vector<Cases> groups;
  groups.push_back({
      {"RoundTrip/TroupeRing", [](State& s) { round_trip_troupe_ring(s, true); }},
      {"RoundTrip/RawRing", round_trip_raw_ring},
      {"RoundTrip/ShmChannel", round_trip_shm_channel},
      {"RoundTrip/TroupeRingSpin", [](State& s) { round_trip_troupe_ring(s, false); }},
      {"RoundTrip/BoostLockfree", round_trip_boost_lockfree},
      {"RoundTrip/BoostMessageQueue", round_trip_message_queue},
      {"RoundTrip/Pipe", round_trip_pipe},
      {"RoundTrip/UnixSocket", round_trip_unix_socket},
  });
  auto stream_group = [&]<std::size_t N>(const std::string& size) {
    const std::string s = "Stream/" + size + "/";
    groups.push_back({
        {s + "TroupeRing/each", [](State& st) { stream_troupe_ring<N>(st, 1); }},
        {s + "RawRing/each", [](State& st) { stream_raw_ring<N>(st, 1); }},
        {s + "TroupeRing/record/each", [](State& st) { stream_troupe_ring<N - 8>(st, 1); }},
        {s + "BoostLockfree/each", [](State& st) { stream_boost_lockfree<N>(st, 1); }},
        {s + "ShmChannel/each", [](State& st) { stream_shm_channel<N>(st, 1); }},
        {s + "TroupeRing/batch32", [](State& st) { stream_troupe_ring<N>(st, kBatch); }},
        {s + "RawRing/batch32", [](State& st) { stream_raw_ring<N>(st, kBatch); }},
        {s + "TroupeRing/record/batch32", [](State& st) { stream_troupe_ring<N - 8>(st, kBatch); }},
        {s + "TroupeRing/bulk32",
         [](State& st) { stream_troupe_ring<N>(st, kBatch, Writes::kBulk); }},
        {s + "TroupeRing/record/bulk32",
         [](State& st) { stream_troupe_ring<N - 8>(st, kBatch, Writes::kBulk); }},
        {s + "BoostLockfree/bulk32", [](State& st) { stream_boost_lockfree<N>(st, kBatch); }},
        {s + "ShmChannel/flush32", [](State& st) { stream_shm_channel<N>(st, kBatch); }},
    });
  };
  stream_group.operator()<64>("64B");
  stream_group.operator()<1024>("1KiB");
  stream_group.operator()<64 * 1024>("64KiB");
  groups.push_back({
      {"ChannelCost/TroupeRing", cost_troupe_ring},
      {"ChannelCost/ShmChannel", cost_shm_channel},
  });
  groups.push_back({
      {"Oversub8/RawRing/spin", [](State& s) { oversub_raw_ring(s, RawWait::kSpin); }},
      {"Oversub8/RawRing/yield", [](State& s) { oversub_raw_ring(s, RawWait::kYield); }},
      {"Oversub8/RawRing/futex", [](State& s) { oversub_raw_ring(s, RawWait::kFutex); }},
      {"Oversub8/TroupeRing/adaptive", oversub_troupe_ring},
      {"Oversub8/ShmChannel", oversub_shm_channel},
  });
  for (const Cases& group : groups) {
    for (int round = 0; round < kRepetitions; ++round) {
      for (const auto& [name, fn] : group) {
        benchmark::RegisterBenchmark(name.c_str(), fn)->UseRealTime()->MinTime(kMinSeconds);
      }
    }
  }
}

/// The console options the library would choose from the flags (it does so only for its own
/// default reporter): tabular counters when asked, colour on a terminal unless refused.
benchmark::ConsoleReporter::OutputOptions console_options(int argc, char** argv) {
  bool tabular = false;
  std::optional<bool> color;
  auto truthy = [](std::string_view v) {
    return v.empty() || v == "=true" || v == "=1" || v == "=yes" || v == "=t" || v == "=y";
  };
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    constexpr std::string_view kTabular = "--benchmark_counters_tabular";
    constexpr std::string_view kColor = "--benchmark_color";
    if (arg.starts_with(kTabular)) tabular = truthy(arg.substr(kTabular.size()));
    if (arg.starts_with(kColor) && arg.substr(kColor.size()) != "=auto") {
      color = truthy(arg.substr(kColor.size()));
    }
  }
  int options = benchmark::ConsoleReporter::OO_None;
  if (tabular) options |= benchmark::ConsoleReporter::OO_Tabular;
  if (color.value_or(::isatty(STDOUT_FILENO) != 0)) options |= benchmark::ConsoleReporter::OO_Color;
  return static_cast<benchmark::ConsoleReporter::OutputOptions>(options);
}

}  // namespace

int main(int argc, char** argv) {
  const auto options = console_options(argc, argv);
  bool console = true;  // another --benchmark_format gets the library's reporter, no ratios
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg.starts_with("--benchmark_format=") && arg != "--benchmark_format=console") {
      console = false;
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_benchmarks();
  if (console) {
    RatioReporter reporter(options);
    benchmark::RunSpecifiedBenchmarks(&reporter);
  } else {
    benchmark::RunSpecifiedBenchmarks();
  }
  benchmark::Shutdown();
  return 0;
}
