// The envelope verifier against the one FlatBuffers generates: the same answer on valid frames
// of many shapes (in the layout FrameBuilder writes, in FlatBufferBuilder's, and unusual ones),
// on every truncation, on nine values of every byte, on random corruptions (bytes and 32-bit
// words), on small structured buffers, on hand-made ones that break one rule each, and under
// each depth and table limit that can matter.
#include "troupe/core/detail/envelope_verifier.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "support/wire_frames.hpp"

namespace troupe {
namespace {

using test::AlignedFrame;

constexpr std::uint32_t kDepth = VerifyLimits{}.max_depth;
constexpr std::uint32_t kTables = VerifyLimits{}.max_tables;

bool flatbuffers_accepts(const std::uint8_t* data, std::size_t size, std::uint32_t max_depth,
                         std::uint32_t max_tables) {
  flatbuffers::Verifier verifier(data, size, max_depth, max_tables);
  return verifier.VerifyBuffer<wire::Envelope>(wire::EnvelopeIdentifier());
}

// Both verifiers on frame[0, size); true if they agree. Returns the reference's answer in
// `accepted`.
::testing::AssertionResult agree(const AlignedFrame& frame, std::size_t size,
                                 std::uint32_t max_depth = kDepth,
                                 std::uint32_t max_tables = kTables, bool* accepted = nullptr) {
  const auto* data = reinterpret_cast<const std::uint8_t*>(frame.view().data());
  const bool reference = flatbuffers_accepts(data, size, max_depth, max_tables);
  const bool ours = detail::envelope_verifies(data, size, max_depth, max_tables);
  if (accepted != nullptr) *accepted = reference;
  if (ours == reference) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "FlatBuffers " << (reference ? "accepts" : "refuses") << " a frame of " << size
         << " bytes (depth " << max_depth << ", tables " << max_tables << ") that we "
         << (ours ? "accept" : "refuse");
}

// Frames in shapes that neither builder writes for a call: empty vectors (url, payload,
// messages), and a messages vector whose elements all point to one Msg.
std::vector<AlignedFrame> unusual_frames() {
  std::vector<AlignedFrame> frames;
  for (int shape = 0; shape < 3; ++shape) {
    flatbuffers::FlatBufferBuilder fbb;
    const auto id = fbb.CreateString("id");
    const auto url = fbb.CreateVectorOfStrings(std::vector<std::string>{});
    const auto payload = fbb.CreateVector(std::vector<std::uint8_t>{});
    const auto msg = wire::CreateMsg(fbb, id, 0, 0, 0, url, 0, 7, payload);
    std::vector<flatbuffers::Offset<wire::Msg>> same(shape == 0 ? 0 : 3 * shape, msg);
    const auto messages = fbb.CreateVector(same);
    fbb.Finish(wire::CreateEnvelope(fbb, wire::Kind::Result, 1, 2, messages),
               wire::EnvelopeIdentifier());
    frames.emplace_back(
        FrameView(reinterpret_cast<const std::byte*>(fbb.GetBufferPointer()), fbb.GetSize()));
  }
  return frames;
}

// Valid frames of many shapes: no message, messages with every field or few, empty ones,
// error texts; each in FrameBuilder's layout and in FlatBufferBuilder's; and the unusual ones.
std::vector<AlignedFrame> valid_frames() {
  std::mt19937_64 rng(3);
  const std::vector<std::string> errors{"", "e", "an error text"};
  std::vector<AlignedFrame> frames = unusual_frames();
  for (int shape = 0; shape < 24; ++shape) {
    std::vector<Msg> msgs(shape % 4);
    for (Msg& m : msgs) m = shape % 5 == 0 ? test::full_msg() : test::random_msg(rng);
    if (shape % 7 == 3) msgs.push_back(Msg());
    const EnvelopeFields fields{.kind = static_cast<wire::Kind>(shape % 14),
                                .call_id = shape % 3 == 0 ? 0 : rng(),
                                .agent_id = shape % 2 == 0 ? 0 : rng(),
                                .messages = msgs,
                                .error = errors[shape % errors.size()]};
    FrameBuilder builder;
    frames.emplace_back(builder.build(fields));
    frames.push_back(test::reference_frame(fields));
  }
  return frames;
}

TEST(EnvelopeVerifierTest, AcceptsEveryValidFrame) {
  for (const AlignedFrame& frame : valid_frames()) {
    bool accepted = false;
    ASSERT_TRUE(agree(frame, frame.size, kDepth, kTables, &accepted));
    EXPECT_TRUE(accepted);
  }
}

TEST(EnvelopeVerifierTest, AgreesOnEveryTruncation) {
  for (const AlignedFrame& frame : valid_frames()) {
    for (std::size_t size = 0; size < frame.size; ++size) ASSERT_TRUE(agree(frame, size));
  }
}

TEST(EnvelopeVerifierTest, AgreesOnEverySingleByteChange) {
  std::mt19937 rng(5);
  for (const AlignedFrame& pristine : valid_frames()) {
    for (std::size_t i = 0; i < pristine.size; ++i) {
      const auto original = static_cast<std::uint8_t>(pristine.view()[i]);
      const std::uint8_t values[] = {0,
                                     1,
                                     0x7f,
                                     0x80,
                                     0xff,
                                     static_cast<std::uint8_t>(original ^ 1),
                                     static_cast<std::uint8_t>(original + 4),
                                     static_cast<std::uint8_t>(original - 4),
                                     static_cast<std::uint8_t>(rng())};
      for (std::uint8_t value : values) {
        AlignedFrame copy = pristine;
        copy.data()[i] = static_cast<std::byte>(value);
        ASSERT_TRUE(agree(copy, copy.size)) << "byte " << i << " set to " << int{value};
      }
    }
  }
}

TEST(EnvelopeVerifierTest, AgreesOnRandomCorruptions) {
  // Bytes and whole 32-bit words: a word write at an aligned place turns offsets, counts and
  // lengths into nearby or far values, which single bytes rarely reach.
  const std::vector<AlignedFrame> frames = valid_frames();
  std::mt19937_64 rng(9);
  int accepted_changed = 0;
  for (int trial = 0; trial < 200'000; ++trial) {
    AlignedFrame copy = frames[rng() % frames.size()];
    const int writes = 1 + static_cast<int>(rng() % 4);
    for (int w = 0; w < writes; ++w) {
      if (rng() % 2 == 0) {
        copy.data()[rng() % copy.size] = static_cast<std::byte>(rng());
      } else if (copy.size >= 4) {
        const std::size_t at = (rng() % (copy.size / 4)) * 4;
        // Near 0 or near the frame's size (offsets just in and out of it, and back to the
        // slot itself), a value that wraps a position back by 4, or anything.
        const auto near = static_cast<std::int64_t>(rng() % 129) - 64;
        const std::uint64_t kind = rng() % 8;
        const auto word = static_cast<std::uint32_t>(
            kind == 0   ? rng()
            : kind == 1 ? 0xFFFFFFFCu
                        : static_cast<std::uint64_t>(
                              near + (kind % 2 ? 0 : static_cast<std::int64_t>(copy.size))));
        std::memcpy(copy.data() + at, &word, sizeof word);
      }
    }
    bool accepted = false;
    ASSERT_TRUE(agree(copy, copy.size, kDepth, kTables, &accepted)) << "trial " << trial;
    accepted_changed += accepted ? 1 : 0;
  }
  // Both verdicts were exercised: many corruptions still verify (a changed string byte).
  EXPECT_GT(accepted_changed, 1000);
}

TEST(EnvelopeVerifierTest, AgreesOnArbitraryBytes) {
  // Small words, most of them multiples of 4, after the identifier: offsets that land inside
  // the buffer, so that the walks reach tables and vtables far more often than random bytes.
  std::mt19937_64 rng(13);
  int past_the_root = 0;
  for (int trial = 0; trial < 50'000; ++trial) {
    const std::size_t words = 3 + rng() % 24;
    std::vector<std::uint32_t> bytes(words);
    for (auto& w : bytes) {
      const std::uint64_t pick = rng() % 8;
      w = static_cast<std::uint32_t>(pick < 5   ? 4 * (rng() % words)
                                     : pick < 7 ? rng() % 64
                                                : rng());
    }
    std::memcpy(&bytes[1], "TRP1", 4);
    const AlignedFrame frame(
        FrameView(reinterpret_cast<const std::byte*>(bytes.data()), 4 * bytes.size()));
    ASSERT_TRUE(agree(frame, frame.size)) << "trial " << trial;
    // The root offset checks out (the walks then look at a table): most trials get that far.
    past_the_root += bytes[0] != 0 && bytes[0] % 4 == 0 && bytes[0] < 4 * words ? 1 : 0;
  }
  EXPECT_GT(past_the_root, 20'000);
}

// Hand-made buffers for rules that corruptions of real frames rarely reach: each is valid
// but for one rule, which a sibling buffer obeys.
class Bytes {
 public:
  Bytes& u16(std::size_t at, std::uint16_t v) { return put(at, &v, sizeof v); }
  Bytes& u32(std::size_t at, std::uint32_t v) { return put(at, &v, sizeof v); }
  Bytes& text(std::size_t at, const char* s) { return put(at, s, std::strlen(s)); }
  AlignedFrame frame() const { return AlignedFrame(bytes_); }

 private:
  Bytes& put(std::size_t at, const void* v, std::size_t n) {
    if (bytes_.size() < at + n) bytes_.resize((at + n + 7) / 8 * 8);
    std::memcpy(bytes_.data() + at, v, n);
    return *this;
  }
  std::vector<std::byte> bytes_;
};

// An Envelope whose only field is its error string "x": root at 0, identifier, vtable at 8,
// the table at `table`, the error's slot at table + `slot`, the string at 40.
Bytes error_only(std::size_t table, std::uint16_t slot) {
  Bytes b;
  b.u32(0, static_cast<std::uint32_t>(table)).text(4, "TRP1");
  b.u16(8, 14).u16(10, 12);  // vtable: its bytes, the table's bytes; fields 4-10 absent
  b.u16(20, slot);           // VT_ERROR
  b.u32(table, static_cast<std::uint32_t>(table - 8));  // soffset to the vtable
  b.u32(table + slot, static_cast<std::uint32_t>(40 - (table + slot)));
  b.u32(40, 1).text(44, "x").u32(45, 0);
  return b;
}

TEST(EnvelopeVerifierTest, AgreesOnHandMadeBuffers) {
  struct Case {
    const char* what;
    Bytes bytes;
    bool valid;
  };
  const Case cases[] = {
      {"the error's slot aligned", error_only(24, 4), true},
      {"the error's slot at an odd place", error_only(24, 5), false},
      {"the error's slot 2 bytes off", error_only(24, 6), false},
      // A copy of the vtable at 49, where the table's soffset points: valid but for its place.
      {"the vtable at an odd place",
       error_only(24, 4).u16(49, 14).u16(51, 12).u16(61, 4).u32(24,
                                                                static_cast<std::uint32_t>(-25)),
       false},
      {"the table misaligned", error_only(26, 6), false},
      {"no NUL after the string", error_only(24, 4).text(45, "y"), false},
      {"the string's length past the end", error_only(24, 4).u32(40, 20), false},
      {"an odd vtable size", error_only(24, 4).u16(8, 13), false},
      {"a vtable without fields", error_only(24, 4).u16(8, 4), true},
      {"a vtable shorter than its header", error_only(24, 4).u16(8, 2), true},
      {"a vtable past the end", error_only(24, 4).u16(8, 60), false},
      // Positions wrap around as the verifier's unsigned arithmetic does: a check written as
      // `at + bytes <= size` would let these through and read before the buffer (which the
      // asan preset's run of this test reports).
      {"the vtable 2 bytes before the buffer", error_only(24, 4).u32(24, 26), false},
      {"the vtable 4 bytes before the buffer", error_only(24, 4).u32(24, 28), false},
  };
  for (const Case& c : cases) {
    const AlignedFrame frame = c.bytes.frame();
    bool accepted = false;
    ASSERT_TRUE(agree(frame, frame.size, kDepth, kTables, &accepted)) << c.what;
    EXPECT_EQ(accepted, c.valid) << c.what;  // the case tests the rule it names
  }
}

TEST(EnvelopeVerifierTest, AgreesUnderEveryDepthAndTableLimit) {
  for (const AlignedFrame& frame : valid_frames()) {
    for (std::uint32_t depth = 0; depth <= 3; ++depth) {
      for (std::uint32_t tables = 0; tables <= 8; ++tables) {
        ASSERT_TRUE(agree(frame, frame.size, depth, tables));
      }
    }
  }
}

}  // namespace
}  // namespace troupe
