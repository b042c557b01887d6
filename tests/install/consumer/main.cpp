// A separate project using the installed Troupe: a message over a shared-memory channel, then an
// agent of this project's own class placed in a forked server and called there.
#include <unistd.h>

#include <cstdio>
#include <troupe/shm/shm_channel.hpp>
#include <troupe/troupe.hpp>

namespace {

class Greeter : public troupe::AgentBase {
 public:
  using AgentBase::AgentBase;
  troupe::Msg reply(const troupe::Msg& x) override {
    return troupe::Msg(name(), "hello " + x.content() + " from pid " + std::to_string(::getpid()));
  }
};
TROUPE_REGISTER_AGENT(Greeter);

std::string over_a_channel() {
  using namespace std::chrono_literals;
  const std::string name = troupe::shm::unique_segment_name("consumer");
  auto client = troupe::shm::ShmChannel::create(name, troupe::shm::ChannelSide::kClient);
  auto server = troupe::shm::ShmChannel::attach(name, troupe::shm::ChannelSide::kServer);
  troupe::FrameBuilder builder;
  std::vector<troupe::Msg> msgs{troupe::Msg("consumer", "hello")};
  if (client->send(builder.build({.kind = troupe::wire::Kind::Call, .messages = msgs}),
                   troupe::Clock::now() + 1s)) {
    return "";
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
  return content;
}

}  // namespace

int main(int argc, char** argv) {
  troupe::init(argc, argv);
  const std::string content = over_a_channel();
  std::printf("installed troupe delivered: %s\n", content.c_str());
  if (content != "hello") return 1;

  auto greeter = Greeter("G").to_dist();
  const troupe::Msg answer = greeter(troupe::Msg("consumer", "consumer"));
  std::printf("installed troupe's agent said: %s\n", answer.content().c_str());
  const std::string expected = "hello consumer from pid " + std::to_string(greeter.server_pid());
  return answer.content() == expected && greeter.server_pid() != ::getpid() ? 0 : 1;
}
