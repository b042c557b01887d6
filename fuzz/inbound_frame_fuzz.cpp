// libFuzzer target: any bytes as an inbound frame. verify_frame() refuses what is not a valid
// Envelope with an error value; whatever it accepts reads whole, every message decoded, without
// a crash or an out-of-bounds read (built with AddressSanitizer and UBSan: the fuzz preset).
// And the envelope verifier that verify_frame() uses answers as FlatBuffers' generated
// verifier does, on every input.
//
//   cmake --preset fuzz && cmake --build --preset fuzz
//   build/fuzz/fuzz/inbound_frame_fuzz -max_total_time=60
#include <cstdint>
#include <cstring>
#include <vector>

#include "troupe/core/detail/envelope_verifier.hpp"
#include "troupe/core/wire.hpp"

namespace {

/// A valid call frame with two full messages, as a sender builds it.
std::vector<std::byte> valid_frame() {
  troupe::Msg m("alice", "hello, world", "user");
  m.set_url({"https://a.example/1", "file:///tmp/x"}).set_metadata(R"({"t":0.5})");
  m.set_payload({std::byte{0}, std::byte{255}, std::byte{7}});
  const std::vector<troupe::Msg> msgs{m, troupe::Msg("bob", "second")};
  troupe::FrameBuilder builder;
  const troupe::FrameView frame = builder.build(
      {.kind = troupe::wire::Kind::Call, .call_id = 7, .messages = msgs, .error = "e"});
  return {frame.begin(), frame.end()};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // An input that starts with an odd byte is a list of (offset, value) patches to a valid
  // frame, which reaches the verifier's deeper checks far sooner than raw bytes do; any other
  // is the frame itself.
  static const std::vector<std::byte> kValid = valid_frame();
  std::vector<std::byte> bytes;
  if (size != 0 && data[0] % 2 == 1) {
    bytes = kValid;
    for (std::size_t i = 1; i + 2 < size; i += 3) {
      const std::size_t offset = (std::size_t{data[i]} << 8 | data[i + 1]) % bytes.size();
      bytes[offset] = static_cast<std::byte>(data[i + 2]);
    }
  } else {
    bytes.assign(reinterpret_cast<const std::byte*>(data),
                 reinterpret_cast<const std::byte*>(data) + size);
  }
  // Frames arrive 8-byte aligned (ring records are): so does this copy.
  std::vector<std::uint64_t> words((bytes.size() + 7) / 8);
  if (!bytes.empty()) std::memcpy(words.data(), bytes.data(), bytes.size());
  const troupe::FrameView frame(reinterpret_cast<const std::byte*>(words.data()), bytes.size());
  std::error_code ec;
  const troupe::wire::Envelope* envelope = troupe::verify_frame(frame, ec);
  // The envelope verifier gives flatbuffers::Verifier's answer on every input: under the
  // default limits, and under small ones the input's last bytes pick (depth 0-3, 0-8 tables).
  const auto* raw = reinterpret_cast<const std::uint8_t*>(words.data());
  auto same_answer = [&](std::uint32_t max_depth, std::uint32_t max_tables) {
    flatbuffers::Verifier reference(raw, bytes.size(), max_depth, max_tables);
    return troupe::detail::envelope_verifies(raw, bytes.size(), max_depth, max_tables) ==
           reference.VerifyBuffer<troupe::wire::Envelope>(troupe::wire::EnvelopeIdentifier());
  };
  const troupe::VerifyLimits limits;
  if (!same_answer(limits.max_depth, limits.max_tables)) __builtin_trap();
  if (size >= 2 && !same_answer(data[size - 1] % 4, data[size - 2] % 9)) __builtin_trap();
  if (envelope == nullptr) return 0;
  (void)envelope->kind();
  (void)envelope->call_id();
  (void)envelope->agent_id();
  if (const auto* error = envelope->error()) (void)error->str();
  if (const auto* messages = envelope->messages()) {
    for (const auto* m : *messages) (void)troupe::from_wire(*m);
  }
  return 0;
}
