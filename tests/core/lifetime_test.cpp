// Clean lifetime: however a Troupe program ends (returns, throws, Ctrl-C, SIGTERM, SIGKILL), no
// process it started and no shared-memory segment of its run remains.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <sstream>
#include <thread>

#include "support/started_program.hpp"
#include "support/test_support.hpp"
#include "troupe/core/channel.hpp"
#include "troupe/core/child_process.hpp"
#include "troupe/shm/segment.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;

// A live process (zombies awaiting a reaper count as gone).
bool alive(pid_t pid) {
  const char state = test::process_state(pid);
  return state != 0 && state != 'Z';
}

struct ProgramRun {
  ChildProcess program;
  pid_t pid;
  std::set<pid_t> started;  // its fork server and agent servers, as it reported them
};

ProgramRun start(const char* mode) {
  // In a process group of its own (see ctrl_c).
  test::StartedProgram program = test::start_program(TROUPE_LIFETIME_PROGRAM, {mode});
  std::istringstream words(program.first_line);
  std::string ready;
  pid_t pid = 0;
  words >> ready >> pid;
  EXPECT_EQ(ready, "ready") << "program said: " << program.first_line;
  ProgramRun run{std::move(program.process), pid, {}};
  pid_t server;
  while (words >> server) run.started.insert(server);
  EXPECT_EQ(run.started.size(), 4u);  // the fork server, two agent servers, a launcher's
  return run;
}

// Ctrl-C in a terminal: SIGINT to the whole foreground process group (the program's; its fork
// server and agent servers have a group of their own, and follow the program).
void ctrl_c(const ProgramRun& run) { ASSERT_EQ(::kill(-run.pid, SIGINT), 0); }

// Waits until every process the run started is gone and no segment of the run remains;
// returns the program's wait status.
int expect_clean(ProgramRun& run) {
  const int status = run.program.wait();
  std::set<pid_t> run_pids = run.started;
  run_pids.insert(run.pid);
  const auto deadline = Clock::now() + 15s;
  std::vector<std::string> leftovers;
  std::vector<pid_t> survivors;
  do {
    std::this_thread::sleep_for(20ms);
    survivors.clear();
    for (pid_t p : run.started) {
      if (alive(p)) survivors.push_back(p);
    }
    leftovers.clear();
    for (const auto& s : shm::list_segments()) {
      if (run_pids.count(s.creator_pid)) leftovers.push_back(s.name);
    }
  } while ((!survivors.empty() || !leftovers.empty()) && Clock::now() < deadline);
  EXPECT_TRUE(survivors.empty()) << survivors.size() << " processes survive, e.g. "
                                 << survivors.front();
  EXPECT_TRUE(leftovers.empty()) << leftovers.size() << " segments remain, e.g. "
                                 << leftovers.front();
  return status;
}

bool exited_cleanly(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }
bool killed_by(int status, int signal) { return WIFSIGNALED(status) && WTERMSIG(status) == signal; }

TEST(LifetimeTest, ProgramReturns) {
  ProgramRun run = start("return");
  const int status = expect_clean(run);
  EXPECT_TRUE(exited_cleanly(status)) << describe_exit(status);
}

TEST(LifetimeTest, ProgramThrows) {
  ProgramRun run = start("throw");
  const int status = expect_clean(run);  // std::terminate: abort()
  EXPECT_TRUE(killed_by(status, SIGABRT)) << describe_exit(status);
}

// Returning or throwing with calls in flight and waiting in the flow graph.
TEST(LifetimeTest, ProgramReturnsWithCallsInFlight) {
  ProgramRun run = start("returnbusy");
  const int status = expect_clean(run);
  EXPECT_TRUE(exited_cleanly(status))
      << describe_exit(status) << " (exit code 8: the slow call was done before the return)";
}

TEST(LifetimeTest, ProgramThrowsWithCallsInFlight) {
  ProgramRun run = start("throwbusy");
  const int status = expect_clean(run);
  EXPECT_TRUE(killed_by(status, SIGABRT)) << describe_exit(status);
}

TEST(LifetimeTest, ProgramGetsCtrlC) {
  ProgramRun run = start("wait");
  ctrl_c(run);
  const int status = expect_clean(run);
  EXPECT_TRUE(killed_by(status, SIGINT)) << describe_exit(status);
}

TEST(LifetimeTest, ProgramThatCatchesCtrlCKeepsItsAgents) {
  // The agents' processes get the same SIGINT; they must not end while their program lives.
  ProgramRun run = start("catch");
  ctrl_c(run);
  const int status = expect_clean(run);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << describe_exit(status) << " (exit code 4: an agent did not answer after Ctrl-C)";
}

// SIGTERM to the program's whole process group (`timeout`, `kill -TERM -<pgid>`): a program
// that catches it and carries on keeps its agents.
TEST(LifetimeTest, ProgramThatCatchesAGroupSigtermKeepsItsAgents) {
  ProgramRun run = start("catchterm");
  ASSERT_EQ(::kill(-run.pid, SIGTERM), 0);
  const int status = expect_clean(run);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << describe_exit(status) << " (exit code 4: an agent did not answer after SIGTERM)";
}

TEST(LifetimeTest, ProgramThatIgnoresSigchldHearsOfItsServersExits) {
  ProgramRun run = start("nochld");
  const int status = expect_clean(run);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << describe_exit(status)
      << " (exit code 5: no AgentDied; 6: it did not name the signal; 7: a server's exit went "
         "unreported)";
}

TEST(LifetimeTest, ProgramGetsSigterm) {
  ProgramRun run = start("wait");
  run.program.kill(SIGTERM);
  const int status = expect_clean(run);
  EXPECT_TRUE(killed_by(status, SIGTERM)) << describe_exit(status);
}

TEST(LifetimeTest, ProgramIsKilled) {
  ProgramRun run = start("wait");
  run.program.kill(SIGKILL);
  const int status = expect_clean(run);
  EXPECT_TRUE(killed_by(status, SIGKILL)) << describe_exit(status);
}

// The same endings while the program is busy: calls in flight on every channel, some waiting
// in the flow graph, its servers mid-reply.
TEST(LifetimeTest, ProgramIsKilledWhileBusy) {
  ProgramRun run = start("busy");
  std::this_thread::sleep_for(100ms);
  run.program.kill(SIGKILL);
  const int status = expect_clean(run);  // and it had not crashed before the kill:
  EXPECT_TRUE(killed_by(status, SIGKILL)) << describe_exit(status);
}

TEST(LifetimeTest, ProgramGetsCtrlCWhileBusy) {
  ProgramRun run = start("busy");
  std::this_thread::sleep_for(100ms);
  ctrl_c(run);
  const int status = expect_clean(run);
  EXPECT_TRUE(killed_by(status, SIGINT)) << describe_exit(status);
}

TEST(LifetimeTest, ProgramGetsSigtermWhileBusy) {
  ProgramRun run = start("busy");
  std::this_thread::sleep_for(100ms);
  run.program.kill(SIGTERM);
  const int status = expect_clean(run);
  EXPECT_TRUE(killed_by(status, SIGTERM)) << describe_exit(status);
}

// A run whose every process is killed at once leaves its segments behind (nobody is left to
// remove them); the next Troupe program on the host removes them as it starts. (Any Troupe
// program starting in parallel under ctest -j may remove them first: the test checks that they
// go, not who removes them.)
TEST(LifetimeTest, TheNextRunRemovesTheSegmentsOfARunKilledWhole) {
  ProgramRun dead = start("busy");
  std::set<pid_t> pids = dead.started;
  pids.insert(dead.pid);
  // Its segments, by name (a pid may be reused by a parallel test's process meanwhile).
  std::set<std::string> made;
  const auto still_there = [&] {
    std::size_t n = 0;
    for (const auto& s : shm::list_segments()) n += made.count(s.name);
    return n;
  };
  {
    // Stopped first, so that none of them sees another die and cleans up; killed whatever
    // happens, so that a failing check leaves no stopped process behind.
    struct KillAll {
      const std::set<pid_t>& pids;
      ~KillAll() {
        for (pid_t p : pids) ::kill(p, SIGKILL);
      }
    } kill_all{pids};
    for (pid_t p : pids) EXPECT_EQ(::kill(p, SIGSTOP), 0);
    // Stopped, they live: nobody may remove their segments yet.
    for (const auto& s : shm::list_segments()) {
      if (pids.count(s.creator_pid)) made.insert(s.name);
    }
    EXPECT_FALSE(made.empty()) << "the run made no segment: the test is void";
  }
  (void)dead.program.wait();
  for (pid_t p : dead.started) {
    // Dead as the clean-up judges it (a zombie still ending other threads is not yet).
    for (int i = 0; i < 500 && shm::process_start_ticks(p) != 0; ++i) {
      std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(shm::process_start_ticks(p), 0u) << p;
  }

  ProgramRun next = start("return");
  expect_clean(next);
  EXPECT_EQ(still_there(), 0u);
}

}  // namespace
}  // namespace troupe
