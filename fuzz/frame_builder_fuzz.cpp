// libFuzzer target: envelopes made from the fuzzer's bytes (any number of messages, with and
// without urls, metadata, payloads, errors; some messages settled placeholders), written by
// FrameBuilder into a buffer of exactly its bound. Each frame must pass the generated verifier
// and read back field for field.
//
//   cmake --preset fuzz && cmake --build --preset fuzz
//   build/fuzz/fuzz/frame_builder_fuzz -max_total_time=60
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "troupe/core/detail/result_state.hpp"
#include "troupe/core/wire.hpp"

namespace {

// Draws values from the fuzzer's bytes; zeros once they run out.
class Draw {
 public:
  Draw(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  std::uint8_t byte() {
    if (size_ == 0) return 0;
    --size_;
    return *data_++;
  }
  std::uint64_t word() {
    std::uint64_t w = 0;
    for (int i = 0; i < 8; ++i) w = w << 8 | byte();
    return w;
  }
  // Up to `max` bytes, or (rarely) up to 64 KiB, taken from the input itself.
  std::string text(std::size_t max) {
    std::size_t length = byte() % (max + 1);
    if (byte() == 0xFF) length = std::size_t{byte()} << 8 | byte();
    length = std::min(length, size_);
    std::string s(reinterpret_cast<const char*>(data_), length);
    data_ += length;
    size_ -= length;
    return s;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
};

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "frame_builder_fuzz: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using troupe::Msg;
  Draw draw(data, size);
  std::vector<Msg> msgs(draw.byte() % 6);
  for (Msg& m : msgs) {
    m = Msg(draw.text(40), draw.text(200), draw.text(10));
    if (draw.byte() & 1) m.set_id(draw.text(40));
    if (draw.byte() & 1) {
      std::vector<std::string> url(draw.byte() % 5);
      for (auto& u : url) u = draw.text(30);
      m.set_url(std::move(url));
    }
    if (draw.byte() & 1) m.set_metadata(draw.text(50));
    if (draw.byte() & 1) {
      const std::string bytes = draw.text(255);
      const auto* begin = reinterpret_cast<const std::byte*>(bytes.data());
      m.set_payload({begin, begin + bytes.size()});
    }
    m.set_timestamp_ns(static_cast<std::int64_t>(draw.word()));
    if (draw.byte() % 4 == 0) {
      auto state = std::make_shared<troupe::detail::ResultState>();
      state->resolve(m);
      m = Msg::placeholder(std::move(state));
    }
  }
  const std::string error = draw.text(60);
  const troupe::EnvelopeFields fields{.kind = static_cast<troupe::wire::Kind>(draw.byte() % 14),
                                      .call_id = draw.word(),
                                      .agent_id = draw.word(),
                                      .messages = msgs,
                                      .error = error};
  troupe::FrameBuilder builder(0);  // a buffer of exactly the frame's bound
  const troupe::FrameView built = builder.build(fields);
  std::vector<std::uint64_t> words((built.size() + 7) / 8);
  std::memcpy(words.data(), built.data(), built.size());
  std::error_code ec;
  const auto* envelope =
      troupe::verify_frame({reinterpret_cast<const std::byte*>(words.data()), built.size()}, ec);
  if (envelope == nullptr) fail("a built frame failed verification");
  if (envelope->kind() != fields.kind || envelope->call_id() != fields.call_id ||
      envelope->agent_id() != fields.agent_id) {
    fail("the envelope's scalars differ");
  }
  if ((envelope->error() != nullptr) != !error.empty() ||
      (envelope->error() != nullptr && envelope->error()->str() != error)) {
    fail("the error text differs");
  }
  if ((envelope->messages() != nullptr) != !msgs.empty()) fail("the messages' presence differs");
  for (std::size_t i = 0; i < msgs.size(); ++i) {
    if (!(troupe::from_wire(*envelope->messages()->Get(static_cast<unsigned>(i))) == msgs[i])) {
      fail("a message differs");
    }
  }
  return 0;
}
