// A Troupe program for the lifetime tests: starts three agent servers (two agents share one)
// and a launcher's server, prints "ready <its pid> <fork server pid> <server pids...>", then
// ends the way argv[1] says:
//   return   returns from main          throw   lets an exception escape main
//   wait     waits for a signal (the test sends SIGINT, SIGTERM or SIGKILL)
//   catch    catches SIGINT (Ctrl-C), then calls its agents again: exit code 0 when they all
//            answered
//   catchterm  the same with SIGTERM (sent to the whole process group, as `timeout` does)
//   nochld   ignores SIGCHLD from the start (before init), then kills B's server: exit code 0
//            when B's next call fails naming the signal, and a launcher's shutdown returns
//            within 4 s (7: it did not, its server's exit unreported)
//   busy     calls its agents without end, many calls in flight and some waiting for inputs
//            in the flow graph, until a signal ends it
//   returnbusy, throwbusy  make one round of busy's calls behind a slow one (300 ms), then
//            return or throw without waiting for them (exit code 8: the slow call was done)
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <troupe/troupe.hpp>
#include <vector>

namespace {

// Echoes; "slow" takes 300 ms, so that a call is surely in flight when the program ends.
class Echo : public troupe::AgentBase {
 public:
  using AgentBase::AgentBase;
  troupe::Msg reply(const troupe::Msg& x) override {
    if (x.content() == "slow") std::this_thread::sleep_for(std::chrono::milliseconds(300));
    return troupe::Msg(name(), x.content());
  }
};
TROUPE_REGISTER_AGENT(Echo);

volatile sig_atomic_t g_interrupted = 0;
void on_interrupt(int) { g_interrupted = 1; }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const bool catching_term = std::strcmp(argv[1], "catchterm") == 0;
  const bool catching = std::strcmp(argv[1], "catch") == 0 || catching_term;
  const bool nochld = std::strcmp(argv[1], "nochld") == 0;
  if (nochld) ::signal(SIGCHLD, SIG_IGN);  // the kernel reaps children unseen, unless reset
  troupe::init(argc, argv);
  if (catching) {
    // After init(), as a program would: the fork server and the agent servers do not inherit
    // this handler and must survive the signal by themselves. Not blocked: whichever thread
    // takes the signal sets the flag.
    struct sigaction action {};
    action.sa_handler = on_interrupt;
    ::sigaction(catching_term ? SIGTERM : SIGINT, &action, nullptr);
  }
  auto a = Echo("A").to_dist({.lazy_launch = false});
  auto b = Echo("B").to_dist({.lazy_launch = false});
  auto c = Echo("C").to_dist({.port = a.port(), .launch_server = false});
  for (auto* agent : {&a, &b, &c}) (void)(*agent)(troupe::Msg("u", "hi")).content();
  troupe::RpcAgentServerLauncher hosted("Echo", {{"name", "H"}});
  hosted.launch();
  auto h = Echo("H").to_dist({.port = hosted.port(), .launch_server = false});
  (void)h(troupe::Msg("u", "hi")).content();
  std::printf("ready %d %d %d %d %d\n", ::getpid(),
              troupe::detail::Runtime::get()->fork_server_pid(), a.server_pid(), b.server_pid(),
              hosted.pid());
  std::fflush(stdout);
  if (std::strcmp(argv[1], "throw") == 0) throw std::runtime_error("escaping main");
  if (std::strcmp(argv[1], "wait") == 0) {
    for (;;) ::pause();
  }
  Echo local("L");
  // Many calls in flight on every channel; calls whose input is pending wait in the
  // dispatcher's graph, in-process ones too.
  auto issue_calls = [&] {
    std::vector<troupe::Msg> calls;
    for (int i = 0; i < 64; ++i) {
      for (auto* agent : {&a, &b, &c}) calls.push_back((*agent)(troupe::Msg("u", "x")));
    }
    calls.push_back(local(c(b(a(troupe::Msg("u", "chain"))))));
    return calls;
  };
  if (std::strcmp(argv[1], "busy") == 0) {
    for (;;) troupe::wait_all(issue_calls());
  }
  if (std::strcmp(argv[1], "returnbusy") == 0 || std::strcmp(argv[1], "throwbusy") == 0) {
    const troupe::Msg slow = a(troupe::Msg("u", "slow"));  // surely in flight at the end
    const std::vector<troupe::Msg> calls = issue_calls();
    if (slow.ready()) return 8;
    if (argv[1][0] == 't') throw std::runtime_error("escaping main, calls in flight");
    return 0;
  }
  if (nochld) {
    ::kill(b.server_pid(), SIGKILL);
    try {
      (void)b(troupe::Msg("u", "again")).content();
      return 5;
    } catch (const troupe::AgentDied& e) {
      if (std::strstr(e.what(), "signal 9") == nullptr) {
        std::fprintf(stderr, "AgentDied without the signal: %s\n", e.what());
        return 6;
      }
    }
    troupe::RpcAgentServerLauncher launcher;
    launcher.launch();
    // Waits for the server's exit, which must be reported: if it is not, shutdown() gives up
    // on it after seconds (then kills it), and returns all the same.
    const auto before = std::chrono::steady_clock::now();
    launcher.shutdown();
    if (std::chrono::steady_clock::now() - before > std::chrono::seconds(4)) return 7;
    return 0;
  }
  if (catching) {
    while (g_interrupted == 0) ::usleep(5000);
    for (auto* agent : {&a, &b, &c, &h}) {
      if ((*agent)(troupe::Msg("u", "again")).content() != "again") return 4;
    }
  }
  return 0;
}
