// The seed's conversation: two agents in two processes pass a message back and forth,
//   x = a(x); x = b(x);
// until one of them says "exit". Each agent keeps its own state (a turn counter) in its server.
//
//   conversation [turns]      default 5
#include <cstdio>
#include <cstdlib>
#include <string>
#include <troupe/troupe.hpp>

namespace {

// Counts turns and says "exit" once it has spoken `turns` times.
class Speaker : public troupe::AgentBase {
 public:
  using AgentBase::AgentBase;
  troupe::Msg reply(const troupe::Msg& x) override {
    ++spoken_;
    const int limit = kwargs().value("turns", 5);
    if (spoken_ >= limit) return troupe::Msg(name(), "exit");
    std::string heard = x.empty() ? "(silence)" : x.content();
    return troupe::Msg(name(), name() + " turn " + std::to_string(spoken_) + ", heard: " + heard);
  }

 private:
  int spoken_ = 0;
};
TROUPE_REGISTER_AGENT(Speaker);

}  // namespace

int main(int argc, char** argv) {
  troupe::init(argc, argv);
  const int turns = argc > 1 ? std::atoi(argv[1]) : 5;
  if (turns <= 0) {
    std::fprintf(stderr, "usage: conversation [turns > 0]\n");
    return 2;
  }
  auto a = Speaker("Alice", {{"turns", turns}}).to_dist();
  auto b = Speaker("Bob", {{"turns", turns + 1}}).to_dist();
  troupe::Msg x;
  int exchanged = 0;
  while (x.empty() || x.content() != "exit") {
    x = a(x);
    if (x.content() != "exit") x = b(x);
    ++exchanged;
    std::printf("%-6s: %s\n", x.name().c_str(), x.content().c_str());
  }
  std::printf("conversation over after %d rounds (Alice in pid %d, Bob in pid %d)\n", exchanged,
              a.server_pid(), b.server_pid());
  return 0;
}
