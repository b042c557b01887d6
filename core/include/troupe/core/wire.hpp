#pragma once
// Frames: every frame on every transport is one FlatBuffers troupe.wire.Envelope. This header
// builds them (reusing one builder, so a small frame costs one build and no allocation) and
// verifies inbound ones: a frame that fails verification is an error value, never a crash.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <system_error>
#include <vector>

#include "troupe/core/msg.hpp"
#include "troupe/wire/troupe_generated.h"

namespace troupe {

/// The largest frame any transport carries: 1 GiB. FlatBuffers' own limit is 2 GiB; staying
/// well under it leaves room for the envelope around a large payload.
inline constexpr std::size_t kMaxFrameBytes = std::size_t{1} << 30;
/// The version of the frames' schema and meaning (schemas/troupe.fbs). A server's Hello says
/// it, and a client refuses a server that speaks another: a frame kind a peer cannot read
/// would be dropped, and the call it answers would wait for ever. (Shared-memory peers of
/// different builds also refuse each other by the segment's layout version; over a network,
/// Hello is the check.) 2: Kind::Refused.
inline constexpr int kProtocolVersion = 2;

using FrameView = std::span<const std::byte>;

/// Converts a Msg to its FlatBuffers table inside `builder`.
flatbuffers::Offset<wire::Msg> to_wire(flatbuffers::FlatBufferBuilder& builder, const Msg& msg);
/// Converts a verified wire Msg back into a value.
Msg from_wire(const wire::Msg& msg);

/// The parts of an Envelope, as the builder takes them.
struct EnvelopeFields {
  wire::Kind kind = wire::Kind::Data;
  std::uint64_t call_id = 0;
  std::uint64_t agent_id = 0;
  std::span<const Msg> messages{};
  std::string_view error{};
};

/// Builds frames into one reused buffer. Not thread-safe: one per thread (or per owner).
///
/// It writes the FlatBuffers bytes front to back in one pass, laid out for this schema
/// (frame_builder.cpp), rather than through flatbuffers::FlatBufferBuilder, which builds back
/// to front through generic steps: a call frame took ~2,000 instructions that way and is a
/// fraction of that now. The bytes are an ordinary FlatBuffers buffer, read by the generated
/// code and checked by its verifier like any other (tests/core/wire_test.cpp builds every
/// kind of frame both ways and compares what a reader sees).
class FrameBuilder {
 public:
  explicit FrameBuilder(std::size_t initial_bytes = 1024) : words_((initial_bytes + 7) / 8) {}
  /// Builds an Envelope; the view stays valid until the next build on this builder. Throws
  /// troupe::Error for a frame larger than kMaxFrameBytes.
  FrameView build(const EnvelopeFields& fields);

 private:
  /// Sizes the buffer for a frame of at most `bytes`.
  void fit(std::size_t bytes);

  std::vector<std::uint64_t> words_;  // 8-byte aligned, as FlatBuffers data must be
  int small_builds_ = 0;              // frames in a row that would fit a buffer of kKeep
};

/// Limits a verifier applies; the defaults admit batches of up to a million messages.
struct VerifyLimits {
  std::size_t max_bytes = kMaxFrameBytes;
  flatbuffers::uoffset_t max_depth = 16;
  flatbuffers::uoffset_t max_tables = 16'000'000;
};

/// Verifies an inbound frame. Returns the Envelope, or nullptr with `ec` set to
/// Errc::kMessageTooLarge or Errc::kMalformedFrame. The frame must be 8-byte aligned.
const wire::Envelope* verify_frame(FrameView frame, std::error_code& ec,
                                   const VerifyLimits& limits = {}) noexcept;

}  // namespace troupe
