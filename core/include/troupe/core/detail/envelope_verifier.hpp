#pragma once
// The inbound frame's check: flatbuffers::Verifier's rules for an Envelope buffer, written out
// for the two tables of schemas/troupe.fbs.
//
// The generated Envelope::Verify and Msg::Verify reach each field through generic steps (look
// the field up in the vtable, check the offset, look it up again to follow it, check what it
// points at), which took ~540-690 instructions for a call or reply frame, the largest single
// cost of a call on either side after the user's reply(). This reads each vtable once and
// applies the same checks to the same bytes. It accepts exactly the buffers the generated
// verifier accepts: tests/core/envelope_verifier_test.cpp compares the two on valid frames of
// many shapes and on hundreds of thousands of corruptions of them, and
// fuzz/inbound_frame_fuzz.cpp compares them on arbitrary bytes under varied limits. The build
// stops if the schema or the FlatBuffers version changes (envelope_verifier.cpp).
#include <cstddef>
#include <cstdint>

namespace troupe::detail {

/// True when flatbuffers::Verifier(data, size, max_depth, max_tables), alignment checks on,
/// accepts the bytes as a troupe.wire.Envelope buffer with the identifier "TRP1". `size` must
/// be below FlatBuffers' 2 GiB limit (the caller checks lengths first).
bool envelope_verifies(const std::uint8_t* data, std::size_t size, std::uint32_t max_depth,
                       std::uint32_t max_tables) noexcept;

}  // namespace troupe::detail
