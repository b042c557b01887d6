#include "troupe/core/wire.hpp"

#include "troupe/core/detail/envelope_verifier.hpp"
#include "troupe/core/error.hpp"

namespace troupe {
namespace {

std::string_view view_of(const flatbuffers::String* s) {
  return s == nullptr ? std::string_view{} : std::string_view{s->data(), s->size()};
}

}  // namespace

flatbuffers::Offset<wire::Msg> to_wire(flatbuffers::FlatBufferBuilder& builder, const Msg& msg) {
  // Children first: FlatBuffers builds back to front and a table cannot nest another's build.
  auto id = builder.CreateString(msg.id());
  auto name = builder.CreateString(msg.name());
  auto role = builder.CreateString(msg.role());
  auto content = builder.CreateString(msg.content());
  flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>> url;
  if (!msg.url().empty()) url = builder.CreateVectorOfStrings(msg.url());
  flatbuffers::Offset<flatbuffers::String> metadata;
  if (!msg.metadata().empty()) metadata = builder.CreateString(msg.metadata());
  flatbuffers::Offset<flatbuffers::Vector<std::uint8_t>> payload;
  if (!msg.payload().empty()) {
    payload = builder.CreateVector(reinterpret_cast<const std::uint8_t*>(msg.payload().data()),
                                   msg.payload().size());
  }
  wire::MsgBuilder b(builder);
  b.add_id(id);
  b.add_name(name);
  b.add_role(role);
  b.add_content(content);
  if (!url.IsNull()) b.add_url(url);
  if (!metadata.IsNull()) b.add_metadata(metadata);
  b.add_timestamp_ns(msg.timestamp_ns());
  if (!payload.IsNull()) b.add_payload(payload);
  return b.Finish();
}

Msg from_wire(const wire::Msg& m) {
  Msg msg;
  Msg::Fields& f = msg.fields_;  // filled in place: one copy of each field, no more
  f.id = view_of(m.id());
  f.name = view_of(m.name());
  f.role = view_of(m.role());
  f.content = view_of(m.content());
  f.metadata = view_of(m.metadata());
  f.timestamp_ns = m.timestamp_ns();
  if (const auto* url = m.url()) {
    f.url.reserve(url->size());
    for (const auto* u : *url) f.url.emplace_back(view_of(u));
  }
  if (const auto* payload = m.payload()) {
    const auto* begin = reinterpret_cast<const std::byte*>(payload->data());
    f.payload.assign(begin, begin + payload->size());
  }
  return msg;
}

const wire::Envelope* verify_frame(FrameView frame, std::error_code& ec,
                                   const VerifyLimits& limits) noexcept {
  // Check the length before the verifier looks inside: FlatBuffers offsets are 32-bit, and its
  // rules (which the envelope verifier applies) hold only for buffers under 2 GiB - 1 byte.
  if (frame.size() > limits.max_bytes || frame.size() >= FLATBUFFERS_MAX_BUFFER_SIZE) {
    ec = Errc::kMessageTooLarge;
    return nullptr;
  }
  const auto* data = reinterpret_cast<const std::uint8_t*>(frame.data());
  if (frame.size() < 8 || reinterpret_cast<std::uintptr_t>(data) % 8 != 0) {
    ec = Errc::kMalformedFrame;
    return nullptr;
  }
  // FlatBuffers' verifier rules, applied by a walk written for this schema (a fraction of the
  // generated Verify's instructions; envelope_verifier.hpp).
  if (!detail::envelope_verifies(data, frame.size(), limits.max_depth, limits.max_tables)) {
    ec = Errc::kMalformedFrame;
    return nullptr;
  }
  const auto* envelope = wire::GetEnvelope(data);
  if (envelope->kind() > wire::Kind::MAX) {
    ec = Errc::kMalformedFrame;
    return nullptr;
  }
  ec.clear();
  return envelope;
}

}  // namespace troupe
