// A Troupe program for the lifetime tests: starts three agent servers (two agents share one),
// prints "ready <its pid> <fork server pid> <server pids...>", then ends the way argv[1] says:
//   return   returns from main          throw   lets an exception escape main
//   wait     waits for a signal (the test sends SIGINT, SIGTERM or SIGKILL)
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <troupe/troupe.hpp>

namespace {

class Echo : public troupe::AgentBase {
 public:
  using AgentBase::AgentBase;
  troupe::Msg reply(const troupe::Msg& x) override { return troupe::Msg(name(), x.content()); }
};
TROUPE_REGISTER_AGENT(Echo);

}  // namespace

int main(int argc, char** argv) {
  troupe::init(argc, argv);
  if (argc != 2) return 2;
  auto a = Echo("A").to_dist({.lazy_launch = false});
  auto b = Echo("B").to_dist({.lazy_launch = false});
  auto c = Echo("C").to_dist({.port = a.port(), .launch_server = false});
  for (auto* agent : {&a, &b, &c}) (void)(*agent)(troupe::Msg("u", "hi")).content();
  std::printf("ready %d %d %d %d\n", ::getpid(), troupe::detail::Runtime::get()->fork_server_pid(),
              a.server_pid(), b.server_pid());
  std::fflush(stdout);
  if (std::strcmp(argv[1], "throw") == 0) throw std::runtime_error("escaping main");
  if (std::strcmp(argv[1], "wait") == 0) {
    for (;;) ::pause();
  }
  return 0;
}
