// A separate project using the installed Troupe: a message over a shared-memory channel.
#include <cstdio>
#include <troupe/shm/shm_channel.hpp>
#include <troupe/troupe.hpp>

int main() {
  using namespace std::chrono_literals;
  const std::string name = troupe::shm::unique_segment_name("consumer");
  auto client = troupe::shm::ShmChannel::create(name, troupe::shm::ChannelSide::kClient);
  auto server = troupe::shm::ShmChannel::attach(name, troupe::shm::ChannelSide::kServer);
  troupe::FrameBuilder builder;
  std::vector<troupe::Msg> msgs{troupe::Msg("consumer", "hello")};
  if (client->send(builder.build({.kind = troupe::wire::Kind::Call, .messages = msgs}),
                   troupe::Clock::now() + 1s)) {
    return 1;
  }
  std::string content;
  std::error_code ec;
  server->poll(
      [&](troupe::FrameBytes frame) {
        std::error_code verify_ec;
        if (const auto* env = troupe::verify_frame(frame, verify_ec)) {
          content = troupe::from_wire(*env->messages()->Get(0)).content();
        }
      },
      1, troupe::Clock::now() + 1s, ec);
  std::printf("installed troupe delivered: %s\n", content.c_str());
  return content == "hello" ? 0 : 1;
}
