#pragma once
// Frames for the wire tests: aligned copies, sample and random messages, and the reference
// build of an Envelope through FlatBuffers' own FlatBufferBuilder.
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "troupe/core/detail/result_state.hpp"
#include "troupe/core/wire.hpp"

namespace troupe::test {

// FlatBuffers data must be 8-byte aligned: copy test frames into aligned storage.
struct AlignedFrame {
  explicit AlignedFrame(FrameView bytes) : words((bytes.size() + 7) / 8), size(bytes.size()) {
    std::memcpy(words.data(), bytes.data(), bytes.size());
  }
  FrameView view() const { return {reinterpret_cast<const std::byte*>(words.data()), size}; }
  std::byte* data() { return reinterpret_cast<std::byte*>(words.data()); }
  std::vector<std::uint64_t> words;
  std::size_t size;
};

/// A message with every field set.
inline Msg full_msg() {
  Msg m("alice", "hello, world", "user");
  m.set_url({"https://a.example/1", "file:///tmp/x"});
  m.set_metadata(R"({"temperature":0.5})");
  m.set_payload({std::byte{0}, std::byte{255}, std::byte{7}});
  return m;
}

/// The reference: the same Envelope through FlatBuffers' own FlatBufferBuilder.
inline AlignedFrame reference_frame(const EnvelopeFields& fields) {
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<wire::Msg>> offsets;
  for (const Msg& m : fields.messages) offsets.push_back(to_wire(fbb, m));
  flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<wire::Msg>>> messages;
  if (!offsets.empty()) messages = fbb.CreateVector(offsets);
  flatbuffers::Offset<flatbuffers::String> error;
  if (!fields.error.empty()) error = fbb.CreateString(fields.error);
  wire::EnvelopeBuilder b(fbb);
  b.add_call_id(fields.call_id);
  b.add_agent_id(fields.agent_id);
  if (!messages.IsNull()) b.add_messages(messages);
  if (!error.IsNull()) b.add_error(error);
  b.add_kind(fields.kind);
  fbb.Finish(b.Finish(), wire::EnvelopeIdentifier());
  return AlignedFrame({reinterpret_cast<const std::byte*>(fbb.GetBufferPointer()), fbb.GetSize()});
}

/// A message of random fields (any bytes, NUL included), some of them absent.
inline Msg random_msg(std::mt19937_64& rng) {
  auto text = [&](std::size_t max) {
    std::string s(rng() % (max + 1), '\0');
    for (char& c : s) c = static_cast<char>(rng());  // any bytes, NUL included
    return s;
  };
  Msg m(text(20), text(300), text(12));
  if (rng() % 2) {
    std::vector<std::string> url(rng() % 4);
    for (auto& u : url) u = text(40);
    m.set_url(std::move(url));
  }
  if (rng() % 2) m.set_metadata(text(60));
  if (rng() % 2) {
    std::vector<std::byte> payload(rng() % 200);
    for (auto& b : payload) b = static_cast<std::byte>(rng());
    m.set_payload(std::move(payload));
  }
  if (rng() % 8 == 0) m.set_id("");
  m.set_timestamp_ns(static_cast<std::int64_t>(rng()));
  return m;
}

/// `m` as a settled placeholder, sometimes one whose result is a placeholder too.
inline Msg as_placeholder(Msg m, bool nested) {
  auto state = std::make_shared<detail::ResultState>();
  state->resolve(std::move(m));
  Msg placeholder = Msg::placeholder(std::move(state));
  return nested ? as_placeholder(std::move(placeholder), false) : placeholder;
}

}  // namespace troupe::test
