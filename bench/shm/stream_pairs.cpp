// Batched 64-byte streams, measured in short alternating runs so that each ratio compares runs
// made in the same state of this VM. spsc_ring_bench runs each case three times for half a
// second; its ratios for these streams swing from 0.1x to 3x when the VM changes state (every few
// seconds, for reasons outside it). Here every round runs the raw ring, then each subject (in
// turn forwards and backwards), then the raw ring again, each for a fixed number of messages
// (tens of milliseconds); a round whose
// two raw-ring runs differ by more than 30% saw the state change and is left out. The figures
// are the medians over the rounds kept, with their 10th and 90th percentiles.
//
// Subjects, each sending 32 messages a publication, a child process producing, this one
// consuming and checking each message's sequence number (its first and last 8 bytes):
//   raw ring      support/raw_ring.hpp: 64-byte slots, both sides spinning (the baseline)
//   troupe 64 B   SpscRingProducer/Consumer, 64-byte payloads (72-byte records), 32 records
//                 appended as one RecordBatch (stamped in place, as Boost's array is)
//   troupe rec64  the same with 56-byte payloads (64-byte records, the raw ring's slot size)
//   troupe each   64-byte payloads written record by record (try_write), published every 32
//   boost bulk    Boost.Lockfree spsc_queue of 64-byte elements, bulk push of 32, consume_all
//   boost bulk72  the same with 72-byte elements: the bytes a Troupe record of a 64-byte
//                 payload takes, so that ring designs compare at equal bytes a message
//
//   build/release/bench/stream_pairs [rounds = 25] [messages a run = 2000000]
#include <algorithm>
#include <atomic>
#include <boost/lockfree/spsc_queue.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <new>
#include <string>
#include <vector>

#include "support/raw_ring.hpp"
#include "support/stall_guard.hpp"
#include "troupe/core/child_process.hpp"
#include "troupe/core/detail/cpu_relax.hpp"
#include "troupe/shm/record_batch.hpp"
#include "troupe/shm/spsc_ring.hpp"

namespace {

using namespace troupe::bench;
namespace shm = troupe::shm;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kBatch = 32;
constexpr std::size_t kRingBytes = std::size_t{1} << 20;
constexpr double kStateChange = 1.3;  ///< raw-ring runs of one round further apart: left out

/// A message of N bytes with its sequence number in its first and last 8 bytes; each starts a
/// cache line, unless packed (Boost's bulk push of 72-byte elements copies them contiguous).
template <std::size_t N, std::size_t Align = 64>
struct alignas(Align) Message {
  std::byte bytes[N];
};

/// Stamps a message of `size` bytes at `at` with `seq`.
void stamp(std::byte* at, std::size_t size, std::uint64_t seq) noexcept {
  std::memcpy(at, &seq, 8);
  std::memcpy(at + size - 8, &seq, 8);
}

/// The producer's 32 messages, stamped a batch at a time (as Boost's bulk push needs them).
template <std::size_t N, std::size_t Align = 64>
struct Batch {
  Message<N, Align> messages[kBatch] = {};
  void stamp(std::uint64_t first) noexcept {
    for (std::size_t i = 0; i < kBatch; ++i) ::stamp(messages[i].bytes, N, first + i);
  }
};

/// Throws unless `message` carries `expected`, whole.
void check(const std::byte* message, std::size_t size, std::uint64_t expected) {
  std::uint64_t first, last;
  std::memcpy(&first, message, 8);
  std::memcpy(&last, message + size - 8, 8);
  if (first != expected || last != expected) {
    fail("message " + std::to_string(expected) + " arrived as " + std::to_string(first) + "/" +
         std::to_string(last));
  }
}

/// The producer's start line: it sets `ready`, then spins until the consumer sets `go`.
struct Start {
  alignas(kLine) std::atomic<std::uint32_t> ready{0};
  alignas(kLine) std::atomic<std::uint32_t> go{0};
};

/// Runs `produce` in a child process and `consume` here; returns the consumer's ns a message.
template <class Produce, class Consume>
double timed_stream(Produce&& produce, Consume&& consume) {
  SharedMapping start_mapping(sizeof(Start));
  auto& start = *new (start_mapping.at(0)) Start{};
  auto child = troupe::ChildProcess::fork([&] {
    start.ready.store(1, std::memory_order_release);
    while (start.go.load(std::memory_order_acquire) == 0) troupe::cpu_relax();
    produce();
    return 0;
  });
  while (start.ready.load(std::memory_order_acquire) == 0) troupe::cpu_relax();
  const auto begin = Clock::now();
  start.go.store(1, std::memory_order_release);
  const std::uint64_t messages = consume();
  const auto end = Clock::now();
  if (const int status = child.wait(); status != 0) {
    fail("producer " + troupe::describe_exit(status));
  }
  return std::chrono::duration<double, std::nano>(end - begin).count() /
         static_cast<double>(messages);
}

double raw_ring(std::uint64_t count) {
  constexpr std::size_t kSlots = kRingBytes / 64;
  RawRings<64> rings(1, kSlots);
  return timed_stream(
      [&] {
        RawProducer<64> producer = rings.producer(0);
        Batch<64> batch;
        for (std::uint64_t seq = 0; seq < count; seq += kBatch) {
          batch.stamp(seq);
          for (const auto& m : batch.messages) {
            while (!producer.try_write(m.bytes)) {
              producer.publish(std::memory_order_release);
              troupe::cpu_relax();
            }
          }
          producer.publish(std::memory_order_release);
        }
      },
      [&] {
        RawConsumer<64> consumer = rings.consumer(0);
        StallGuard stall;
        std::uint64_t expected = 0;
        while (expected < count) {
          while (const std::byte* m = consumer.front()) {
            check(m, 64, expected++);
            consumer.pop();
            if (consumer.unreleased() >= kSlots / 4) consumer.release();
            stall.progress();
          }
          consumer.release();
          troupe::cpu_relax();
          stall.idle();
        }
        return expected;
      });
}

/// How the Troupe producer writes a batch: one RecordBatch appended in one copy, or record by
/// record.
enum class Writes { kBulk, kEach };

template <std::size_t N>
double troupe_ring(std::uint64_t count, Writes writes) {
  SharedMapping mapping(sizeof(shm::RingControl) + kRingBytes);
  auto& control = *new (mapping.at(0)) shm::RingControl{};
  shm::initialize_ring(control, kRingBytes);
  std::byte* data = mapping.at(sizeof(shm::RingControl));
  return timed_stream(
      [&] {
        shm::SpscRingProducer producer(control, data);
        if (writes == Writes::kBulk) {
          shm::RecordBatch records(kBatch * shm::record_size(N));
          std::byte* payloads[kBatch];
          for (auto& payload : payloads) payload = records.add(shm::RecordType::kMessage, N);
          for (std::uint64_t seq = 0; seq < count; seq += kBatch) {
            for (std::size_t i = 0; i < kBatch; ++i) stamp(payloads[i], N, seq + i);
            while (!producer.try_append(records)) {
              producer.publish();
              troupe::cpu_relax();
            }
            producer.publish();
          }
          return;
        }
        Batch<N> batch;
        for (std::uint64_t seq = 0; seq < count; seq += kBatch) {
          batch.stamp(seq);
          for (const auto& m : batch.messages) {
            while (!producer.try_write(shm::RecordType::kMessage, {m.bytes, N})) {
              producer.publish();
              troupe::cpu_relax();
            }
          }
          producer.publish();
        }
      },
      [&] {
        shm::SpscRingConsumer consumer(control, data);
        StallGuard stall;
        std::uint64_t expected = 0;
        while (expected < count) {
          while (const auto record = consumer.try_take()) {
            if (record->payload.size() != N) fail("a record of the wrong size");
            check(record->payload.data(), N, expected++);
            if (consumer.unreleased_bytes() >= kRingBytes / 4) consumer.publish_head();
            stall.progress();
          }
          if (consumer.corrupt()) fail("the ring broke the record protocol");
          consumer.publish_head();
          while (expected < count && !consumer.has_data()) {
            troupe::cpu_relax();
            stall.idle();
          }
        }
        return expected;
      });
}

/// Boost's queue of N-byte elements (packed unless N is a multiple of a line), bulk pushes.
template <std::size_t N>
double boost_bulk(std::uint64_t count) {
  constexpr std::size_t kAlign = N % 64 == 0 ? 64 : 8;
  using Element = Message<N, kAlign>;
  static_assert(sizeof(Element) == N);
  using Queue = boost::lockfree::spsc_queue<Element, boost::lockfree::capacity<kRingBytes / N>>;
  SharedMapping mapping(sizeof(Queue));
  auto& queue = *new (mapping.at(0)) Queue();
  return timed_stream(
      [&] {
        Batch<N, kAlign> batch;
        for (std::uint64_t seq = 0; seq < count; seq += kBatch) {
          batch.stamp(seq);
          for (std::size_t pushed = 0; pushed < kBatch;) {
            pushed += queue.push(batch.messages + pushed, kBatch - pushed);
            if (pushed < kBatch) troupe::cpu_relax();
          }
        }
      },
      [&] {
        StallGuard stall;
        std::uint64_t expected = 0;
        while (expected < count) {
          if (queue.consume_all([&](const Element& m) { check(m.bytes, N, expected++); }) == 0) {
            troupe::cpu_relax();
            stall.idle();
          } else {
            stall.progress();
          }
        }
        return expected;
      });
}

/// The `q` quantile of `values` (sorted here), by the nearest rank below.
double quantile(std::vector<double>& values, double q) {
  std::sort(values.begin(), values.end());
  return values[static_cast<std::size_t>(q * static_cast<double>(values.size() - 1))];
}

struct Figures {
  std::vector<double> ratios;
  void print(const char* what) {
    if (ratios.empty()) return;
    std::printf("  %-52s %5.2fx  (p10 %.2f, p90 %.2f, %zu rounds)\n", what, quantile(ratios, 0.5),
                quantile(ratios, 0.1), quantile(ratios, 0.9), ratios.size());
  }
};

}  // namespace

int main(int argc, char** argv) try {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 25;
  const std::uint64_t count =
      (argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 2'000'000) / kBatch * kBatch;
  if (rounds <= 0 || count == 0) fail("usage: stream_pairs [rounds > 0] [messages >= 32]");
  // Rates, subject / baseline (higher is better).
  struct Pair {
    const char* what;
    std::string subject, baseline;
    Figures figures{};
  };
  std::vector<Pair> pairs = {
      {"troupe ring, 64 B payload / raw ring", "troupe64", "raw"},
      {"troupe ring, 64-byte records / raw ring", "rec64", "raw"},
      {"troupe ring, written record by record / raw ring", "each64", "raw"},
      {"boost bulk push / raw ring", "boost64", "raw"},
      {"boost bulk push, 72-byte elements / raw ring", "boost72", "raw"},
      {"troupe ring, 64 B payload / boost bulk push", "troupe64", "boost64"},
      {"troupe ring, 64-byte records / boost bulk push", "rec64", "boost64"},
      {"troupe ring, 64 B payload / boost, 72-byte elements", "troupe64", "boost72"},
  };
  const std::vector<std::pair<std::string, std::function<double()>>> subjects = {
      {"troupe64", [&] { return troupe_ring<64>(count, Writes::kBulk); }},
      {"rec64", [&] { return troupe_ring<56>(count, Writes::kBulk); }},
      {"each64", [&] { return troupe_ring<64>(count, Writes::kEach); }},
      {"boost64", [&] { return boost_bulk<64>(count); }},
      {"boost72", [&] { return boost_bulk<72>(count); }},
  };
  std::vector<double> raw_ns;
  int left_out = 0;
  for (int round = 0; round < rounds; ++round) {
    // The subjects between two raw-ring runs, in turn forwards and backwards so that none
    // always runs next to the same one.
    std::map<std::string, double> ns;
    const double raw_before = raw_ring(count);
    for (std::size_t i = 0; i < subjects.size(); ++i) {
      const auto& [name, run] = subjects[round % 2 == 0 ? i : subjects.size() - 1 - i];
      ns[name] = run();
    }
    const double raw_after = raw_ring(count);
    if (std::max(raw_before, raw_after) > kStateChange * std::min(raw_before, raw_after)) {
      ++left_out;
      continue;
    }
    ns["raw"] = (raw_before + raw_after) / 2;
    raw_ns.push_back(ns["raw"]);
    for (Pair& pair : pairs) pair.figures.ratios.push_back(ns[pair.baseline] / ns[pair.subject]);
  }
  std::printf(
      "Batched streams (32 a publication), %llu messages a run, %d rounds (%d left out: the "
      "VM changed state)\n",
      static_cast<unsigned long long>(count), rounds, left_out);
  if (raw_ns.empty()) return 1;
  const double raw_median = quantile(raw_ns, 0.5);
  std::printf("raw ring: median %.1f ns a message (%.0f M/s)\nrates, subject / baseline:\n",
              raw_median, 1e3 / raw_median);
  for (Pair& pair : pairs) pair.figures.print(pair.what);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "stream_pairs: %s\n", e.what());
  return 1;
}
