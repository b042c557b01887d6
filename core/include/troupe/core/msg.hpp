#pragma once
// troupe::Msg: the message agents exchange, after AgentScope's Msg. A value type; its wire form
// is the FlatBuffers table troupe.wire.Msg (see troupe/core/wire.hpp for the conversions).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace troupe {

class Msg {
 public:
  /// An empty message: what a call with no input passes (Msg().empty() is true).
  Msg() = default;
  /// A new message with a fresh id and the current time as its timestamp.
  Msg(std::string name, std::string content, std::string role = "assistant");

  const std::string& id() const noexcept { return id_; }
  const std::string& name() const noexcept { return name_; }
  const std::string& role() const noexcept { return role_; }
  const std::string& content() const noexcept { return content_; }
  const std::vector<std::string>& url() const noexcept { return url_; }
  /// JSON text; empty when there is none.
  const std::string& metadata() const noexcept { return metadata_; }
  /// Nanoseconds since the Unix epoch.
  std::int64_t timestamp_ns() const noexcept { return timestamp_ns_; }
  /// Optional binary data (simulation state, tensors...), carried without conversion.
  const std::vector<std::byte>& payload() const noexcept { return payload_; }

  Msg& set_id(std::string v) { id_ = std::move(v); return *this; }
  Msg& set_name(std::string v) { name_ = std::move(v); return *this; }
  Msg& set_role(std::string v) { role_ = std::move(v); return *this; }
  Msg& set_content(std::string v) { content_ = std::move(v); return *this; }
  Msg& set_url(std::vector<std::string> v) { url_ = std::move(v); return *this; }
  Msg& set_metadata(std::string json) { metadata_ = std::move(json); return *this; }
  Msg& set_timestamp_ns(std::int64_t v) { timestamp_ns_ = v; return *this; }
  Msg& set_payload(std::vector<std::byte> v) { payload_ = std::move(v); return *this; }

  /// True for a default-constructed message (no id, no fields).
  bool empty() const noexcept;
  /// Equal on every field but id and timestamp: how sequential equivalence compares results.
  bool same_content_as(const Msg& other) const noexcept;
  friend bool operator==(const Msg&, const Msg&) = default;

 private:
  std::string id_;
  std::string name_;
  std::string role_;
  std::string content_;
  std::vector<std::string> url_;
  std::string metadata_;
  std::int64_t timestamp_ns_ = 0;
  std::vector<std::byte> payload_;
};

/// A fresh 128-bit random id in hex (unique across processes without coordination).
std::string new_msg_id();

}  // namespace troupe
