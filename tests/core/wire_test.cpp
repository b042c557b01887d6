#include "troupe/core/wire.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "support/wire_frames.hpp"
#include "troupe/core/detail/result_state.hpp"
#include "troupe/core/error.hpp"

namespace troupe {
namespace {

using test::AlignedFrame;
using test::as_placeholder;
using test::full_msg;
using test::random_msg;
using test::reference_frame;

TEST(WireTest, MsgRoundTripsEveryField) {
  flatbuffers::FlatBufferBuilder builder;
  Msg original = full_msg();
  builder.Finish(to_wire(builder, original));
  const auto* table = flatbuffers::GetRoot<wire::Msg>(builder.GetBufferPointer());
  EXPECT_EQ(from_wire(*table), original);  // all fields, id and timestamp included
}

TEST(WireTest, EmptyMsgRoundTrips) {
  flatbuffers::FlatBufferBuilder builder;
  builder.Finish(to_wire(builder, Msg()));
  EXPECT_TRUE(from_wire(*flatbuffers::GetRoot<wire::Msg>(builder.GetBufferPointer())).empty());
}

TEST(WireTest, EnvelopeBuildsAndVerifies) {
  FrameBuilder builder;
  std::vector<Msg> msgs{full_msg(), Msg("bob", "second")};
  FrameView frame = builder.build(
      {.kind = wire::Kind::Call, .call_id = 42, .agent_id = 7, .messages = msgs, .error = "none"});
  AlignedFrame copy(frame);
  std::error_code ec;
  const wire::Envelope* env = verify_frame(copy.view(), ec);
  ASSERT_NE(env, nullptr) << ec.message();
  EXPECT_EQ(env->kind(), wire::Kind::Call);
  EXPECT_EQ(env->call_id(), 42u);
  EXPECT_EQ(env->agent_id(), 7u);
  ASSERT_EQ(env->messages()->size(), 2u);
  EXPECT_EQ(from_wire(*env->messages()->Get(0)), msgs[0]);
  EXPECT_EQ(from_wire(*env->messages()->Get(1)), msgs[1]);
  EXPECT_EQ(env->error()->str(), "none");
}

// What a reader sees in a frame, field by field, optional fields' presence included.
void expect_same_reading(const wire::Envelope& a, const wire::Envelope& b) {
  EXPECT_EQ(a.kind(), b.kind());
  EXPECT_EQ(a.call_id(), b.call_id());
  EXPECT_EQ(a.agent_id(), b.agent_id());
  ASSERT_EQ(a.error() == nullptr, b.error() == nullptr);
  if (a.error()) {
    EXPECT_EQ(a.error()->str(), b.error()->str());
  }
  ASSERT_EQ(a.messages() == nullptr, b.messages() == nullptr);
  if (!a.messages()) return;
  ASSERT_EQ(a.messages()->size(), b.messages()->size());
  for (flatbuffers::uoffset_t i = 0; i < a.messages()->size(); ++i) {
    const wire::Msg& x = *a.messages()->Get(i);
    const wire::Msg& y = *b.messages()->Get(i);
    EXPECT_EQ(from_wire(x), from_wire(y)) << "message " << i;
    EXPECT_EQ(x.url() == nullptr, y.url() == nullptr) << "message " << i;
    EXPECT_EQ(x.metadata() == nullptr, y.metadata() == nullptr) << "message " << i;
    EXPECT_EQ(x.payload() == nullptr, y.payload() == nullptr) << "message " << i;
  }
}

TEST(WireTest, FramesReadAsFlatBufferBuildersFramesDo) {
  std::mt19937_64 rng(11);
  const std::vector<std::string> errors{"", "x", "a longer error text of some length"};
  for (int trial = 0; trial < 500; ++trial) {
    std::vector<Msg> msgs(rng() % 4);
    for (Msg& m : msgs) {
      m = random_msg(rng);
      if (rng() % 5 == 0) m = as_placeholder(std::move(m), rng() % 2 == 0);
    }
    if (trial % 50 == 0) msgs.push_back(Msg());  // an empty message among them
    // A buffer of exactly the size the builder reserves for the frame: a layout that
    // outgrows it writes out of bounds, which AddressSanitizer reports.
    FrameBuilder builder(0);
    const EnvelopeFields fields{.kind = static_cast<wire::Kind>(rng() % 14),
                                .call_id = rng() % 3 == 0 ? 0 : rng(),
                                .agent_id = rng() % 3 == 0 ? 0 : rng(),
                                .messages = msgs,
                                .error = errors[rng() % errors.size()]};
    AlignedFrame ours(builder.build(fields));
    AlignedFrame reference = reference_frame(fields);
    std::error_code ec;
    const wire::Envelope* a = verify_frame(ours.view(), ec);
    ASSERT_NE(a, nullptr) << "trial " << trial << ": " << ec.message();
    EXPECT_EQ(ours.size % 8, 0u);
    const wire::Envelope* b = verify_frame(reference.view(), ec);
    ASSERT_NE(b, nullptr) << ec.message();
    expect_same_reading(*a, *b);
  }
}

TEST(WireTest, AFailedPlaceholderFailsTheBuildWithItsErrorAndTheBuilderBuildsOn) {
  auto failed = std::make_shared<detail::ResultState>();
  failed->fail(std::make_exception_ptr(RemoteError("it broke")));
  const std::vector<Msg> msgs{Msg("u", "fine"), Msg::placeholder(failed)};
  FrameBuilder builder;
  EXPECT_THROW((void)builder.build({.kind = wire::Kind::Call, .messages = msgs}), RemoteError);
  const std::vector<Msg> fine{Msg("u", "fine")};
  AlignedFrame frame(builder.build({.kind = wire::Kind::Call, .call_id = 9, .messages = fine}));
  std::error_code ec;
  const wire::Envelope* env = verify_frame(frame.view(), ec);
  ASSERT_NE(env, nullptr) << ec.message();
  EXPECT_EQ(env->call_id(), 9u);
  EXPECT_EQ(from_wire(*env->messages()->Get(0)).content(), "fine");
}

// A builder grows for a large frame, keeps the room while large frames keep coming, and gives
// it back after a run of small ones; every frame on the way reads back whole.
TEST(WireTest, BuilderGrowsAndShrinksAndEveryFrameReadsBack) {
  FrameBuilder builder(0);
  std::vector<Msg> large{Msg("u", std::string(3 << 20, 'L'))};
  std::vector<Msg> small{Msg("u", "s")};
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < (round == 1 ? 200 : 3); ++i) {
      const std::vector<Msg>& msgs = i % 2 == 0 && round != 1 ? large : small;
      AlignedFrame frame(builder.build({.kind = wire::Kind::Result, .messages = msgs}));
      std::error_code ec;
      const wire::Envelope* env = verify_frame(frame.view(), ec);
      ASSERT_NE(env, nullptr) << ec.message();
      EXPECT_EQ(from_wire(*env->messages()->Get(0)).content(), msgs[0].content());
    }
  }
}

TEST(WireTest, FramesAreTheSameBytesWhateverTheBufferHeldBefore) {
  // Every padding byte is written: a frame does not carry what the buffer held before.
  std::vector<Msg> small{Msg("a", "b")};
  small[0].set_payload({std::byte{1}});
  small[0].set_timestamp_ns(5).set_id("id");
  std::vector<Msg> large(50, full_msg());
  FrameBuilder fresh, used;
  (void)used.build({.kind = wire::Kind::Result,
                    .call_id = ~0ull,
                    .messages = large,
                    .error = std::string(999, '\xff')});
  const EnvelopeFields fields{.kind = wire::Kind::Call, .call_id = 3, .messages = small};
  AlignedFrame a(fresh.build(fields));
  AlignedFrame b(used.build(fields));
  ASSERT_EQ(a.size, b.size);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size), 0);
}

TEST(WireTest, BuilderIsReusable) {
  FrameBuilder builder;
  for (std::uint64_t i = 0; i < 100; ++i) {
    AlignedFrame copy(builder.build({.kind = wire::Kind::Result, .call_id = i}));
    std::error_code ec;
    const auto* env = verify_frame(copy.view(), ec);
    ASSERT_NE(env, nullptr);
    EXPECT_EQ(env->call_id(), i);
  }
}

TEST(WireTest, BuilderRefusesAMessageLargerThanAFrameClearly) {
  FrameBuilder builder;
  // 1025 copies of a placeholder share one 1 MiB payload: a 1025 MiB batch in 1 MiB of memory.
  auto shared = std::make_shared<detail::ResultState>();
  shared->resolve(Msg("u", "x").set_payload(std::vector<std::byte>(std::size_t{1} << 20)));
  const std::vector<Msg> big(kMaxFrameBytes / (std::size_t{1} << 20) + 1, Msg::placeholder(shared));
  try {
    (void)builder.build({.kind = wire::Kind::Call, .messages = big});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("larger than a frame carries"), std::string::npos)
        << e.what();
  }
  std::vector<Msg> small{Msg("u", "x")};  // and the builder builds on
  EXPECT_GT(builder.build({.kind = wire::Kind::Call, .messages = small}).size(), 0u);
}

TEST(WireTest, RejectsGarbage) {
  std::vector<std::uint64_t> words(64);
  std::mt19937_64 rng(1);
  for (auto& w : words) w = rng();
  std::error_code ec;
  EXPECT_EQ(verify_frame({reinterpret_cast<const std::byte*>(words.data()), 512}, ec), nullptr);
  EXPECT_EQ(ec, Errc::kMalformedFrame);
}

TEST(WireTest, RejectsTooShortAndMisaligned) {
  FrameBuilder builder;
  AlignedFrame copy(builder.build({.kind = wire::Kind::Ping}));
  std::error_code ec;
  EXPECT_EQ(verify_frame(copy.view().first(4), ec), nullptr);
  EXPECT_EQ(ec, Errc::kMalformedFrame);
  EXPECT_EQ(verify_frame(copy.view().subspan(1), ec), nullptr);
  EXPECT_EQ(ec, Errc::kMalformedFrame);
}

TEST(WireTest, RejectsTruncatedFrames) {
  FrameBuilder builder;
  std::vector<Msg> msgs{full_msg()};
  AlignedFrame copy(builder.build({.kind = wire::Kind::Call, .messages = msgs}));
  for (std::size_t len = 0; len < copy.size; len += 8) {
    std::error_code ec;
    EXPECT_EQ(verify_frame(copy.view().first(len), ec), nullptr) << len;
  }
}

TEST(WireTest, RejectsWrongIdentifier) {
  FrameBuilder builder;
  AlignedFrame copy(builder.build({.kind = wire::Kind::Ping}));
  copy.data()[4] = std::byte{'X'};  // the file identifier follows the root offset
  std::error_code ec;
  EXPECT_EQ(verify_frame(copy.view(), ec), nullptr);
  EXPECT_EQ(ec, Errc::kMalformedFrame);
}

TEST(WireTest, RejectsOversizeBeforeLookingInside) {
  FrameBuilder builder;
  AlignedFrame copy(builder.build({.kind = wire::Kind::Ping}));
  std::error_code ec;
  EXPECT_EQ(verify_frame(copy.view(), ec, {.max_bytes = 8}), nullptr);
  EXPECT_EQ(ec, Errc::kMessageTooLarge);
}

TEST(WireTest, RejectsUnknownKind) {
  flatbuffers::FlatBufferBuilder fbb;
  wire::EnvelopeBuilder b(fbb);
  b.add_kind(static_cast<wire::Kind>(200));
  fbb.Finish(b.Finish(), wire::EnvelopeIdentifier());
  AlignedFrame copy({reinterpret_cast<const std::byte*>(fbb.GetBufferPointer()), fbb.GetSize()});
  std::error_code ec;
  EXPECT_EQ(verify_frame(copy.view(), ec), nullptr);
  EXPECT_EQ(ec, Errc::kMalformedFrame);
}

// Every single-byte corruption of a valid frame is either still valid or refused: never a
// crash or an out-of-bounds read (the asan preset runs this).
TEST(WireTest, SurvivesEveryByteCorruption) {
  FrameBuilder builder;
  std::vector<Msg> msgs{full_msg(), full_msg()};
  AlignedFrame pristine(builder.build({.kind = wire::Kind::Call, .messages = msgs}));
  std::mt19937 rng(7);
  for (std::size_t i = 0; i < pristine.size; ++i) {
    for (int trial = 0; trial < 4; ++trial) {
      AlignedFrame copy = pristine;
      copy.data()[i] = static_cast<std::byte>(rng());
      std::error_code ec;
      if (const auto* env = verify_frame(copy.view(), ec)) {
        if (env->messages()) {
          for (const auto* m : *env->messages()) (void)from_wire(*m);
        }
      }
    }
  }
}

TEST(WireTest, VerifiesLargeBatches) {
  // 200k messages: beyond FlatBuffers' default would still pass; the default max_tables of
  // 1e6 would refuse a 1e6-message batch, which our limits admit.
  FrameBuilder builder(1 << 20);
  std::vector<Msg> msgs(200'000, Msg("n", "c"));
  AlignedFrame copy(builder.build({.kind = wire::Kind::Result, .messages = msgs}));
  std::error_code ec;
  const auto* env = verify_frame(copy.view(), ec);
  ASSERT_NE(env, nullptr) << ec.message();
  EXPECT_EQ(env->messages()->size(), 200'000u);
}

TEST(ErrorTest, ThrowErrorPicksTheType) {
  EXPECT_THROW(throw_error(Errc::kTimeout, "x"), Timeout);
  EXPECT_THROW(throw_error(Errc::kPeerDead, "x"), AgentDied);
  EXPECT_THROW(throw_error(Errc::kMalformedFrame, "x"), ProtocolError);
  EXPECT_THROW(throw_error(Errc::kClosed, "x"), Error);
  try {
    throw_error(Errc::kMessageTooLarge, "send to B");
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "send to B: message larger than the size limit");
  }
}

}  // namespace
}  // namespace troupe
