// The record protocol, single-threaded: wrap boundaries, padding, fullness, batching, and a
// consumer's refusal of corrupt records.
#include "troupe/shm/spsc_ring.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "shm/ring_fixture.hpp"

namespace troupe::shm {
namespace {

using test::advance;
using test::bytes;
using test::LocalRing;

// Pushes `msg` until the ring refuses; returns how many went in. With 120-byte messages
// (128-byte records) a 4096-byte ring takes 31: it keeps one word free for the terminator.
int fill(SpscRingProducer& p, std::span<const std::byte> msg) {
  int pushed = 0;
  while (p.try_push(RecordType::kMessage, msg)) ++pushed;
  return pushed;
}

TEST(SpscRingTest, RecordSizeIsAlignedToEight) {
  EXPECT_EQ(record_size(0), 8u);
  EXPECT_EQ(record_size(1), 16u);
  EXPECT_EQ(record_size(8), 16u);
  EXPECT_EQ(record_size(9), 24u);
  EXPECT_EQ(max_record_payload(4096), 2040u);
}

TEST(SpscRingTest, ValidCapacities) {
  EXPECT_TRUE(valid_ring_capacity(4096));
  EXPECT_TRUE(valid_ring_capacity(1 << 20));
  EXPECT_FALSE(valid_ring_capacity(2048));
  EXPECT_FALSE(valid_ring_capacity(4096 + 8));
  EXPECT_FALSE(valid_ring_capacity(std::size_t{1} << 31));
}

TEST(SpscRingTest, PushThenTakeOneRecord) {
  LocalRing ring(4096);
  auto p = ring.producer();
  auto c = ring.consumer();
  EXPECT_FALSE(c.try_take());
  auto msg = bytes(100, 1);
  ASSERT_TRUE(p.try_push(RecordType::kMessage, msg));
  auto r = c.try_take();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, RecordType::kMessage);
  EXPECT_TRUE(std::equal(r->payload.begin(), r->payload.end(), msg.begin(), msg.end()));
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(r->payload.data()) % 8, 0u);
  EXPECT_FALSE(c.try_take());
}

TEST(SpscRingTest, ZeroLengthRecord) {
  LocalRing ring(4096);
  auto p = ring.producer();
  auto c = ring.consumer();
  ASSERT_TRUE(p.try_push(RecordType::kMessage, {}));
  auto r = c.try_take();
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->payload.empty());
}

TEST(SpscRingTest, GatherWritesBothParts) {
  LocalRing ring(4096);
  auto p = ring.producer();
  auto c = ring.consumer();
  auto a = bytes(5, 1), b = bytes(11, 2);
  ASSERT_TRUE(p.try_write(RecordType::kMessage, a, b));
  p.publish();
  auto r = c.try_take();
  ASSERT_TRUE(r);
  ASSERT_EQ(r->payload.size(), 16u);
  EXPECT_TRUE(std::equal(a.begin(), a.end(), r->payload.begin()));
  EXPECT_TRUE(std::equal(b.begin(), b.end(), r->payload.begin() + 5));
}

TEST(SpscRingTest, BatchedRecordsInvisibleUntilPublished) {
  LocalRing ring(4096);
  auto p = ring.producer();
  auto c = ring.consumer();
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(p.try_write(RecordType::kMessage, bytes(20, i)));
  EXPECT_EQ(p.unpublished_bytes(), 10 * record_size(20));
  EXPECT_FALSE(c.try_take());
  p.publish();
  EXPECT_EQ(p.unpublished_bytes(), 0u);
  for (int i = 0; i < 10; ++i) {
    auto r = c.try_take();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->payload[0], bytes(20, i)[0]);
  }
  EXPECT_FALSE(c.try_take());
}

TEST(SpscRingTest, FullRingRefusesUntilConsumerPublishesHead) {
  LocalRing ring(4096);
  auto p = ring.producer();
  auto c = ring.consumer();
  const auto msg = bytes(120, 3);
  const int pushed = fill(p, msg);
  EXPECT_EQ(pushed, 31);
  EXPECT_FALSE(p.has_space_for(120));
  ASSERT_TRUE(c.try_take());
  EXPECT_FALSE(p.try_push(RecordType::kMessage, msg));  // taken, but not yet released
  c.publish_head();
  EXPECT_TRUE(p.try_push(RecordType::kMessage, msg));
}

// Every wrap position: for each 8-byte offset of the ring, records of sizes around the bytes left
// before the end go through intact, with a padding record where they do not fit.
TEST(SpscRingTest, EveryWrapBoundary) {
  constexpr std::size_t kCap = 4096;
  for (std::size_t start = 0; start < kCap; start += 8) {
    for (std::size_t delta : {0, 8, 16}) {
      LocalRing ring(kCap);
      auto p = ring.producer();
      auto c = ring.consumer();
      advance(p, c, start);
      const std::size_t to_end = kCap - start;
      for (std::size_t payload_plus_header : {to_end - delta, to_end + delta}) {
        if (payload_plus_header < 8 || payload_plus_header - 8 > max_record_payload(kCap)) continue;
        const auto msg = bytes(payload_plus_header - 8, static_cast<int>(start));
        ASSERT_TRUE(p.try_push(RecordType::kMessage, msg)) << start << " " << payload_plus_header;
        auto r = c.try_take();
        ASSERT_TRUE(r) << start;
        ASSERT_TRUE(std::equal(r->payload.begin(), r->payload.end(), msg.begin(), msg.end()))
            << "start " << start << " size " << payload_plus_header;
        c.publish_head();
      }
      EXPECT_FALSE(c.try_take());
    }
  }
}

TEST(SpscRingTest, LargestRecordFitsAtEveryPositionOfAnEmptyRing) {
  constexpr std::size_t kCap = 4096;
  const auto big = bytes(max_record_payload(kCap), 9);
  for (std::size_t start = 0; start < kCap; start += 8) {
    LocalRing ring(kCap);
    auto p = ring.producer();
    auto c = ring.consumer();
    advance(p, c, start);
    ASSERT_TRUE(p.try_push(RecordType::kMessage, big)) << start;
    auto r = c.try_take();
    ASSERT_TRUE(r) << start;
    ASSERT_TRUE(std::equal(r->payload.begin(), r->payload.end(), big.begin(), big.end()));
  }
}

TEST(SpscRingTest, PublishedRecordsArePacked) {
  LocalRing ring(4096);
  auto p = ring.producer();
  auto c = ring.consumer();
  ASSERT_TRUE(p.try_push(RecordType::kMessage, bytes(20, 1)));  // a 32-byte record
  EXPECT_EQ(ring.control().tail.load(), 32u);
  ASSERT_TRUE(p.try_push(RecordType::kMessage, bytes(20, 2)));
  EXPECT_EQ(ring.control().tail.load(), 64u);
  for (int i = 1; i <= 2; ++i) {
    auto r = c.try_take();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->payload.size(), 20u);
    EXPECT_EQ(r->payload[0], bytes(20, i)[0]);
  }
  EXPECT_FALSE(c.try_take());
}

TEST(SpscRingTest, ManyLapsKeepOrderAndContent) {
  LocalRing ring(4096);
  auto p = ring.producer();
  auto c = ring.consumer();
  std::uint64_t next_write = 0, next_read = 0;
  std::mt19937 rng(5);
  while (next_read < 100'000) {
    while (next_write - next_read < 50) {
      auto msg = bytes(8 + rng() % 300, static_cast<int>(next_write));
      std::memcpy(msg.data(), &next_write, 8);
      if (!p.try_write(RecordType::kMessage, msg)) break;
      ++next_write;
    }
    p.publish();
    while (auto r = c.try_take()) {
      std::uint64_t seq = 0;
      std::memcpy(&seq, r->payload.data(), 8);
      ASSERT_EQ(seq, next_read);
      ++next_read;
    }
    c.publish_head();
  }
}

TEST(SpscRingTest, ConsumerRefusesCorruptLength) {
  LocalRing ring(4096);
  auto p = ring.producer();
  auto c = ring.consumer();
  ASSERT_TRUE(p.try_push(RecordType::kMessage, bytes(16, 1)));
  RecordHeader bad{1u << 20, RecordType::kMessage};  // longer than the ring
  std::memcpy(ring.data(), &bad, sizeof bad);
  EXPECT_FALSE(c.try_take());
  EXPECT_TRUE(c.corrupt());
  EXPECT_FALSE(c.try_take());  // for good
}

TEST(SpscRingTest, ConsumerRefusesUnknownType) {
  LocalRing ring(4096);
  auto p = ring.producer();
  auto c = ring.consumer();
  ASSERT_TRUE(p.try_push(RecordType::kMessage, bytes(16, 1)));
  RecordHeader bad{16, static_cast<RecordType>(99)};
  std::memcpy(ring.data(), &bad, sizeof bad);
  EXPECT_FALSE(c.try_take());
  EXPECT_TRUE(c.corrupt());
}

TEST(SpscRingTest, ConsumerRefusesRecordBeyondTheProducersSpace) {
  // The producer may write at most a lap past what the consumer released: a header claiming
  // more breaks the protocol, even when the record would stay inside the data area.
  constexpr std::size_t kCap = 4096;
  LocalRing ring(kCap);
  auto p = ring.producer();
  auto c = ring.consumer();
  advance(p, c, kCap / 2);
  ASSERT_TRUE(p.try_push(RecordType::kMessage, bytes(max_record_payload(kCap), 1)));
  ASSERT_TRUE(c.try_take());  // taken, not released: released is half a lap behind head
  const std::uint64_t bad = make_header(kCap - 8, RecordType::kMessage);  // all of the area
  std::memcpy(ring.data(), &bad, sizeof bad);
  EXPECT_FALSE(c.try_take());
  EXPECT_TRUE(c.corrupt());
}

TEST(SpscRingTest, ARecordIsPublishedByItsHeader) {
  LocalRing ring(4096);
  auto p = ring.producer();
  auto c = ring.consumer();
  ASSERT_TRUE(p.try_write(RecordType::kMessage, bytes(20, 1)));
  ASSERT_TRUE(p.try_write(RecordType::kMessage, bytes(20, 2)));
  std::uint64_t first_header = 1;
  std::memcpy(&first_header, ring.data(), sizeof first_header);
  EXPECT_EQ(first_header, 0u);  // held back: it publishes the batch
  EXPECT_FALSE(c.has_data());
  EXPECT_FALSE(c.maybe_has_data());
  p.publish();
  std::memcpy(&first_header, ring.data(), sizeof first_header);
  EXPECT_EQ(first_header, make_header(20, RecordType::kMessage));
  EXPECT_TRUE(c.has_data());
  EXPECT_TRUE(c.maybe_has_data());
}

// One terminator a publication: a batch's records leave the words after them alone until
// publish() stores the one after the last; a lone record gets its own when it is written.
TEST(SpscRingTest, ABatchIsTerminatedWhenPublished) {
  constexpr std::size_t kCap = 4096;
  LocalRing ring(kCap);
  const std::uint64_t lookalike = make_header(16, RecordType::kMessage);
  for (std::size_t i = 8; i < kCap; i += 8) std::memcpy(ring.data() + i, &lookalike, 8);
  auto p = ring.producer();
  auto c = ring.consumer();
  auto word_at = [&](std::size_t at) {
    std::uint64_t word;
    std::memcpy(&word, ring.data() + at, sizeof word);
    return word;
  };
  ASSERT_TRUE(p.try_write(RecordType::kMessage, bytes(24, 1)));  // a 32-byte record at 0
  EXPECT_EQ(word_at(32), 0u);  // the first record's terminator, stored at once
  ASSERT_TRUE(p.try_write(RecordType::kMessage, bytes(24, 2)));  // at 32
  ASSERT_TRUE(p.try_write(RecordType::kMessage, bytes(24, 3)));  // at 64
  EXPECT_EQ(word_at(96), lookalike);                             // not yet
  p.publish();
  EXPECT_EQ(word_at(96), 0u);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(c.try_take()) << i;
  EXPECT_FALSE(c.try_take());
  EXPECT_FALSE(c.corrupt());
}

// Publishes four records as one batch and takes them: the consumer then watches the tail.
void take_a_batch(SpscRingProducer& p, SpscRingConsumer& c) {
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(p.try_write(RecordType::kMessage, bytes(40, i)));
  p.publish();
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(c.try_take()) << i;
  EXPECT_FALSE(c.try_take());  // caught up after a batch
  c.publish_head();
}

// Publishes one record, then puts the shared tail back to the consumer's released head: a
// header the tail does not tell of.
void push_behind_the_tail(LocalRing& ring, SpscRingProducer& p, int seed) {
  const std::uint64_t head = ring.control().head.load();
  ASSERT_TRUE(p.try_push(RecordType::kMessage, bytes(40, seed)));
  ring.control().tail.store(head);
}

// Asks has_data() until it says yes, within a bound (the tail watch's looks are bounded).
void look_until_seen(SpscRingConsumer& c) {
  int looks = 1;
  while (!c.has_data()) {
    ASSERT_LT(++looks, 100'000) << "a published header was never seen";
  }
}

// After a batch the consumer asks the shared tail before the header word at its head (the
// line the producer is writing); the tail is only a hint, so a header published without its
// tail (a producer that died between the two stores) is still seen, after a bounded number of
// looks. After a lone record it looks at the header word at once.
TEST(SpscRingTest, AfterABatchTheConsumerWatchesTheTailButStillSeesAHeaderWithoutIt) {
  LocalRing ring(4096);
  auto p = ring.producer();
  auto c = ring.consumer();
  ASSERT_NO_FATAL_FAILURE(take_a_batch(p, c));
  ASSERT_NO_FATAL_FAILURE(push_behind_the_tail(ring, p, 9));
  EXPECT_FALSE(c.has_data());  // the first look goes to the tail
  ASSERT_NO_FATAL_FAILURE(look_until_seen(c));
  ASSERT_TRUE(c.try_take());
  EXPECT_FALSE(c.try_take());  // caught up after one record: the header word, at once
  c.publish_head();
  ASSERT_NO_FATAL_FAILURE(push_behind_the_tail(ring, p, 10));
  EXPECT_TRUE(c.has_data());
  ASSERT_TRUE(c.try_take());
  EXPECT_FALSE(c.corrupt());
}

// A second look that finds nothing (a consumer that returned what it took and comes back, as
// ShmChannel::poll does) keeps the watch a batch started.
TEST(SpscRingTest, ASecondEmptyLookKeepsTheTailWatch) {
  LocalRing ring(4096);
  auto p = ring.producer();
  auto c = ring.consumer();
  ASSERT_NO_FATAL_FAILURE(take_a_batch(p, c));
  EXPECT_FALSE(c.try_take());
  EXPECT_FALSE(c.try_take());
  ASSERT_NO_FATAL_FAILURE(push_behind_the_tail(ring, p, 9));
  EXPECT_FALSE(c.has_data());  // still watching the tail
  ASSERT_NO_FATAL_FAILURE(look_until_seen(c));
  ASSERT_TRUE(c.try_take());
  EXPECT_FALSE(c.corrupt());
}

// A lone record taken after a batch (no wait between) ends the watch: the next wait is a
// round trip's, on the header word.
TEST(SpscRingTest, ALoneRecordAfterABatchEndsTheTailWatch) {
  LocalRing ring(4096);
  auto p = ring.producer();
  auto c = ring.consumer();
  ASSERT_NO_FATAL_FAILURE(take_a_batch(p, c));
  ASSERT_TRUE(p.try_push(RecordType::kMessage, bytes(40, 5)));
  ASSERT_TRUE(c.try_take());   // taken at once, without a wait
  EXPECT_FALSE(c.try_take());  // after one record: the watch ends
  c.publish_head();
  ASSERT_NO_FATAL_FAILURE(push_behind_the_tail(ring, p, 6));
  EXPECT_TRUE(c.has_data());  // the header word, at the first look
  EXPECT_FALSE(c.corrupt());
}

// The wake system call is made only for a side that flagged itself asleep: a publication or
// a release with no sleeper leaves the signal word alone (a wake bumps it first).
TEST(SpscRingTest, OnlyASleeperIsWoken) {
  LocalRing ring(4096);
  auto p = ring.producer();
  auto c = ring.consumer();
  RingControl& control = ring.control();
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(p.try_push(RecordType::kMessage, bytes(40, 1)));
    ASSERT_TRUE(c.try_take());
    c.publish_head();
  }
  EXPECT_EQ(control.data_signal.load(), 0u);
  EXPECT_EQ(control.space_signal.load(), 0u);

  const std::uint32_t slept_on = c.flag_sleep();  // about to sleep on the data signal
  ASSERT_TRUE(p.try_push(RecordType::kMessage, bytes(40, 2)));
  EXPECT_NE(control.data_signal.load(), slept_on);  // woken
  EXPECT_EQ(control.consumer_sleeping.load(), 0u);  // and the flag is cleared by the waker
  c.end_sleep();
  const std::uint32_t after_wake = control.data_signal.load();
  ASSERT_TRUE(p.try_push(RecordType::kMessage, bytes(40, 3)));
  EXPECT_EQ(control.data_signal.load(), after_wake);  // no sleeper again: no wake

  control.producer_sleeping.store(1);  // the producer's flag, as sleep_for_space() sets it
  ASSERT_TRUE(c.try_take());
  c.publish_head();
  EXPECT_EQ(control.space_signal.load(), 1u);
  EXPECT_EQ(control.producer_sleeping.load(), 0u);
}

TEST(SpscRingTest, BytesOfAnEarlierLapAreNeverReadAsARecord) {
  // The consumer reads a header where the last record ends: the producer's terminator word
  // makes it "nothing yet" whatever an earlier lap left there (here, bytes that look like a
  // valid header everywhere but in the first word, which a new ring's zeroed area provides).
  constexpr std::size_t kCap = 4096;
  LocalRing ring(kCap);
  const std::uint64_t lookalike = make_header(16, RecordType::kMessage);
  for (std::size_t i = 8; i < kCap; i += 8) std::memcpy(ring.data() + i, &lookalike, 8);
  auto p = ring.producer();
  auto c = ring.consumer();
  std::mt19937 rng(3);
  for (int round = 0; round < 200; ++round) {
    const std::size_t n = 1 + rng() % 5;
    for (std::size_t i = 0; i < n; ++i) {
      ASSERT_TRUE(p.try_write(RecordType::kMessage, bytes(1 + rng() % 200, round)));
    }
    EXPECT_FALSE(c.has_data());  // the batch's first header is held back
    EXPECT_FALSE(c.try_take());  // (has_data() may have asked the tail: the header says so too)
    p.publish();
    for (std::size_t i = 0; i < n; ++i) ASSERT_TRUE(c.try_take()) << round << " " << i;
    EXPECT_FALSE(c.has_data()) << round;
    EXPECT_FALSE(c.try_take()) << round;
    c.publish_head();
    // Free space again looks like headers everywhere but in the terminator word.
    const std::uint64_t tail = ring.control().tail.load();
    for (std::uint64_t at = tail + 8; at < tail + kCap; at += 8) {
      std::memcpy(ring.data() + (at % kCap), &lookalike, 8);
    }
  }
  EXPECT_FALSE(c.corrupt());
}

TEST(SpscRingTest, AConsumerHoldingAFullRingSeesNoStaleRecord) {
  // The consumer takes all it can without releasing: the word at its head lies in what it
  // took, nearly a lap ago. It must not take that again.
  LocalRing ring(4096);
  auto p = ring.producer();
  auto c = ring.consumer();
  const int pushed = fill(p, bytes(120, 3));
  ASSERT_EQ(pushed, 31);
  for (int i = 0; i < 31; ++i) ASSERT_TRUE(c.try_take()) << i;
  EXPECT_FALSE(c.has_data());
  EXPECT_FALSE(c.try_take());
  EXPECT_FALSE(c.corrupt());
  c.publish_head();
  ASSERT_TRUE(p.try_push(RecordType::kMessage, bytes(120, 4)));
  auto r = c.try_take();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->payload[0], bytes(120, 4)[0]);
  EXPECT_FALSE(c.try_take());
}

TEST(SpscRingTest, AProducerTakingOverAUsedRingStartsAfterItsLastPublishedRecord) {
  // A producer that died after publishing (its headers stored) but before its relaxed store of
  // the shared tail, with a batch written but unpublished: the next producer must neither
  // overwrite the published records nor expose the unpublished ones.
  LocalRing ring(4096);
  auto c = ring.consumer();
  std::uint64_t stale_tail = 0;
  {
    auto first = ring.producer();
    for (int i = 0; i < 40; ++i) {  // a lap and more, so that positions are not indices
      ASSERT_TRUE(first.try_push(RecordType::kMessage, bytes(100, i)));
      ASSERT_TRUE(c.try_take());
      c.publish_head();
    }
    stale_tail = ring.control().tail.load();
    ASSERT_TRUE(first.try_push(RecordType::kMessage, bytes(100, 41)));
    ASSERT_TRUE(first.try_push(RecordType::kMessage, bytes(100, 42)));
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(first.try_write(RecordType::kMessage, bytes(60, 99)));
  }
  ring.control().tail.store(stale_tail);  // the last two tail stores never happened
  EXPECT_FALSE(c.maybe_has_data());       // the hint misses the two published records
  auto second = ring.producer();
  EXPECT_FALSE(second.broken());
  EXPECT_TRUE(c.maybe_has_data());  // the new producer set it right
  ASSERT_TRUE(second.try_push(RecordType::kMessage, bytes(30, 43)));
  for (int i : {41, 42, 43}) {
    auto r = c.try_take();
    ASSERT_TRUE(r) << i;
    EXPECT_EQ(r->payload[1], bytes(8, i)[1]) << i;
  }
  EXPECT_FALSE(c.try_take());
  EXPECT_FALSE(c.corrupt());
}

TEST(SpscRingTest, PositionsThatBreakTheProtocolMakeBothEndsRefuse) {
  {
    LocalRing ring(4096);
    ring.control().tail.store(12);  // not a record boundary
    auto p = ring.producer();
    EXPECT_TRUE(p.broken());
    EXPECT_FALSE(p.try_push(RecordType::kMessage, bytes(8, 1)));
    EXPECT_FALSE(p.has_space_for(8));
  }
  {
    LocalRing ring(4096);
    ring.control().tail.store(std::uint64_t{1} << 40);  // far past what the consumer released
    EXPECT_TRUE(ring.producer().broken());
  }
  {
    LocalRing ring(4096);
    const std::uint64_t bad = make_header(8000, RecordType::kMessage);  // past the area's end
    std::memcpy(ring.data(), &bad, sizeof bad);
    EXPECT_TRUE(ring.producer().broken());
  }
  {
    LocalRing ring(4096);
    ring.control().head.store(20);
    auto c = ring.consumer();
    EXPECT_TRUE(c.corrupt());
    EXPECT_FALSE(c.try_take());
  }
}

TEST(SpscRingTest, ABatchThatStartsWithPaddingIsPublishedWhole) {
  constexpr std::size_t kCap = 4096;
  LocalRing ring(kCap);
  auto p = ring.producer();
  auto c = ring.consumer();
  advance(p, c, kCap - 64);                                       // 64 bytes before the end
  ASSERT_TRUE(p.try_write(RecordType::kMessage, bytes(100, 1)));  // padding, then at index 0
  ASSERT_TRUE(p.try_write(RecordType::kMessage, bytes(100, 2)));
  EXPECT_FALSE(c.has_data());  // the held-back header is the padding's
  EXPECT_FALSE(c.maybe_has_data());
  p.publish();
  EXPECT_TRUE(c.maybe_has_data());
  for (int i : {1, 2}) {
    auto r = c.try_take();
    ASSERT_TRUE(r) << i;
    EXPECT_EQ(r->payload[1], bytes(8, i)[1]);
  }
  EXPECT_FALSE(c.try_take());
  EXPECT_TRUE(c.maybe_has_data());  // taken, not released
  c.publish_head();
  EXPECT_FALSE(c.maybe_has_data());
}

TEST(SpscRingTest, SleepForDataReturnsAtOnceWhenDataIsThere) {
  LocalRing ring(4096);
  auto p = ring.producer();
  auto c = ring.consumer();
  ASSERT_TRUE(p.try_push(RecordType::kMessage, bytes(8, 1)));
  EXPECT_TRUE(c.sleep_for_data(std::chrono::seconds(10)));
  EXPECT_EQ(ring.control().consumer_sleeping.load(), 0u);
}

TEST(SpscRingTest, SleepForDataTimesOut) {
  LocalRing ring(4096);
  auto c = ring.consumer();
  EXPECT_FALSE(c.sleep_for_data(std::chrono::milliseconds(5)));
}

}  // namespace
}  // namespace troupe::shm
