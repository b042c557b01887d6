// A server killed with calls pending: every pending and later call fails with AgentDied naming
// the signal, promptly; other agents keep working.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/foreign_server.hpp"
#include "support/test_agents.hpp"
#include "troupe/core/child_process.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;

// `m` fails with AgentDied naming `agent` and how its server ended (`told`).
void expect_died(const Msg& m, const std::string& agent, const std::string& told) {
  try {
    (void)m.content();
    ADD_FAILURE() << "a call on a dead server succeeded";
  } catch (const AgentDied& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("agent '" + agent + "'"), std::string::npos) << what;
    EXPECT_NE(what.find(told), std::string::npos) << what;
  }
}

// Kills `victim`'s server (agent 'V') with `calls` calls pending, the first running, and
// returns how long after the kill they had all failed, naming the signal.
std::chrono::microseconds kill_with_calls_pending(const DistAgent& victim, int calls) {
  std::vector<Msg> pending;
  for (int i = 0; i < calls; ++i) pending.push_back(victim(Msg("u", std::to_string(i))));
  std::this_thread::sleep_for(20ms);  // the first call is running in the server
  const auto killed_at = Clock::now();
  EXPECT_EQ(::kill(victim.server_pid(), SIGKILL), 0);
  for (const Msg& m : pending) expect_died(m, "V", "signal 9");
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - killed_at);
}

TEST(AgentDiedTest, KilledServerFailsPendingAndLaterCallsNamingTheSignal) {
  auto victim = test::Sleeper("V", {{"sleep_ms", 2000}}).to_dist({.lazy_launch = false});
  auto bystander = test::Counter("B").to_dist({.lazy_launch = false});
  EXPECT_LT(kill_with_calls_pending(victim, 5), 2s);  // not the sleeper's 2 s per call
  expect_died(victim(Msg("u", "later")), "V", "signal 9");
  EXPECT_EQ(bystander(Msg("u", "x")).content(), "B:1:x");
}

// The issue's bound: pending calls fail within 100 ms of the kill. Asserted on the best of
// three kills: a loaded machine (the suite runs in parallel, under sanitizers too) may delay
// any one wake-up, while a death noticed by polling (a peer check every slice of a wait) or
// by a timeout would miss it every time. Typically ~1 ms (BM_DeathNoticed).
TEST(AgentDiedTest, PendingCallsFailWithin100MsOfTheKill) {
  auto best = std::chrono::microseconds::max();
  for (int round = 0; round < 3; ++round) {
    auto victim = test::Sleeper("V", {{"sleep_ms", 10000}}).to_dist({.lazy_launch = false});
    const auto noticed = kill_with_calls_pending(victim, 3);
    std::printf("round %d: pending calls failed %.2f ms after SIGKILL\n", round,
                noticed.count() / 1e3);
    best = std::min(best, noticed);
  }
  EXPECT_LT(best, 100ms);
}

// A server that ends by itself, while calls wait behind the one that ended it: they all fail
// with AgentDied naming how it ended (its exit status, or the signal), and an agent on
// another server keeps working.
TEST(AgentDiedTest, AServerThatExitsOrAbortsIsNamedByItsEnd) {
  auto bystander = test::Counter("B").to_dist({.lazy_launch = false});
  const std::pair<std::string, std::string> ends[] = {{"exit:3", "exited with status 3"},
                                                      {"abort", "signal 6"}};
  int bystander_calls = 0;
  for (const auto& [order, told] : ends) {
    auto quitter = test::Quitter("Q").to_dist({.lazy_launch = false});
    EXPECT_EQ(quitter(Msg("u", "hi")).content(), "ok:hi");
    std::vector<Msg> calls{quitter(Msg("u", order))};
    for (int i = 0; i < 5; ++i) calls.push_back(quitter(Msg("u", std::to_string(i))));
    for (const Msg& m : calls) expect_died(m, "Q", told);
    expect_died(quitter(Msg("u", "later")), "Q", told);
    EXPECT_EQ(bystander(Msg("u", order)).content(),
              "B:" + std::to_string(++bystander_calls) + ":" + order);
  }
}

TEST(AgentDiedTest, DependantsOfADeadAgentsCallsFailToo) {
  auto victim = test::Sleeper("V", {{"sleep_ms", 2000}}).to_dist({.lazy_launch = false});
  auto next = test::Counter("N").to_dist();
  Msg x = victim(Msg("u", "a"));
  Msg y = next(x);
  ASSERT_EQ(::kill(victim.server_pid(), SIGKILL), 0);
  expect_died(y, "V", "signal 9");
  EXPECT_EQ(next(Msg("u", "b")).content(), "N:1:b");
}

// Calls not sent yet fail too: one waiting (in the dispatcher) for an input that comes only
// much later, one with a ready input queued behind it, and one made after the death.
TEST(AgentDiedTest, CallsWaitingForInputsFailWhenTheirServerDies) {
  auto slow = test::Sleeper("S", {{"sleep_ms", 10000}}).to_dist({.lazy_launch = false});
  auto victim = test::Counter("V").to_dist({.lazy_launch = false});
  Msg input = slow(Msg("u", "a"));
  Msg waiting = victim(input);
  Msg queued = victim(Msg("u", "b"));
  ASSERT_FALSE(queued.ready());

  const auto killed_at = Clock::now();
  ASSERT_EQ(::kill(victim.server_pid(), SIGKILL), 0);
  for (const Msg* m : {&waiting, &queued}) expect_died(*m, "V", "signal 9");
  EXPECT_LT(Clock::now() - killed_at, 2s);  // not the sleeper's 10 s
  expect_died(victim(input), "V", "signal 9");
  expect_died(victim(Msg("u", "c")), "V", "signal 9");
  EXPECT_FALSE(input.ready());  // the other agent is untouched
  slow.shutdown();
}

// A call whose send waits for ring space when the server dies learns of it from the channel
// first; it still names the signal (the exit status follows within moments).
TEST(AgentDiedTest, ACallWaitingForRingSpaceNamesTheSignalToo) {
  auto victim = test::Sleeper("V", {{"sleep_ms", 30000}}).to_dist({.lazy_launch = false});
  const pid_t pid = victim.server_pid();
  Clock::time_point killed_at;
  std::thread killer([pid, &killed_at] {
    std::this_thread::sleep_for(500ms);
    killed_at = Clock::now();
    ::kill(pid, SIGKILL);
  });
  // 96 MiB of calls: the server queues 64 MiB (its per-client budget), then its ring fills
  // and this thread waits in send().
  const Msg big("u", std::string(1 << 20, 'x'));
  std::vector<Msg> calls;
  for (int i = 0; i < 96; ++i) calls.push_back(victim(big));
  const auto sent_at = Clock::now();
  killer.join();
  EXPECT_LT(killed_at, sent_at) << "the calls were all sent before the kill: no send waited";
  for (const Msg& m : calls) {
    const std::string error = m.error_message();
    EXPECT_NE(error.find("signal 9"), std::string::npos) << error;
  }
}

TEST(AgentDiedTest, AttachedClientsNoticeALauncherServerDying) {
  RpcAgentServerLauncher launcher;
  launcher.launch();
  auto a = test::Sleeper("A", {{"sleep_ms", 2000}})
               .to_dist({.port = launcher.port(), .launch_server = false});
  Msg x = a(Msg("u", "a"));
  std::this_thread::sleep_for(20ms);
  ASSERT_EQ(::kill(launcher.pid(), SIGKILL), 0);
  expect_died(x, "A", "signal 9");  // this program's fork server started it: it relays how
}

// A server another program started is noticed dead through its channel, while a call on
// another server still runs (not when it ends and leaves one link to watch), within the
// issue's 100 ms: asserted on the best of three kills, as PendingCallsFailWithin100MsOfTheKill.
TEST(AgentDiedTest, AServerOfAnotherProgramIsNoticedDeadWhileOtherCallsRun) {
  auto best = std::chrono::microseconds::max();
  std::vector<Msg> others;
  others.reserve(3);  // `busy` below refers into it
  for (int round = 0; round < 3; ++round) {
    test::ForeignServer foreign(TROUPE_FOREIGN_SERVER_PROGRAM);
    auto remote = test::Sleeper("R", {{"sleep_ms", 10000}})
                      .to_dist({.port = foreign.port, .launch_server = false});
    // A call on a second server, running through the kill: two links to watch. Started once
    // the foreign program is up, however slowly it started (its handle may go: the call
    // completes all the same).
    auto local = test::Sleeper("L", {{"sleep_ms", 2000}}).to_dist({.lazy_launch = false});
    const Msg& busy = others.emplace_back(local(Msg("u", "x")));
    Msg doomed = remote(Msg("u", "y"));
    std::this_thread::sleep_for(200ms);  // both calls are running
    const auto killed_at = Clock::now();
    ASSERT_EQ(::kill(foreign.server_pid, SIGKILL), 0);
    EXPECT_THROW((void)doomed.content(), AgentDied);
    const auto noticed =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - killed_at);
    std::printf("round %d: noticed %.2f ms after SIGKILL\n", round, noticed.count() / 1e3);
    best = std::min(best, noticed);
    EXPECT_FALSE(busy.ready()) << "the other call ended first: it watched one link only";
  }
  EXPECT_LT(best, 100ms);
  for (const Msg& m : others) EXPECT_EQ(m.content(), "L(x)");
}

}  // namespace
}  // namespace troupe
