#include "troupe/core/detail/envelope_verifier.hpp"

#include <cstring>
#include <string_view>

#include "troupe/wire/troupe_generated.h"

namespace troupe::detail {
namespace {

// The walk below checks every field of schemas/troupe.fbs as it is. A field added to the schema
// would be checked by the generated verifier and not here, and then read unchecked: so the
// build stops when the schema's bytes change (core/CMakeLists.txt passes their hash) or when
// FlatBuffers is another version, until the walk has been compared with the new rules (and the
// differential tests pass) and these lines are updated.
static_assert(std::string_view(TROUPE_SCHEMA_SHA256) ==
                  "dfda65970e2d09e5889b734a7542a1d75f0052b094b843e0ea7241a93cbf06dd",
              "schemas/troupe.fbs changed (any byte, comments too): check the envelope "
              "verifier's walk against it, then update this hash");
static_assert(FLATBUFFERS_VERSION_MAJOR == 2 && FLATBUFFERS_VERSION_MINOR == 0 &&
                  FLATBUFFERS_VERSION_REVISION == 8,
              "another FlatBuffers: compare the envelope verifier with its Verifier's rules");

// FlatBuffers' bounds (flatbuffers/base.h): a buffer's least size (FLATBUFFERS_MIN_BUFFER_SIZE,
// whose macro names its types unqualified), and the count no vector or string may reach (its
// byte size would pass 2 GiB).
constexpr std::size_t kMinBufferSize =
    sizeof(flatbuffers::uoffset_t) + sizeof(flatbuffers::soffset_t) + 2 * sizeof(std::uint16_t);
constexpr std::size_t kMaxBufferSize = FLATBUFFERS_MAX_BUFFER_SIZE;

// One pass over a buffer. Every position is an offset from the buffer's start, and every check
// names the flatbuffers::Verifier (2.0.8) step it stands for. A check that fails ends the walk;
// the verifier's checks are all conjunctions, so the order in which they are made does not
// change the answer, only which bytes may be read: each read here follows the bounds check of
// its bytes.
class Walk {
 public:
  Walk(const std::uint8_t* buf, std::size_t size, std::uint32_t max_depth,
       std::uint32_t max_tables) noexcept
      : buf_(buf), size_(size), max_depth_(max_depth), max_tables_(max_tables) {}

  // Verifier::VerifyBufferFromStart<Envelope>("TRP1", 0).
  bool envelope_buffer() noexcept {
    if (size_ < kMinBufferSize) return false;
    // BufferHasIdentifier: strncmp of 4 characters, none of them NUL in "TRP1": a byte compare.
    if (std::memcmp(buf_ + 4, wire::EnvelopeIdentifier(), 4) != 0) return false;
    const std::size_t root = follow(0);
    return root != 0 && envelope(root);
  }

 private:
  using VT = flatbuffers::voffset_t;

  // A table whose start checked out: where it is and its vtable.
  struct Table {
    std::size_t at;
    std::size_t vtable;
    VT vtable_bytes;
  };

  // Verifier::Verify(elem, len): [elem, elem + len) lies in the buffer.
  bool in(std::size_t elem, std::size_t len) const noexcept {
    return len < size_ && elem <= size_ - len;
  }
  // Verifier::VerifyAlignment: relative to the buffer's start.
  static bool aligned(std::size_t elem, std::size_t align) noexcept {
    return (elem & (align - 1)) == 0;
  }
  template <class T>
  T read(std::size_t at) const noexcept {
    T value;
    std::memcpy(&value, buf_ + at, sizeof value);
    return value;
  }

  // Verifier::VerifyOffset(start): an aligned uoffset at `start`, non-zero, below 2^31, to a
  // byte in the buffer. Returns where it points (never 0), or 0 if it fails.
  std::size_t follow(std::size_t start) const noexcept {
    if (!aligned(start, sizeof(flatbuffers::uoffset_t)) || !in(start, 4)) return 0;
    const auto offset = read<flatbuffers::uoffset_t>(start);
    if (offset == 0 || static_cast<flatbuffers::soffset_t>(offset) < 0) return 0;
    return in(start + offset, 1) ? start + offset : 0;
  }

  // Verifier::VerifyTableStart: the table's soffset, its depth and count, then its vtable.
  bool table_start(std::size_t at, Table& table) noexcept {
    if (!aligned(at, sizeof(flatbuffers::soffset_t)) || !in(at, 4)) return false;
    // Unsigned arithmetic that wraps, as the verifier's: the vtable may lie on either side.
    const std::size_t vtable = at - static_cast<std::size_t>(read<flatbuffers::soffset_t>(at));
    ++depth_;  // VerifyComplexity
    ++tables_;
    if (depth_ > max_depth_ || tables_ > max_tables_) return false;
    if (!aligned(vtable, sizeof(VT)) || !in(vtable, sizeof(VT))) return false;
    const auto vtable_bytes = read<VT>(vtable);
    if ((vtable_bytes & 1) != 0 || !in(vtable, vtable_bytes)) return false;
    table = {at, vtable, vtable_bytes};
    return true;
  }

  // Table::GetOptionalFieldOffset: the field's place in its table, 0 when absent. The vtable's
  // bytes were checked by table_start().
  VT field(const Table& table, VT field_id) const noexcept {
    return field_id < table.vtable_bytes ? read<VT>(table.vtable + field_id) : VT{0};
  }

  // Table::VerifyField<T>(field_id, align).
  template <class T>
  bool scalar(const Table& table, VT field_id) const noexcept {
    const VT place = field(table, field_id);
    return place == 0 || (aligned(table.at + place, sizeof(T)) && in(table.at + place, sizeof(T)));
  }

  // Verifier::VerifyVectorOrString(at, element_bytes): an aligned count and the elements it
  // claims, inside the buffer. Returns the count through `count`.
  bool vector_at(std::size_t at, std::size_t element_bytes, std::size_t& count) const noexcept {
    if (!aligned(at, sizeof(flatbuffers::uoffset_t)) || !in(at, 4)) return false;
    count = read<flatbuffers::uoffset_t>(at);
    if (count >= kMaxBufferSize / element_bytes) return false;
    return in(at, 4 + element_bytes * count);
  }

  // Verifier::VerifyString: a vector of bytes, then a NUL terminator inside the buffer.
  bool string_at(std::size_t at) const noexcept {
    std::size_t length;
    if (!vector_at(at, 1, length)) return false;
    const std::size_t end = at + 4 + length;
    return in(end, 1) && buf_[end] == 0;
  }

  // Vector::Get of an offset element (IndirectHelper): the element plus the offset it holds,
  // with no check of its own (what it points at is checked next, as the verifier does).
  std::size_t element(std::size_t vector, std::size_t i) const noexcept {
    const std::size_t slot = vector + 4 + 4 * i;
    return slot + read<flatbuffers::uoffset_t>(slot);
  }

  // Table::VerifyOffset(field_id) and then the check of what it points to, for an optional
  // field: absent passes. `check` takes the target's position.
  template <class Check>
  bool reference(const Table& table, VT field_id, Check&& check) noexcept {
    const VT place = field(table, field_id);
    if (place == 0) return true;
    const std::size_t target = follow(table.at + place);
    return target != 0 && check(target);
  }

  bool string_field(const Table& table, VT field_id) noexcept {
    return reference(table, field_id, [&](std::size_t text) { return string_at(text); });
  }

  // Verifier::VerifyVector and VerifyVectorOfStrings: offsets to strings.
  bool vector_of_strings(std::size_t at) const noexcept {
    std::size_t count;
    if (!vector_at(at, sizeof(flatbuffers::uoffset_t), count)) return false;
    for (std::size_t i = 0; i < count; ++i) {
      if (!string_at(element(at, i))) return false;
    }
    return true;
  }

  // Verifier::VerifyVector and VerifyVectorOfTables: offsets to Msg tables.
  bool vector_of_msgs(std::size_t at) noexcept {
    std::size_t count;
    if (!vector_at(at, sizeof(flatbuffers::uoffset_t), count)) return false;
    for (std::size_t i = 0; i < count; ++i) {
      if (!msg(element(at, i))) return false;
    }
    return true;
  }

  // Verifier::VerifyVector of bytes.
  bool vector_of_bytes(std::size_t at) const noexcept {
    std::size_t count;
    return vector_at(at, 1, count);
  }

  // Msg::Verify.
  bool msg(std::size_t at) noexcept {
    Table table;
    if (!table_start(at, table)) return false;
    using M = wire::Msg;
    const bool ok =
        string_field(table, M::VT_ID) && string_field(table, M::VT_NAME) &&
        string_field(table, M::VT_ROLE) && string_field(table, M::VT_CONTENT) &&
        reference(table, M::VT_URL, [&](std::size_t url) { return vector_of_strings(url); }) &&
        string_field(table, M::VT_METADATA) && scalar<std::int64_t>(table, M::VT_TIMESTAMP_NS) &&
        reference(table, M::VT_PAYLOAD,
                  [&](std::size_t payload) { return vector_of_bytes(payload); });
    --depth_;  // EndTable
    return ok;
  }

  // Envelope::Verify.
  bool envelope(std::size_t at) noexcept {
    Table table;
    if (!table_start(at, table)) return false;
    using E = wire::Envelope;
    const bool ok = scalar<std::uint8_t>(table, E::VT_KIND) &&
                    scalar<std::uint64_t>(table, E::VT_CALL_ID) &&
                    scalar<std::uint64_t>(table, E::VT_AGENT_ID) &&
                    reference(table, E::VT_MESSAGES,
                              [&](std::size_t messages) { return vector_of_msgs(messages); }) &&
                    string_field(table, E::VT_ERROR);
    --depth_;
    return ok;
  }

  const std::uint8_t* buf_;
  std::size_t size_;
  std::uint32_t max_depth_;
  std::uint32_t max_tables_;
  std::uint32_t depth_ = 0;
  std::uint32_t tables_ = 0;
};

}  // namespace

bool envelope_verifies(const std::uint8_t* data, std::size_t size, std::uint32_t max_depth,
                       std::uint32_t max_tables) noexcept {
  return Walk(data, size, max_depth, max_tables).envelope_buffer();
}

}  // namespace troupe::detail
