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
//   troupe 64 B   SpscRingProducer/Consumer, 64-byte payloads (72-byte records)
//   troupe rec64  the same with 56-byte payloads (64-byte records, the raw ring's slot size)
//   boost bulk    Boost.Lockfree spsc_queue of 64-byte elements, bulk push of 32, consume_all
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
#include "troupe/shm/spsc_ring.hpp"

namespace {

using namespace troupe::bench;
namespace shm = troupe::shm;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kBatch = 32;
constexpr std::size_t kRingBytes = std::size_t{1} << 20;
constexpr double kStateChange = 1.3;  ///< raw-ring runs of one round further apart: left out

/// A message of N bytes with its sequence number in its first and last 8 bytes.
template <std::size_t N>
struct alignas(64) Message {
  std::byte bytes[N];
};

/// The producer's 32 messages, stamped a batch at a time (as Boost's bulk push needs them).
template <std::size_t N>
struct Batch {
  Message<N> messages[kBatch] = {};
  void stamp(std::uint64_t first) noexcept {
    for (std::size_t i = 0; i < kBatch; ++i) {
      const std::uint64_t seq = first + i;
      std::memcpy(messages[i].bytes, &seq, 8);
      std::memcpy(messages[i].bytes + N - 8, &seq, 8);
    }
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

template <std::size_t N>
double troupe_ring(std::uint64_t count) {
  SharedMapping mapping(sizeof(shm::RingControl) + kRingBytes);
  auto& control = *new (mapping.at(0)) shm::RingControl{};
  shm::initialize_ring(control, kRingBytes);
  std::byte* data = mapping.at(sizeof(shm::RingControl));
  return timed_stream(
      [&] {
        shm::SpscRingProducer producer(control, data);
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

double boost_bulk(std::uint64_t count) {
  using Queue =
      boost::lockfree::spsc_queue<Message<64>, boost::lockfree::capacity<kRingBytes / 64>>;
  SharedMapping mapping(sizeof(Queue));
  auto& queue = *new (mapping.at(0)) Queue();
  return timed_stream(
      [&] {
        Batch<64> batch;
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
          if (queue.consume_all([&](const Message<64>& m) { check(m.bytes, 64, expected++); }) ==
              0) {
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
    std::printf("  %-48s %5.2fx  (p10 %.2f, p90 %.2f, %zu rounds)\n", what, quantile(ratios, 0.5),
                quantile(ratios, 0.1), quantile(ratios, 0.9), ratios.size());
  }
};

}  // namespace

int main(int argc, char** argv) try {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 25;
  const std::uint64_t count =
      (argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 2'000'000) / kBatch * kBatch;
  if (rounds <= 0 || count == 0) fail("usage: stream_pairs [rounds > 0] [messages >= 32]");
  Figures troupe64, record64, boost, troupe_vs_boost, record_vs_boost;
  std::vector<double> raw_ns;
  int left_out = 0;
  for (int round = 0; round < rounds; ++round) {
    // The subjects between two raw-ring runs, in turn forwards and backwards so that none
    // always runs next to the same one.
    const double raw_before = raw_ring(count);
    double t64 = 0, b = 0, r64 = 0;
    if (round % 2 == 0) {
      t64 = troupe_ring<64>(count);
      b = boost_bulk(count);
      r64 = troupe_ring<56>(count);
    } else {
      r64 = troupe_ring<56>(count);
      b = boost_bulk(count);
      t64 = troupe_ring<64>(count);
    }
    const double raw_after = raw_ring(count);
    if (std::max(raw_before, raw_after) > kStateChange * std::min(raw_before, raw_after)) {
      ++left_out;
      continue;
    }
    const double raw = (raw_before + raw_after) / 2;
    raw_ns.push_back(raw);
    troupe64.ratios.push_back(raw / t64);  // rates: higher is better
    record64.ratios.push_back(raw / r64);
    boost.ratios.push_back(raw / b);
    troupe_vs_boost.ratios.push_back(b / t64);
    record_vs_boost.ratios.push_back(b / r64);
  }
  std::printf(
      "Batched streams (32 a publication), %llu messages a run, %d rounds (%d left out: the "
      "VM changed state)\n",
      static_cast<unsigned long long>(count), rounds, left_out);
  if (raw_ns.empty()) return 1;
  const double raw_median = quantile(raw_ns, 0.5);
  std::printf("raw ring: median %.1f ns a message (%.0f M/s)\nrates, subject / baseline:\n",
              raw_median, 1e3 / raw_median);
  troupe64.print("troupe ring, 64 B payload / raw ring");
  record64.print("troupe ring, 64-byte records / raw ring");
  boost.print("boost bulk push / raw ring");
  troupe_vs_boost.print("troupe ring, 64 B payload / boost bulk push");
  record_vs_boost.print("troupe ring, 64-byte records / boost bulk push");
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "stream_pairs: %s\n", e.what());
  return 1;
}
