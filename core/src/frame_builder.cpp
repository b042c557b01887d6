// FrameBuilder: an Envelope's FlatBuffers bytes, written front to back in one pass.
//
// A FlatBuffers buffer is a root offset, the file identifier, then tables, vectors and strings
// anywhere after it, as long as every reference points forward (an unsigned offset from the
// referring slot), every scalar sits at a multiple of its size from the buffer's start, and
// each table begins with a signed offset to its vtable: [vtable bytes, table bytes, one field
// offset per schema field, 0 for an absent field]. The layout written here:
//
//   0   root offset -> Envelope table          4   "TRP1"
//   8   Envelope vtable                        then the Envelope table (at 4 mod 8, so that
//       its 8-byte fields right after the vtable offset are aligned), the messages vector,
//       each Msg (vtable, table, then its strings and vectors), and the error string last.
//
// Strings are [u32 length][bytes][NUL] at 4-byte boundaries; vectors [u32 count][elements].
// Every padding byte is written (zero): no uninitialised memory leaves the process. The field
// offsets below follow the generated code (troupe_generated.h): a schema change that moves a
// field must change them too, and wire_test's comparisons with FlatBufferBuilder's frames
// fail until it does.
#include <algorithm>
#include <bit>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>

#include "troupe/core/detail/result_state.hpp"
#include "troupe/core/error.hpp"
#include "troupe/core/wire.hpp"

namespace troupe {
namespace {

static_assert(std::endian::native == std::endian::little, "FlatBuffers data is little-endian");

// Where each field sits from its table's start (the vtable offset takes bytes 0-3), and the
// table's inline bytes (the vtable offset included).
namespace envelope_at {
constexpr std::uint16_t kCallId = 4, kAgentId = 12, kMessages = 20, kError = 24, kKind = 28;
constexpr std::uint16_t kInlineBytes = 29;
}  // namespace envelope_at
namespace msg_at {
constexpr std::uint16_t kTimestamp = 4, kId = 12, kName = 16, kRole = 20, kContent = 24, kUrl = 28,
                        kMetadata = 32, kPayload = 36;
constexpr std::uint16_t kInlineBytes = 40;
}  // namespace msg_at

static_assert(wire::Envelope::VT_KIND == 4 && wire::Envelope::VT_CALL_ID == 6 &&
                  wire::Envelope::VT_AGENT_ID == 8 && wire::Envelope::VT_MESSAGES == 10 &&
                  wire::Envelope::VT_ERROR == 12,
              "the Envelope's fields moved: update the vtable written below");
static_assert(wire::Msg::VT_ID == 4 && wire::Msg::VT_NAME == 6 && wire::Msg::VT_ROLE == 8 &&
                  wire::Msg::VT_CONTENT == 10 && wire::Msg::VT_URL == 12 &&
                  wire::Msg::VT_METADATA == 14 && wire::Msg::VT_TIMESTAMP_NS == 16 &&
                  wire::Msg::VT_PAYLOAD == 18,
              "the Msg's fields moved: update the vtable written below");
// And their types, which fix the bytes each slot takes.
template <class Field, class Expected>
constexpr bool kIs = std::is_same_v<std::remove_cvref_t<Field>, Expected>;
static_assert(kIs<decltype(std::declval<wire::Envelope>().kind()), wire::Kind> &&
                  sizeof(wire::Kind) == 1 &&
                  kIs<decltype(std::declval<wire::Envelope>().call_id()), std::uint64_t> &&
                  kIs<decltype(std::declval<wire::Envelope>().agent_id()), std::uint64_t> &&
                  kIs<decltype(std::declval<wire::Msg>().timestamp_ns()), std::int64_t>,
              "a field's type changed: update the layout written below");

// The most bytes a frame takes besides its strings' and payloads' own bytes, summed from the
// layout (wire_test builds frames into buffers of exactly this bound, under AddressSanitizer
// in CI, so a layout that outgrows it fails there).
constexpr std::size_t kStringOverhead = 3 + 4 + 1;  // alignment, length, NUL
constexpr std::size_t kVectorOverhead = 3 + 4;      // alignment, count
constexpr std::size_t table_overhead(std::size_t fields, std::size_t inline_bytes) {
  return 1 + (4 + 2 * fields) + 7 + inline_bytes;  // alignment, vtable, alignment, table
}
// The frame's own: root offset and identifier, the Envelope, the messages vector, the error
// string, and the last padding store (which may write 8 bytes).
constexpr std::size_t kPerFrame =
    8 + table_overhead(5, envelope_at::kInlineBytes) + kVectorOverhead + kStringOverhead + 8;
// Each message's: its slot in the messages vector, the Msg, its strings (id, name, role,
// content, metadata) and vectors (url, payload).
constexpr std::size_t kPerMessage =
    4 + table_overhead(8, msg_at::kInlineBytes) + 5 * kStringOverhead + 2 * kVectorOverhead;
// Each url's: its slot, its string.
constexpr std::size_t kPerUrl = 4 + kStringOverhead;

/// Writes forward into a buffer known to be large enough.
class FrameWriter {
 public:
  explicit FrameWriter(std::byte* base) noexcept : base_(base) {}
  std::size_t pos() const noexcept { return pos_; }

  template <class T>
  void put_at(std::size_t at, T value) noexcept {
    std::memcpy(base_ + at, &value, sizeof value);
  }
  template <class T>
  void put(T value) noexcept {
    put_at(pos_, value);
    pos_ += sizeof value;
  }
  void put_bytes(const void* data, std::size_t n) noexcept {
    if (n != 0) std::memcpy(base_ + pos_, data, n);
    pos_ += n;
  }
  /// Zero padding up to the next position that is `at` mod `align` (a power of two up to 8).
  /// One 8-byte store: what it writes past the padding is written over next.
  void pad_to(std::size_t align, std::size_t at = 0) noexcept {
    std::memset(base_ + pos_, 0, 8);
    pos_ += (at - pos_) & (align - 1);
  }
  /// Points the reference in `slot` at the current position.
  void link(std::size_t slot) noexcept { put_at(slot, static_cast<std::uint32_t>(pos_ - slot)); }

  /// A vtable, then the table it describes (its fields zeroed); returns the table's position.
  template <std::size_t N>
  std::size_t write_table(std::uint16_t inline_bytes, const std::uint16_t (&fields)[N]) noexcept {
    pad_to(2);
    const std::size_t vtable = pos_;
    put(static_cast<std::uint16_t>(4 + 2 * N));
    put(inline_bytes);
    for (std::uint16_t f : fields) put(f);
    pad_to(8, 4);  // 8-byte fields follow the 4-byte vtable offset
    const std::size_t table = pos_;
    std::memset(base_ + table, 0, inline_bytes);
    put_at(table, static_cast<std::int32_t>(table - vtable));
    pos_ += inline_bytes;
    return table;
  }

  /// A string; the reference in `slot` points at it.
  void write_string(std::size_t slot, std::string_view s) noexcept {
    pad_to(4);
    link(slot);
    put(static_cast<std::uint32_t>(s.size()));
    put_bytes(s.data(), s.size());
    put(std::uint8_t{0});
  }

  /// A vector of `count` references (zeroed, to be linked), which the reference in `slot`
  /// points at; returns the position of its first element.
  std::size_t write_reference_slots(std::size_t slot, std::size_t count) noexcept {
    pad_to(4);
    link(slot);
    put(static_cast<std::uint32_t>(count));
    const std::size_t first = pos_;
    std::memset(base_ + pos_, 0, 4 * count);
    pos_ += 4 * count;
    return first;
  }

 private:
  std::byte* base_;
  std::size_t pos_ = 0;
};

void write_msg(FrameWriter& w, std::size_t slot, const Msg& placed) {
  // A placeholder's fields are read through its settled result: look it up once.
  const Msg& m = placed.is_placeholder() ? placed.state()->value() : placed;
  const std::vector<std::string>& url = m.url();
  const std::string& metadata = m.metadata();
  const std::vector<std::byte>& payload = m.payload();
  using namespace msg_at;
  const std::size_t t = w.write_table(
      kInlineBytes, {kId, kName, kRole, kContent, url.empty() ? std::uint16_t{0} : kUrl,
                     metadata.empty() ? std::uint16_t{0} : kMetadata, kTimestamp,
                     payload.empty() ? std::uint16_t{0} : kPayload});
  w.put_at(slot, static_cast<std::uint32_t>(t - slot));
  w.put_at(t + kTimestamp, m.timestamp_ns());
  w.write_string(t + kId, m.id());
  w.write_string(t + kName, m.name());
  w.write_string(t + kRole, m.role());
  w.write_string(t + kContent, m.content());
  if (!url.empty()) {
    const std::size_t first = w.write_reference_slots(t + kUrl, url.size());
    for (std::size_t i = 0; i < url.size(); ++i) w.write_string(first + 4 * i, url[i]);
  }
  if (!metadata.empty()) w.write_string(t + kMetadata, metadata);
  if (!payload.empty()) {
    w.pad_to(4);
    w.link(t + kPayload);
    w.put(static_cast<std::uint32_t>(payload.size()));
    w.put_bytes(payload.data(), payload.size());
  }
}

}  // namespace

void FrameBuilder::fit(std::size_t bytes) {
  // Grows by doubling; gives a large buffer back only after a run of small frames, so that a
  // worker alternating large results with small replies does not allocate for each.
  constexpr std::size_t kKeep = std::size_t{1} << 20;
  constexpr int kSmallBuildsBeforeShrinking = 64;
  const std::size_t capacity = words_.size() * 8;
  small_builds_ = bytes <= kKeep ? std::min(small_builds_ + 1, kSmallBuildsBeforeShrinking) : 0;
  std::size_t wanted = 0;
  if (bytes > capacity) {
    wanted = std::max(bytes, std::min(2 * capacity, kMaxFrameBytes));
  } else if (capacity > kKeep && small_builds_ >= kSmallBuildsBeforeShrinking) {
    wanted = kKeep;
  }
  if (wanted != 0) {
    // Not resize(): it would keep the old buffer's memory when shrinking, and copy it when
    // growing.
    std::vector<std::uint64_t>((wanted + 7) / 8).swap(words_);
  }
}

FrameView FrameBuilder::build(const EnvelopeFields& fields) {
  std::size_t bytes = kPerFrame + fields.error.size();
  for (const Msg& placed : fields.messages) {
    const Msg& m = placed.is_placeholder() ? placed.state()->value() : placed;
    bytes += kPerMessage + m.id().size() + m.name().size() + m.role().size() + m.content().size() +
             m.metadata().size() + m.payload().size();
    for (const std::string& u : m.url()) bytes += kPerUrl + u.size();
  }
  if (bytes > kMaxFrameBytes) {
    throw Error("a message of " + std::to_string(bytes) +
                " bytes is larger than a frame carries (" + std::to_string(kMaxFrameBytes) +
                " bytes)");
  }
  fit(bytes);

  auto* base = reinterpret_cast<std::byte*>(words_.data());
  FrameWriter w(base);
  w.put(std::uint32_t{0});  // the root offset, set below
  w.put_bytes(wire::EnvelopeIdentifier(), flatbuffers::kFileIdentifierLength);
  const bool has_messages = !fields.messages.empty();
  const bool has_error = !fields.error.empty();
  using namespace envelope_at;
  const std::size_t t = w.write_table(
      kInlineBytes, {kKind, kCallId, kAgentId, has_messages ? kMessages : std::uint16_t{0},
                     has_error ? kError : std::uint16_t{0}});
  w.put_at(0, static_cast<std::uint32_t>(t));
  w.put_at(t + kKind, static_cast<std::uint8_t>(fields.kind));
  w.put_at(t + kCallId, fields.call_id);
  w.put_at(t + kAgentId, fields.agent_id);
  if (has_messages) {
    const std::size_t first = w.write_reference_slots(t + kMessages, fields.messages.size());
    for (std::size_t i = 0; i < fields.messages.size(); ++i) {
      write_msg(w, first + 4 * i, fields.messages[i]);
    }
  }
  if (has_error) w.write_string(t + kError, fields.error);
  w.pad_to(8);
  return {base, w.pos()};
}

}  // namespace troupe
