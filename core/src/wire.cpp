#include "troupe/core/wire.hpp"

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
  msg.set_id(std::string(view_of(m.id())))
      .set_name(std::string(view_of(m.name())))
      .set_role(std::string(view_of(m.role())))
      .set_content(std::string(view_of(m.content())))
      .set_metadata(std::string(view_of(m.metadata())))
      .set_timestamp_ns(m.timestamp_ns());
  if (const auto* url = m.url()) {
    std::vector<std::string> urls;
    urls.reserve(url->size());
    for (const auto* u : *url) urls.emplace_back(view_of(u));
    msg.set_url(std::move(urls));
  }
  if (const auto* payload = m.payload()) {
    const auto* begin = reinterpret_cast<const std::byte*>(payload->data());
    msg.set_payload(std::vector<std::byte>(begin, begin + payload->size()));
  }
  return msg;
}

FrameView FrameBuilder::build(const EnvelopeFields& fields) {
  // FlatBuffers checks its 2 GiB limit only by assertion (not in release builds): past it the
  // offsets wrap and the frame is garbage. No frame may exceed kMaxFrameBytes anyway.
  // FlatBuffers' own bytes: at most this per message (table, vtable, string and vector
  // headers), per url, and per frame.
  constexpr std::size_t kPerMessage = 96, kPerUrl = 8, kPerFrame = 64;
  std::size_t bytes = kPerFrame + fields.error.size();
  for (const Msg& m : fields.messages) {
    bytes += kPerMessage + m.id().size() + m.name().size() + m.role().size() + m.content().size() +
             m.metadata().size() + m.payload().size();
    for (const std::string& u : m.url()) bytes += kPerUrl + u.size();
  }
  if (bytes > kMaxFrameBytes) {
    throw Error("a message of " + std::to_string(bytes) +
                " bytes is larger than a frame carries (" + std::to_string(kMaxFrameBytes) +
                " bytes)");
  }
  builder_.Clear();
  flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<wire::Msg>>> messages;
  if (!fields.messages.empty()) {
    offsets_.clear();
    for (const Msg& m : fields.messages) offsets_.push_back(to_wire(builder_, m));
    messages = builder_.CreateVector(offsets_);
  }
  flatbuffers::Offset<flatbuffers::String> error;
  if (!fields.error.empty()) error = builder_.CreateString(fields.error);
  wire::EnvelopeBuilder b(builder_);
  b.add_call_id(fields.call_id);
  b.add_agent_id(fields.agent_id);
  if (!messages.IsNull()) b.add_messages(messages);
  if (!error.IsNull()) b.add_error(error);
  b.add_kind(fields.kind);
  builder_.Finish(b.Finish(), wire::EnvelopeIdentifier());
  return {reinterpret_cast<const std::byte*>(builder_.GetBufferPointer()), builder_.GetSize()};
}

const wire::Envelope* verify_frame(FrameView frame, std::error_code& ec,
                                   const VerifyLimits& limits) noexcept {
  // Check the length before the verifier looks inside: FlatBuffers offsets are 32-bit and the
  // verifier refuses buffers of 2 GiB or more only by assertion.
  if (frame.size() > limits.max_bytes) {
    ec = Errc::kMessageTooLarge;
    return nullptr;
  }
  const auto* data = reinterpret_cast<const std::uint8_t*>(frame.data());
  if (frame.size() < 8 || reinterpret_cast<std::uintptr_t>(data) % 8 != 0) {
    ec = Errc::kMalformedFrame;
    return nullptr;
  }
  flatbuffers::Verifier verifier(data, frame.size(), limits.max_depth, limits.max_tables);
  if (!verifier.VerifyBuffer<wire::Envelope>(wire::EnvelopeIdentifier())) {
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
