// Batches of records appended to a ring in one copy (RecordBatch, SpscRingProducer::try_append):
// the records a consumer takes are those try_write() would have written, at every wrap
// position, mixed with records written one by one, and published only by publish().
#include "troupe/shm/record_batch.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "shm/ring_fixture.hpp"
#include "troupe/shm/spsc_ring.hpp"

namespace troupe::shm {
namespace {

using test::advance;
using test::bytes;
using test::LocalRing;

// Takes the next record and checks it is `expected` of `type`.
void expect_record(SpscRingConsumer& c, std::span<const std::byte> expected,
                   RecordType type = RecordType::kMessage) {
  const std::optional<RingRecord> r = c.try_take();
  ASSERT_TRUE(r) << "no record where one of " << expected.size() << " bytes was expected";
  EXPECT_EQ(r->type, type);
  ASSERT_TRUE(std::equal(r->payload.begin(), r->payload.end(), expected.begin(), expected.end()))
      << "a record of " << r->payload.size() << " bytes, " << expected.size() << " expected";
}

TEST(RecordBatchTest, LaysOutRecordsAsTheRingDoes) {
  RecordBatch batch(256);
  EXPECT_TRUE(batch.empty());
  EXPECT_EQ(batch.capacity(), 256u);
  std::byte* first = batch.add(RecordType::kMessage, 0);
  ASSERT_NE(first, nullptr);
  ASSERT_TRUE(batch.append(RecordType::kFragmentFirst, bytes(5, 1)));
  std::byte* third = batch.add(RecordType::kMessage, 16);
  ASSERT_NE(third, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(third) % 8, 0u);
  EXPECT_EQ(batch.records(), 3u);
  EXPECT_EQ(batch.bytes().size(), record_size(0) + record_size(5) + record_size(16));
  // Each record starts with its header word, as in a ring.
  std::uint64_t header = 0;
  std::memcpy(&header, batch.bytes().data() + record_size(0), sizeof header);
  EXPECT_EQ(header, make_header(5, RecordType::kFragmentFirst));
  EXPECT_EQ(third, batch.bytes().data() + record_size(0) + record_size(5) + 8);
}

TEST(RecordBatchTest, AFullBatchAddsNothing) {
  RecordBatch batch(64);
  ASSERT_TRUE(batch.append(RecordType::kMessage, bytes(40, 1)));  // 48 bytes
  EXPECT_EQ(batch.add(RecordType::kMessage, 16), nullptr);        // 24 more: no room
  EXPECT_FALSE(batch.append(RecordType::kMessage, bytes(9, 2)));
  EXPECT_EQ(batch.records(), 1u);
  EXPECT_EQ(batch.bytes().size(), 48u);
  ASSERT_TRUE(batch.append(RecordType::kMessage, bytes(8, 3)));  // exactly the 16 left
  EXPECT_EQ(batch.bytes().size(), 64u);
  batch.clear();
  EXPECT_TRUE(batch.empty());
  EXPECT_EQ(batch.bytes().size(), 0u);
  EXPECT_NE(batch.add(RecordType::kMessage, 56), nullptr);
}

TEST(RecordBatchTest, AnAppendedBatchIsInvisibleUntilPublished) {
  LocalRing ring(4096);
  auto p = ring.producer();
  auto c = ring.consumer();
  RecordBatch batch(1024);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(batch.append(RecordType::kMessage, bytes(20 + i, i)));
  ASSERT_TRUE(p.try_append(batch));
  EXPECT_EQ(p.unpublished_bytes(), batch.bytes().size());
  EXPECT_FALSE(c.has_data());
  EXPECT_FALSE(c.try_take());
  p.publish();
  EXPECT_TRUE(c.has_data());
  for (int i = 0; i < 5; ++i) ASSERT_NO_FATAL_FAILURE(expect_record(c, bytes(20 + i, i)));
  EXPECT_FALSE(c.try_take());  // the terminator after the batch
  EXPECT_FALSE(c.corrupt());
}

TEST(RecordBatchTest, BatchesAndSingleRecordsMixInOnePublication) {
  LocalRing ring(4096);
  auto p = ring.producer();
  auto c = ring.consumer();
  RecordBatch batch(512);
  ASSERT_TRUE(batch.append(RecordType::kMessage, bytes(30, 2)));
  ASSERT_TRUE(batch.append(RecordType::kMessage, bytes(0, 0)));
  ASSERT_TRUE(p.try_write(RecordType::kMessage, bytes(10, 1)));
  ASSERT_TRUE(p.try_append(batch));
  ASSERT_TRUE(p.try_write(RecordType::kMessage, bytes(50, 3)));
  ASSERT_TRUE(p.try_append(RecordBatch(64)));  // an empty batch: nothing
  EXPECT_FALSE(c.try_take());
  p.publish();
  ASSERT_NO_FATAL_FAILURE(expect_record(c, bytes(10, 1)));
  ASSERT_NO_FATAL_FAILURE(expect_record(c, bytes(30, 2)));
  ASSERT_NO_FATAL_FAILURE(expect_record(c, bytes(0, 0)));
  ASSERT_NO_FATAL_FAILURE(expect_record(c, bytes(50, 3)));
  EXPECT_FALSE(c.try_take());
  c.publish_head();
  // A batch first in a later publication, then a record after it.
  ASSERT_TRUE(p.try_append(batch));
  ASSERT_TRUE(p.try_write(RecordType::kFragmentAbort, {}));
  EXPECT_FALSE(c.has_data());  // its first header is held back
  p.publish();
  ASSERT_NO_FATAL_FAILURE(expect_record(c, bytes(30, 2)));
  ASSERT_NO_FATAL_FAILURE(expect_record(c, bytes(0, 0)));
  ASSERT_NO_FATAL_FAILURE(expect_record(c, {}, RecordType::kFragmentAbort));
  EXPECT_FALSE(c.try_take());
  EXPECT_FALSE(c.corrupt());
}

// Every wrap position: batches of sizes around the bytes left before the end go through whole,
// after a padding record where they do not fit, alone or after a record of the same
// publication.
TEST(RecordBatchTest, EveryWrapBoundary) {
  constexpr std::size_t kCap = 4096;
  for (std::size_t start = 0; start < kCap; start += 8) {
    for (std::size_t delta : {0, 8, 40}) {
      for (bool after_a_record : {false, true}) {
        LocalRing ring(kCap);
        auto p = ring.producer();
        auto c = ring.consumer();
        ASSERT_NO_FATAL_FAILURE(advance(p, c, start));
        const std::size_t lead = after_a_record ? record_size(8) : 0;
        const std::size_t to_end = kCap - start - std::min(lead, kCap - start);
        for (std::size_t size : {to_end - std::min(delta, to_end), to_end + delta}) {
          if (size < record_size(8) + record_size(0) || size > p.max_batch_bytes()) continue;
          // Two records: one of 8 bytes, the other the rest.
          RecordBatch batch(size);
          const auto small = bytes(8, static_cast<int>(start));
          const auto rest = bytes(size - record_size(8) - 8, static_cast<int>(delta));
          ASSERT_TRUE(batch.append(RecordType::kMessage, small));
          ASSERT_TRUE(batch.append(RecordType::kMessage, rest));
          ASSERT_EQ(batch.bytes().size(), size);
          const auto lone = bytes(8, 99);
          if (after_a_record) {
            ASSERT_TRUE(p.try_write(RecordType::kMessage, lone));
          }
          ASSERT_TRUE(p.try_append(batch)) << start << " " << size;
          p.publish();
          if (after_a_record) {
            ASSERT_NO_FATAL_FAILURE(expect_record(c, lone));
          }
          ASSERT_NO_FATAL_FAILURE(expect_record(c, small)) << start << " " << size;
          ASSERT_NO_FATAL_FAILURE(expect_record(c, rest)) << start << " " << size;
          EXPECT_FALSE(c.try_take());
          ASSERT_FALSE(c.corrupt()) << start << " " << size;
          c.publish_head();
        }
      }
    }
  }
}

TEST(RecordBatchTest, TheLargestBatchFitsAtEveryPositionOfAnEmptyRing) {
  constexpr std::size_t kCap = 4096;
  for (std::size_t start = 0; start < kCap; start += 8) {
    LocalRing ring(kCap);
    auto p = ring.producer();
    auto c = ring.consumer();
    ASSERT_NO_FATAL_FAILURE(advance(p, c, start));
    RecordBatch batch(p.max_batch_bytes());
    std::vector<std::vector<std::byte>> sent;
    while (batch.bytes().size() + 2 * record_size(24) <= batch.capacity()) {
      sent.push_back(bytes(24, static_cast<int>(sent.size())));
      ASSERT_TRUE(batch.append(RecordType::kMessage, sent.back()));
    }
    ASSERT_TRUE(
        batch.append(RecordType::kMessage, bytes(batch.capacity() - batch.bytes().size() - 8, 7)));
    ASSERT_EQ(batch.bytes().size(), p.max_batch_bytes());
    ASSERT_TRUE(p.try_append(batch)) << start;
    p.publish();
    for (const auto& m : sent) ASSERT_NO_FATAL_FAILURE(expect_record(c, m)) << start;
    ASSERT_TRUE(c.try_take()) << start;  // the last, filling record
    EXPECT_FALSE(c.try_take());
    EXPECT_FALSE(c.corrupt());
  }
}

// has_space_for_batch() says what try_append() does, at every wrap position, with the ring
// holding nothing or some unread records.
TEST(RecordBatchTest, HasSpaceForBatchAgreesWithTryAppend) {
  constexpr std::size_t kCap = 4096;
  for (std::size_t start = 0; start < kCap; start += 8) {
    for (std::size_t unread : {0, 1024, 3000}) {
      const std::size_t to_end = kCap - (start + unread) % kCap;
      for (std::size_t size : {std::size_t{16}, to_end - 8, to_end, to_end + 8, kCap / 2}) {
        if (size < 16 || size > kCap / 2) continue;
        LocalRing ring(kCap);
        auto p = ring.producer();
        auto c = ring.consumer();
        ASSERT_NO_FATAL_FAILURE(advance(p, c, start));
        for (std::size_t left = unread; left > 0;) {  // in records of at most 1 KiB
          const std::size_t record = std::min<std::size_t>(left, 1024);
          ASSERT_TRUE(p.try_write(RecordType::kMessage, bytes(record - 8, 1)));
          left -= record;
        }
        p.publish();
        RecordBatch batch(size);
        ASSERT_TRUE(batch.append(RecordType::kMessage, bytes(size - 8, 2)));
        const bool fits = p.has_space_for_batch(size);
        EXPECT_EQ(p.try_append(batch), fits) << start << " " << unread << " " << size;
      }
    }
  }
}

// After a lap every byte of the ring holds an earlier record's: the word after an appended
// batch must be its terminator, or the consumer would read those bytes as a header.
TEST(RecordBatchTest, ABatchIsTerminatedOverBytesOfAnEarlierLap) {
  constexpr std::size_t kCap = 4096;
  LocalRing ring(kCap);
  auto p = ring.producer();
  auto c = ring.consumer();
  for (int lap = 0; lap < 2; ++lap) {
    for (int i = 0; i < 8; ++i) {  // records of 512 bytes of 0xFF: a lap
      ASSERT_TRUE(p.try_write(RecordType::kMessage, std::vector<std::byte>(504, std::byte{0xFF})));
      p.publish();
      ASSERT_TRUE(c.try_take());
      c.publish_head();
    }
  }
  RecordBatch batch(256);
  ASSERT_TRUE(batch.append(RecordType::kMessage, bytes(20, 1)));
  ASSERT_TRUE(batch.append(RecordType::kMessage, bytes(30, 2)));
  ASSERT_TRUE(p.try_append(batch));
  p.publish();
  ASSERT_NO_FATAL_FAILURE(expect_record(c, bytes(20, 1)));
  ASSERT_NO_FATAL_FAILURE(expect_record(c, bytes(30, 2)));
  EXPECT_FALSE(c.try_take());
  EXPECT_FALSE(c.corrupt());
}

TEST(RecordBatchTest, RefusesWhatIsNotARecord) {
  RecordBatch batch(64);
  EXPECT_EQ(batch.add(static_cast<RecordType>(0), 0), nullptr);  // a zero header word
  EXPECT_EQ(batch.add(static_cast<RecordType>(7), 8), nullptr);
  EXPECT_EQ(batch.add(RecordType::kMessage, ~std::size_t{0} - 3), nullptr);  // record_size wraps
  EXPECT_TRUE(batch.empty());
}

TEST(RecordBatchTest, AFullRingRefusesABatchAndWritesNothing) {
  LocalRing ring(4096);
  auto p = ring.producer();
  auto c = ring.consumer();
  RecordBatch batch(1024);
  while (batch.append(RecordType::kMessage, bytes(120, 5))) {
  }
  ASSERT_EQ(batch.bytes().size(), 1024u);  // eight 128-byte records
  ASSERT_TRUE(p.try_append(batch));
  ASSERT_TRUE(p.try_append(batch));
  ASSERT_TRUE(p.try_append(batch));
  EXPECT_FALSE(p.try_append(batch));  // 3 KiB in a 4 KiB ring that keeps a word free
  EXPECT_EQ(p.unpublished_bytes(), 3072u);
  EXPECT_FALSE(p.has_space_for(1016));
  p.publish();
  for (int i = 0; i < 24; ++i) ASSERT_NO_FATAL_FAILURE(expect_record(c, bytes(120, 5)));
  EXPECT_FALSE(c.try_take());
  EXPECT_FALSE(p.try_append(batch));  // taken, not yet released
  c.publish_head();
  EXPECT_TRUE(p.has_space_for(1016));
  ASSERT_TRUE(p.try_append(batch));
  p.publish();
  for (int i = 0; i < 8; ++i) ASSERT_NO_FATAL_FAILURE(expect_record(c, bytes(120, 5)));
  EXPECT_FALSE(c.corrupt());
}

// A batch larger than max_batch_bytes() could never be sure to fit: the process ends, saying
// so, rather than a producer that waits for space that never comes.
TEST(RecordBatchDeathTest, ABatchOverHalfTheRingEndsTheProcessNamingTheSizes) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  LocalRing ring(4096);
  auto p = ring.producer();
  RecordBatch batch(p.max_batch_bytes() + 8);
  while (batch.append(RecordType::kMessage, bytes(24, 1))) {
  }
  ASSERT_TRUE(batch.append(RecordType::kMessage, {}));  // the 8 bytes over
  ASSERT_GT(batch.bytes().size(), p.max_batch_bytes());
  EXPECT_DEATH(p.try_append(batch), "try_append: a batch of " +
                                        std::to_string(batch.bytes().size()) + " bytes, over the " +
                                        std::to_string(p.max_batch_bytes()) +
                                        " a ring of 4096 takes");
  // One of max_batch_bytes() still goes.
  RecordBatch largest(p.max_batch_bytes());
  while (largest.append(RecordType::kMessage, bytes(24, 2))) {
  }
  EXPECT_TRUE(p.try_append(largest));
}

}  // namespace
}  // namespace troupe::shm
