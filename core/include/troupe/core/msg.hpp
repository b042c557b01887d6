#pragma once
// troupe::Msg: the message agents exchange, after AgentScope's Msg. A value type; its wire form
// is the FlatBuffers table troupe.wire.Msg (troupe/core/wire.hpp converts).
//
// A Msg may be a placeholder: calling a distributed agent returns one at once. Reading any field
// blocks until the result arrives (and throws troupe::RemoteError, Refused, AgentDied or Timeout
// if the call failed); passing a placeholder to another call does not block. ready(),
// wait_for() and error() ask without blocking or throwing. Copies of a placeholder share its
// result.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <vector>

namespace troupe {
namespace detail {
class ResultState;
}
namespace wire {
struct Msg;
}

class Msg {
 public:
  /// An empty message: what a call with no input passes (Msg().empty() is true).
  Msg() = default;
  // A placeholder's own fields are always empty (an edit first makes it plain): a copy of one
  // takes the shared result and leaves its ~250 bytes of empty strings unread. Every call
  // copies its inputs, most of them placeholders in a program that issues ahead.
  Msg(const Msg& other) : fields_(fields_to_copy(other)), state_(other.state_) {}
  Msg& operator=(const Msg& other) {
    if (this != &other) {
      if (other.state_) {
        fields_ = Fields{};
      } else {
        fields_ = other.fields_;
      }
      state_ = other.state_;
    }
    return *this;
  }
  Msg(Msg&&) noexcept = default;
  Msg& operator=(Msg&&) noexcept = default;
  ~Msg() = default;
  /// A new message with a fresh id and the current time as its timestamp.
  Msg(std::string name, std::string content, std::string role = "assistant");

  // Field reads block while the message is a pending placeholder.
  const std::string& id() const { return fields().id; }
  const std::string& name() const { return fields().name; }
  const std::string& role() const { return fields().role; }
  const std::string& content() const { return fields().content; }
  const std::vector<std::string>& url() const { return fields().url; }
  /// JSON text; empty when there is none.
  const std::string& metadata() const { return fields().metadata; }
  /// Nanoseconds since the Unix epoch.
  std::int64_t timestamp_ns() const { return fields().timestamp_ns; }
  /// Optional binary data (simulation state, tensors...), carried without conversion.
  const std::vector<std::byte>& payload() const { return fields().payload; }

  Msg& set_id(std::string v) {
    return edit([&](Fields& f) { f.id = std::move(v); });
  }
  Msg& set_name(std::string v) {
    return edit([&](Fields& f) { f.name = std::move(v); });
  }
  Msg& set_role(std::string v) {
    return edit([&](Fields& f) { f.role = std::move(v); });
  }
  Msg& set_content(std::string v) {
    return edit([&](Fields& f) { f.content = std::move(v); });
  }
  Msg& set_url(std::vector<std::string> v) {
    return edit([&](Fields& f) { f.url = std::move(v); });
  }
  Msg& set_metadata(std::string json) {
    return edit([&](Fields& f) { f.metadata = std::move(json); });
  }
  Msg& set_timestamp_ns(std::int64_t v) {
    return edit([&](Fields& f) { f.timestamp_ns = v; });
  }
  Msg& set_payload(std::vector<std::byte> v) {
    return edit([&](Fields& f) { f.payload = std::move(v); });
  }

  /// True for a default-constructed message (no id, no fields). Blocks on a placeholder.
  bool empty() const;
  /// Equal on every field but id and timestamp: how sequential equivalence compares results.
  bool same_content_as(const Msg& other) const;
  /// Equal on every field. Blocks on placeholders.
  friend bool operator==(const Msg& a, const Msg& b);

  // Placeholders.
  /// True if this message stands for a result (pending or settled).
  bool is_placeholder() const noexcept { return state_ != nullptr; }
  /// True unless this is a placeholder whose result has not arrived. Never blocks.
  bool ready() const noexcept;
  /// Waits at most `timeout` for the result; returns ready().
  bool wait_for(std::chrono::nanoseconds timeout) const;
  /// The failure as a value (nullptr if the call succeeded); waits for the result.
  std::exception_ptr error() const;
  /// The failure's text, or "" if the call succeeded; waits for the result.
  std::string error_message() const;
  /// The plain message: waits, throws the failure if any.
  Msg resolved() const;

  /// The runtime's side: a placeholder for `state`.
  static Msg placeholder(std::shared_ptr<detail::ResultState> state);
  /// Decodes a verified wire Msg (troupe/core/wire.hpp), filling the fields in place.
  friend Msg from_wire(const wire::Msg& msg);
  const std::shared_ptr<detail::ResultState>& state() const noexcept { return state_; }

 private:
  struct Fields {
    std::string id;
    std::string name;
    std::string role;
    std::string content;
    std::vector<std::string> url;
    std::string metadata;
    std::int64_t timestamp_ns = 0;
    std::vector<std::byte> payload;
    friend bool operator==(const Fields&, const Fields&) = default;
  };

  // Built straight into the copy (a conditional expression would add a move of ~250 bytes).
  static Fields fields_to_copy(const Msg& m) {
    if (m.state_) return Fields{};
    return m.fields_;
  }

  // Waits on a placeholder and throws its failure; a plain message's fields are at hand.
  const Fields& fields() const { return state_ ? settled_fields() : fields_; }
  const Fields& settled_fields() const;
  template <class F>
  Msg& edit(F&& f) {
    materialize();
    f(fields_);
    return *this;
  }
  void materialize();  // a placeholder becomes a plain copy of its value

  Fields fields_;
  std::shared_ptr<detail::ResultState> state_;
};

/// Waits until every message is ready, at most `timeout`; returns whether all are.
bool wait_all(const std::vector<Msg>& msgs,
              std::chrono::nanoseconds timeout = std::chrono::nanoseconds::max());
/// Waits until one message is ready, at most `timeout`; returns its index, or -1 on timeout.
int wait_any(const std::vector<Msg>& msgs,
             std::chrono::nanoseconds timeout = std::chrono::nanoseconds::max());

/// Characters in an id from new_msg_id(): short enough for std::string's inline buffer.
inline constexpr std::size_t kMsgIdLength = 15;
/// A fresh 90-bit id in 15 characters of [0-9a-zA-Z_-], unique across threads and processes
/// without coordination (a random 64-bit prefix per thread and a counter).
std::string new_msg_id();

}  // namespace troupe
