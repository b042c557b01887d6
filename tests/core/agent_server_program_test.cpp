// troupe-agent-server, the command-line server: it serves agent classes from the shared
// libraries it loads (support/plugged_agent.cpp, built as a module), and refuses bad input
// clearly. This program has the Plugged class compiled in, as a client placing it needs.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "support/foreign_server.hpp"
#include "support/started_program.hpp"
#include "troupe/troupe.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;

std::unique_ptr<AgentBase> plugged(const std::string& name) {
  return detail::AgentRegistry::instance().create("Plugged", name, Kwargs::object());
}

TEST(AgentServerProgramTest, ServesAgentClassesFromTheLibrariesItLoads) {
  test::ForeignServer server(TROUPE_AGENT_SERVER, {"--load", TROUPE_PLUGGED_AGENT});
  ASSERT_GT(server.port, 0);
  DistAgent p = plugged("P")->to_dist({.port = server.port, .launch_server = false});
  const std::string in_server = " in " + std::to_string(server.server_pid) + ": ";
  EXPECT_EQ(p(Msg("u", "a")).content(), "plugged 1" + in_server + "a");
  EXPECT_EQ(p(Msg("u", "b")).content(), "plugged 2" + in_server + "b");
}

TEST(AgentServerProgramTest, CreatesTheAgentItIsToldToAtLaunch) {
  test::ForeignServer server(TROUPE_AGENT_SERVER, {"--load", TROUPE_PLUGGED_AGENT, "--agent-class",
                                                   "Plugged", "--kwargs", R"({"name": "Pinned"})"});
  DistAgent p = plugged("Pinned")->to_dist({.port = server.port, .launch_server = false});
  const ServerInfo info = p.server().info();
  ASSERT_EQ(info.agents.size(), 1u);
  EXPECT_EQ(info.agents[0].name, "Pinned");
  EXPECT_EQ(info.agents[0].class_name, "Plugged");
  EXPECT_EQ(p(Msg("u", "a")).content().rfind("plugged 1 in ", 0), 0u);
}

TEST(AgentServerProgramTest, AClassTheServerLacksFailsThePlaceholderClearly) {
  test::ForeignServer server(TROUPE_AGENT_SERVER);  // nothing loaded
  DistAgent p = plugged("P")->to_dist({.port = server.port, .launch_server = false});
  try {
    (void)p(Msg("u", "a")).content();
    FAIL() << "a server without the class served it";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Plugged"), std::string::npos) << e.what();
  }
}

// Context switches a process's threads made of their own accord (sleeps, mostly).
long voluntary_switches(pid_t pid) {
  long total = 0;
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  for (const auto& task : std::filesystem::directory_iterator(tasks)) {
    std::ifstream status(task.path() / "status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0) total += std::stol(line.substr(24));
    }
  }
  return total;
}

// A server with several clients (its launcher's and this program's) sleeps on all their
// doorbells at once when idle (it napped 1 ms at a time before), and still answers.
TEST(AgentServerProgramTest, AnIdleServerWithSeveralClientsSleeps) {
  test::ForeignServer server(TROUPE_AGENT_SERVER, {"--load", TROUPE_PLUGGED_AGENT});
  DistAgent p = plugged("P")->to_dist({.port = server.port, .launch_server = false});
  EXPECT_EQ(p.server().info().clients, 2u);
  (void)p(Msg("u", "a")).content();
  std::this_thread::sleep_for(100ms);  // idle
  const long before = voluntary_switches(server.server_pid);
  std::this_thread::sleep_for(500ms);
  const long slept = voluntary_switches(server.server_pid) - before;
  std::printf("an idle server's threads woke %ld times in 500 ms\n", slept);
  EXPECT_LT(slept, 100);  // a receiver napping 1 ms at a time would wake 500 times
  EXPECT_EQ(p(Msg("u", "b")).content().rfind("plugged 2 in ", 0), 0u);
}

// Bad command lines end the program with a message on stderr and no "ready" line.
int exit_code_of(std::vector<std::string> args) {
  test::StartedProgram program = test::start_program(TROUPE_AGENT_SERVER, std::move(args));
  if (!program.first_line.empty()) {  // it serves: stop it rather than wait for it
    ADD_FAILURE() << "it started: " << program.first_line;
    program.process.kill(SIGTERM);
    program.process.wait();
    return -1;
  }
  const int status = program.process.wait();
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(AgentServerProgramTest, BadInputIsAClearFailure) {
  EXPECT_EQ(exit_code_of({"--load", "/nonexistent/libnothing.so"}), 2);
  EXPECT_EQ(exit_code_of({"--agent-class", "Nope"}), 1);                      // unknown class
  EXPECT_EQ(exit_code_of({"--agent-class", "Plugged", "--kwargs", "{"}), 1);  // not JSON
  EXPECT_NE(exit_code_of({"--port", "70000"}), 0);
  test::ForeignServer first(TROUPE_AGENT_SERVER);
  EXPECT_EQ(exit_code_of({"--port", std::to_string(first.port)}), 1);  // the port is in use
}

}  // namespace
}  // namespace troupe
