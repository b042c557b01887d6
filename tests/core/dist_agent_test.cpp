// Distributed agents in local mode: placeholders, ordering, parallelism, errors, handles,
// server management. The behaviours AgentScope's own suite checks, ported.
#include <gtest/gtest.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/info.h>
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "support/foreign_server.hpp"
#include "support/test_agents.hpp"
#include "troupe/core/detail/result_state.hpp"
#include "troupe/core/detail/runtime.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;
using test::Counter;
using test::Faulty;
using test::Sleeper;

using test::end_of;
using test::start_of;

TEST(DistAgentTest, StatePersistsAcrossCalls) {
  auto a = Counter("A").to_dist();
  EXPECT_EQ(a(Msg("u", "x")).content(), "A:1:x");
  EXPECT_EQ(a(Msg("u", "y")).content(), "A:2:y");
  EXPECT_EQ(a().content(), "A:3:-");
  EXPECT_EQ(a.name(), "A");
  EXPECT_EQ(a.class_name(), "Counter");
  EXPECT_NE(a.server_pid(), ::getpid());
}

TEST(DistAgentTest, CallReturnsAPlaceholderAtOnce) {
  // Time bounds here are a fraction of the agents' sleeps, loose enough for sanitizer builds.
  auto slow = Sleeper("S", {{"sleep_ms", 1000}}).to_dist({.lazy_launch = false});
  const auto start = Clock::now();
  Msg x = slow(Msg("u", "go"));
  EXPECT_LT(Clock::now() - start, 700ms);
  EXPECT_TRUE(x.is_placeholder());
  EXPECT_FALSE(x.ready());
  EXPECT_FALSE(x.wait_for(10ms));
  EXPECT_EQ(x.content(), "S(go)");  // blocks until resolved
  EXPECT_TRUE(x.ready());
  EXPECT_FALSE(x.error());
}

TEST(DistAgentTest, PendingResultTravelsToTheNextCallWithoutBlocking) {
  auto a = Sleeper("A", {{"sleep_ms", 2000}}).to_dist({.lazy_launch = false});
  auto b = Counter("B").to_dist({.lazy_launch = false});
  auto c = Counter("C").to_dist({.lazy_launch = false});
  const auto start = Clock::now();
  Msg x = a(Msg("u", "in"));
  Msg y = b(x);  // x is pending: b's call waits for it, the program does not
  Msg z = c(y);
  EXPECT_LT(Clock::now() - start, 1500ms);  // a wide margin: sanitizer builds on a busy host
  EXPECT_FALSE(x.ready());
  EXPECT_FALSE(z.ready());
  EXPECT_EQ(z.content(), "C:1:B:1:A(in)");
}

TEST(DistAgentTest, ResolvedResultTravelsAsAMessage) {
  auto a = Counter("A").to_dist();
  auto b = Counter("B").to_dist();
  Msg x = a(Msg("u", "in"));
  ASSERT_EQ(x.content(), "A:1:in");
  EXPECT_EQ(b(x).content(), "B:1:A:1:in");
}

TEST(DistAgentTest, IndependentSlowCallsOverlap) {
  std::vector<DistAgent> agents;
  for (int i = 0; i < 3; ++i) {
    agents.push_back(
        Sleeper("S" + std::to_string(i), {{"sleep_ms", 500}}).to_dist({.lazy_launch = false}));
  }
  const auto start = Clock::now();
  std::vector<Msg> results;
  for (auto& a : agents) results.push_back(a(Msg("u", "x")));
  ASSERT_TRUE(wait_all(results, 10s));
  EXPECT_LT(Clock::now() - start, 1300ms);  // three 500 ms sleeps, not in sequence
}

// Calls that waited for an input in the flow graph are sent from TBB's threads, which do not
// wait for the replies: calls to slow agents, more than the dispatcher has threads (TBB's
// workers, the program's slot and four rescuers' slots), all run at once. Timestamps from
// inside the agents: every call starts before any ends.
TEST(DistAgentTest, DeferredCallsToSlowAgentsOverlapBeyondTheDispatchersThreads) {
  const int kAgents = tbb::info::default_concurrency() + 4 + 2;
  auto first = Sleeper("first", {{"sleep_ms", 300}}).to_dist({.lazy_launch = false});
  std::vector<DistAgent> agents;
  for (int i = 0; i < kAgents; ++i) {
    agents.push_back(
        Sleeper("S" + std::to_string(i), {{"sleep_ms", 600}}).to_dist({.lazy_launch = false}));
  }
  const Msg input = first(Msg("u", "x"));
  std::vector<Msg> results;
  for (auto& a : agents) results.push_back(a(input));  // each waits in the graph for `input`
  ASSERT_FALSE(input.ready());
  ASSERT_TRUE(wait_all(results, 20s));
  std::int64_t last_start = 0;
  std::int64_t first_end = std::numeric_limits<std::int64_t>::max();
  for (const Msg& r : results) {
    last_start = std::max(last_start, start_of(r));
    first_end = std::min(first_end, end_of(r));
  }
  EXPECT_LT(last_start, first_end)
      << "a call started only after another had ended: " << (last_start - first_end) / 1'000'000
      << " ms later";
}

// The seed's graph: A->B, A->C, B->D, C->D, E->F, D->F. Timestamps from inside the agents.
TEST(DistAgentTest, SeedGraphRunsInParallelWhereItCan) {
  const auto [x, y, z, w, e, f, agents] = test::run_seed_graph({{"sleep_ms", 150}});
  EXPECT_EQ(f.content(), "F(D(B(A()))(C(A())))(E())");
  // B and C overlap; E starts before A ends; D after B and C; F after D and E.
  EXPECT_LT(start_of(y), end_of(z));
  EXPECT_LT(start_of(z), end_of(y));
  EXPECT_LT(start_of(e), end_of(x));
  EXPECT_GE(start_of(y), end_of(x));
  EXPECT_GE(start_of(w), std::max(end_of(y), end_of(z)));
  EXPECT_GE(start_of(f), std::max(end_of(w), end_of(e)));
}

TEST(DistAgentTest, SeveralAgentsShareOneServerWithSeparateState) {
  auto a = Counter("A").to_dist({.lazy_launch = false});
  auto b = Counter("B").to_dist({.port = a.port(), .launch_server = false});
  auto c = Counter("C").to_dist({.port = a.port(), .launch_server = false});
  EXPECT_EQ(b.server_pid(), a.server_pid());
  EXPECT_EQ(a(Msg("u", "1")).content(), "A:1:1");
  EXPECT_EQ(b(Msg("u", "1")).content(), "B:1:1");
  EXPECT_EQ(b(Msg("u", "2")).content(), "B:2:2");
  EXPECT_EQ(c(Msg("u", "1")).content(), "C:1:1");
  auto names = a.server().list_agents();
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"A", "B", "C"}));
}

TEST(DistAgentTest, DifferentAgentsOnOneServerRunInParallel) {
  auto a = Sleeper("A", {{"sleep_ms", 300}}).to_dist({.lazy_launch = false, .workers = 2});
  auto b = Sleeper("B", {{"sleep_ms", 300}}).to_dist({.port = a.port(), .launch_server = false});
  Msg x = a(Msg("u", "a"));
  Msg y = b(Msg("u", "b"));
  EXPECT_LT(start_of(y), end_of(x));
  EXPECT_LT(start_of(x), end_of(y));
}

// The same for agents that compute, with a steady stream of short calls: on a host of two
// cores or fewer a server's second worker joins lazily (only when the first is held, or its
// calls are long), and agents that computed 20 us a call once ran on one worker only.
TEST(DistAgentTest, AgentsThatComputeOnOneServerRunInParallel) {
  auto a = Sleeper("A", {{"busy_us", 20}}).to_dist({.lazy_launch = false, .workers = 2});
  auto b = Sleeper("B", {{"busy_us", 20}}).to_dist({.port = a.port(), .launch_server = false});
  // In rounds, each waited for: a worker that runs out of work between rounds used to stay
  // out for good while the other made progress.
  std::vector<Msg> from_a, from_b;
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < 100; ++i) {
      from_a.push_back(a(Msg("u", "a")));
      from_b.push_back(b(Msg("u", "b")));
    }
    ASSERT_TRUE(wait_all(from_a) && wait_all(from_b));
  }
  // B's runs that overlap one of A's (each agent's runs are in order, one at a time).
  std::size_t overlapping = 0;
  std::size_t next_a = 0;
  for (const Msg& y : from_b) {
    while (next_a < from_a.size() && end_of(from_a[next_a]) <= start_of(y)) ++next_a;
    if (next_a < from_a.size() && start_of(from_a[next_a]) < end_of(y)) ++overlapping;
  }
  EXPECT_GE(overlapping, from_b.size() / 20) << overlapping << " of B's runs overlap A's";
}

TEST(DistAgentTest, OneAgentRunsOneCallAtATimeInOrder) {
  auto a = Sleeper("A", {{"sleep_ms", 30}}).to_dist({.lazy_launch = false, .workers = 4});
  std::vector<Msg> results;
  for (int i = 0; i < 5; ++i) results.push_back(a(Msg("u", std::to_string(i))));
  for (int i = 1; i < 5; ++i) {
    EXPECT_GE(start_of(results[i]), end_of(results[i - 1]));
    EXPECT_EQ(results[i].content(), "A(" + std::to_string(i) + ")");
  }
}

TEST(DistAgentTest, LauncherWithAnAgentClassAndClientsAttachingToIt) {
  RpcAgentServerLauncher launcher("Counter", {{"name", "Shared"}});
  launcher.launch();
  ASSERT_GT(launcher.port(), 0);
  auto one = Counter("Shared").to_dist({.port = launcher.port(), .launch_server = false});
  auto two = Counter("Shared").to_dist({.port = launcher.port(), .launch_server = false});
  EXPECT_EQ(one(Msg("u", "a")).content(), "Shared:1:a");
  EXPECT_EQ(two(Msg("u", "b")).content(), "Shared:2:b");  // the same agent
  EXPECT_EQ(one.server_pid(), launcher.pid());
}

// A launcher owns its server: it moves (a vector may reallocate) without ending it, and
// cannot be copied (a copy's destructor would end the server under the original).
static_assert(!std::is_copy_constructible_v<RpcAgentServerLauncher>);
static_assert(std::is_nothrow_move_constructible_v<RpcAgentServerLauncher>);
TEST(DistAgentTest, LaunchersMoveWithoutEndingTheirServers) {
  std::vector<RpcAgentServerLauncher> launchers;
  launchers.emplace_back("Counter", Kwargs{{"name", "First"}});
  launchers.back().launch();
  const int port = launchers.back().port();
  const pid_t pid = launchers.back().pid();
  auto first = Counter("First").to_dist({.port = port, .launch_server = false});
  EXPECT_EQ(first(Msg("u", "a")).content(), "First:1:a");
  for (int i = 0; i < 4; ++i) launchers.emplace_back();  // reallocates, moving the first
  EXPECT_EQ(launchers.front().pid(), pid);
  EXPECT_EQ(first(Msg("u", "b")).content(), "First:2:b");

  RpcAgentServerLauncher taken = std::move(launchers.front());
  EXPECT_EQ(launchers.front().pid(), 0);  // moved from: empty, owns nothing
  launchers.clear();                      // ends nothing
  EXPECT_EQ(first(Msg("u", "c")).content(), "First:3:c");
  taken.shutdown();
  EXPECT_THROW((void)first(Msg("u", "d")).content(), AgentDied);
}

// Different agents of one server run in parallel on its workers, however many it has: with
// four workers, three agents called at once all start at once (a hand-over's wake-up must not
// be lost while another is pending: they would wait for a napping worker's 100 ms).
TEST(DistAgentTest, AgentsOfOneServerWithManyWorkersStartTogether) {
  for (int round = 0; round < 3; ++round) {
    auto first = Sleeper("S0", {{"sleep_ms", 300}}).to_dist({.lazy_launch = false, .workers = 4});
    std::vector<DistAgent> agents{first};
    for (int i = 1; i < 3; ++i) {
      agents.push_back(Sleeper("S" + std::to_string(i), {{"sleep_ms", 300}})
                           .to_dist({.port = first.port(), .launch_server = false}));
    }
    std::vector<Msg> warm;
    for (auto& a : agents) warm.push_back(a(Msg("u", "warm")));
    ASSERT_TRUE(wait_all(warm, 30s));
    std::this_thread::sleep_for(200ms);  // the followers are asleep
    std::vector<Msg> calls;
    for (auto& a : agents) calls.push_back(a(Msg("u", "go")));
    std::vector<std::int64_t> starts;
    for (const Msg& m : calls) starts.push_back(start_of(m));
    const auto [earliest, latest] = std::minmax_element(starts.begin(), starts.end());
    EXPECT_LT(*latest - *earliest, 80'000'000) << "round " << round;  // ns
  }
}

// A server handle outliving every agent of its server: the link retires (and the server
// ends), and a request through the handle then fails at once, not after its timeout.
TEST(DistAgentTest, AServerHandleOfARetiredServerFailsAtOnce) {
  ServerHandle handle = Counter("S").to_dist({.lazy_launch = false}).server();
  // The runtime retires idle links every few ms; until it has, the server still answers.
  const auto until = Clock::now() + 20s;
  for (;;) {
    std::this_thread::sleep_for(50ms);
    const auto asked = Clock::now();
    try {
      (void)handle.info();
    } catch (const AgentDied&) {
      EXPECT_LT(Clock::now() - asked, 5s);  // not the management timeout's 10 s
      break;
    }
    ASSERT_LT(Clock::now(), until) << "the link of a server without agents never retired";
  }
}

TEST(DistAgentTest, TwoHandlesAttachedToOneServerAgentKeepProgramOrder) {
  RpcAgentServerLauncher launcher("Counter", {{"name", "Shared"}});
  launcher.launch();
  auto one = Counter("Shared").to_dist({.port = launcher.port(), .launch_server = false});
  auto two = Counter("Shared").to_dist({.port = launcher.port(), .launch_server = false});
  auto slow = Sleeper("S", {{"sleep_ms", 100}}).to_dist({.lazy_launch = false});
  Msg first = one(slow(Msg("u", "x")));  // deferred: its input is pending
  Msg second = two(Msg("u", "y"));       // ready, but after `first` in the program
  EXPECT_EQ(first.content(), "Shared:1:S(x)");
  EXPECT_EQ(second.content(), "Shared:2:y");
}

TEST(DistAgentTest, ALaunchingHandleAndOneAttachedByNameKeepProgramOrder) {
  auto launched = Counter("Shared").to_dist({.lazy_launch = false});
  auto attached = Counter("Shared").to_dist({.port = launched.port(), .launch_server = false});
  auto slow = Sleeper("S", {{"sleep_ms", 100}}).to_dist({.lazy_launch = false});
  // Each way round: the call that waits for its input comes first in the program.
  Msg first = launched(slow(Msg("u", "x")));
  Msg second = attached(Msg("u", "y"));
  Msg third = attached(slow(Msg("u", "z")));
  Msg fourth = launched(Msg("u", "w"));
  EXPECT_EQ(first.content(), "Shared:1:S(x)");
  EXPECT_EQ(second.content(), "Shared:2:y");
  EXPECT_EQ(third.content(), "Shared:3:S(z)");
  EXPECT_EQ(fourth.content(), "Shared:4:w");
}

TEST(DistAgentTest, LauncherWithoutAClassHostsWhatClientsAskFor) {
  RpcAgentServerLauncher launcher;
  launcher.launch();
  auto a = Counter("A").to_dist({.port = launcher.port(), .launch_server = false});
  auto f = Faulty("F").to_dist({.port = launcher.port(), .launch_server = false});
  EXPECT_EQ(a(Msg("u", "x")).content(), "A:1:x");
  EXPECT_EQ(f(Msg("u", "x")).content(), "ok:x");
  EXPECT_EQ(launcher.server().info().agents.size(), 2u);
}

// True once `pid` is no process (a reaped child); waits up to 10 s.
bool ends(pid_t pid) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (::kill(pid, 0) == 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return ::kill(pid, 0) != 0 && errno == ESRCH;
}

TEST(DistAgentTest, TheLastHandleGoingLetsPendingCallsFinishThenTheServerEnds) {
  Msg pending;
  pid_t server = 0;
  {
    auto a = Sleeper("S", {{"sleep_ms", 100}}).to_dist({.lazy_launch = false});
    server = a.server_pid();
    pending = a(Msg("u", "x"));
  }                                      // the last handle goes while its call is pending
  EXPECT_EQ(pending.content(), "S(x)");  // the call completes first
  EXPECT_TRUE(ends(server)) << "the agent's server outlived its last handle";
}

// The same with a call that waits in the flow graph for its input: the call holds the agent
// until it ran (then, on a TBB thread, the last reference goes, with the agent's lane).
TEST(DistAgentTest, TheLastHandleGoingWhileACallWaitsForItsInputLetsItRun) {
  auto slow = Sleeper("Slow", {{"sleep_ms", 100}}).to_dist({.lazy_launch = false});
  Msg pending;
  pid_t server = 0;
  {
    auto a = Counter("A").to_dist({.lazy_launch = false});
    server = a.server_pid();
    pending = a(slow(Msg("u", "x")));
    EXPECT_FALSE(pending.ready());
  }  // the last handle goes while its call waits for its input
  EXPECT_EQ(pending.content(), "A:1:Slow(x)");
  EXPECT_TRUE(ends(server)) << "the agent's server outlived its last handle";
}

// A call with more pending inputs than the lane lists inline (four) waits for them all.
TEST(DistAgentTest, ACallWaitsForManyPendingInputs) {
  auto slow = Sleeper("Slow", {{"sleep_ms", 20}}).to_dist({.lazy_launch = false});
  auto gather = Counter("G").to_dist({.lazy_launch = false});
  std::vector<Msg> inputs;
  std::string expected = "G:1";
  for (int i = 0; i < 7; ++i) {
    const std::string word = "x" + std::to_string(i);
    inputs.push_back(slow(Msg("u", word)));
    expected += ":Slow(" + word + ")";
  }
  const Msg gathered = gather(inputs);
  EXPECT_FALSE(gathered.ready());
  EXPECT_EQ(gathered.content(), expected);
}

// Handles going while others remain: a copy's going leaves the agent (and its state); the
// last handle of one agent going releases that agent alone, after its pending call, and the
// server keeps serving the agent that still has a handle, until that one goes too.
TEST(DistAgentTest, DroppingSomeHandlesLeavesTheOthersOnTheirServerWorking) {
  std::optional<DistAgent> b;
  pid_t server = 0;
  Msg pending;
  {
    auto a = Counter("A").to_dist({.lazy_launch = false});
    server = a.server_pid();
    {
      DistAgent copy = a;
      EXPECT_EQ(copy(Msg("u", "x")).content(), "A:1:x");
    }
    EXPECT_EQ(a(Msg("u", "y")).content(), "A:2:y");
    b.emplace(Counter("B").to_dist({.port = a.port(), .launch_server = false}));
    EXPECT_EQ((*b)(Msg("u", "b")).content(), "B:1:b");
    pending = a(Msg("u", "z"));
  }  // A's last handle goes with a call pending
  EXPECT_EQ(pending.content(), "A:3:z");
  EXPECT_EQ((*b)(Msg("u", "c")).content(), "B:2:c");
  const auto until = Clock::now() + 10s;
  std::vector<std::string> hosted;
  do {
    hosted.clear();
    for (const auto& agent : b->server().info().agents) hosted.push_back(agent.name);
  } while (hosted.size() != 1 && Clock::now() < until);
  EXPECT_EQ(hosted, std::vector<std::string>{"B"});  // A was released, B kept
  EXPECT_EQ(::kill(server, 0), 0) << "the server ended while an agent on it had a handle";
  EXPECT_EQ((*b)(Msg("u", "d")).content(), "B:3:d");
  b.reset();
  EXPECT_TRUE(ends(server)) << "the server outlived the last handle of its last agent";
}

TEST(DistAgentTest, LauncherShutdownEndsItsServerForAttachedClients) {
  RpcAgentServerLauncher launcher("Counter", {{"name", "C"}});
  launcher.launch();
  const pid_t server = launcher.pid();
  auto c = Counter("C").to_dist({.port = launcher.port(), .launch_server = false});
  EXPECT_EQ(c(Msg("u", "x")).content(), "C:1:x");
  launcher.shutdown();
  EXPECT_EQ(launcher.pid(), 0);
  EXPECT_TRUE(ends(server));
  try {
    (void)c(Msg("u", "y")).content();
    FAIL();
  } catch (const AgentDied& e) {
    EXPECT_NE(std::string(e.what()).find("shut down by its launcher"), std::string::npos)
        << e.what();
  }
}

TEST(DistAgentTest, WaitUntilTerminateReturnsWhenTheServerEnds) {
  RpcAgentServerLauncher launcher;
  launcher.launch();
  std::thread stopper([pid = launcher.pid()] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ::kill(pid, SIGTERM);
  });
  launcher.wait_until_terminate();  // returns once the server has ended
  stopper.join();
  EXPECT_TRUE(ends(launcher.pid()));
}

TEST(DistAgentTest, ProgramsAnAgentStartsAnswerCtrlCAsUsual) {
  // Agent servers survive the terminal's signals, but a program an agent starts must not
  // inherit that: a shell that interrupts itself dies of it (an ignored SIGINT would survive).
  auto shell = test::Shell("SH").to_dist();
  EXPECT_EQ(shell(Msg("u", "echo before; kill -INT $$; echo survived")).content(), "before\n");
}

TEST(DistAgentTest, LauncherOnAPortInUseIsAClearError) {
  RpcAgentServerLauncher first;
  first.launch();
  RpcAgentServerLauncher second("", {}, "localhost", first.port());
  try {
    second.launch();
    FAIL() << "two servers on one port";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("in use"), std::string::npos) << e.what();
  }
}

TEST(DistAgentTest, LocalAndRemoteAgentsMix) {
  Counter local("L");
  auto remote = Counter("R").to_dist();
  Msg x = remote(Msg("u", "a"));
  Msg y = local(x);  // a pending input: deferred, the program goes on
  Msg z = remote(y);
  EXPECT_EQ(z.content(), "R:2:L:1:R:1:a");
  EXPECT_EQ(local(Msg("u", "b")).content(), "L:2:b");
}

TEST(DistAgentTest, AnInProcessAgentsDeferredReplyMayCallARemoteAgent) {
  auto slow = Sleeper("S", {{"sleep_ms", 50}}).to_dist({.lazy_launch = false});
  auto remote = Counter("R").to_dist({.lazy_launch = false});
  test::Asker asker("A", remote);
  Msg x = asker(slow(Msg("u", "x")));  // deferred: its reply() runs on a TBB thread
  Msg y = asker(slow(Msg("u", "y")));
  EXPECT_EQ(x.content(), "R:1:S(x)");
  EXPECT_EQ(y.content(), "R:2:S(y)");
}

TEST(DistAgentTest, AReplyWaitingLongHoldsNothingItsRescuerRunsInto) {
  // A's and B's deferred replies both call the in-process agent C, whose reply() waits 100 ms
  // for a remote answer. A's call to C runs at once on A's thread, holding C's lane; the
  // rescuer that C's long wait starts takes B's call (to the reply pool, where it waits for
  // C's lane). C's wait must not depend on that rescuer (it did once: C waited for its
  // rescuer to come back).
  tbb::global_control one_worker(tbb::global_control::max_allowed_parallelism, 2);
  auto slow = Sleeper("S", {{"sleep_ms", 100}}).to_dist({.lazy_launch = false});
  test::Asker c("C", slow);
  test::Asker a("A", c);
  test::Asker b("B", c);
  auto gate_a = std::make_shared<detail::ResultState>();
  auto gate_b = std::make_shared<detail::ResultState>();
  Msg from_a = a(Msg::placeholder(gate_a));
  Msg from_b = b(Msg::placeholder(gate_b));
  gate_a->resolve(Msg("u", "x"));
  gate_b->resolve(Msg("u", "y"));
  EXPECT_TRUE(wait_all({from_a, from_b}, std::chrono::seconds(10)));
  EXPECT_EQ(from_a.content(), "S(x)");
  EXPECT_EQ(from_b.content(), "S(y)");
}

TEST(DistAgentTest, ADeferredReplyWaitingOnATimedCallSeesItsTimeout) {
  // The reply waits on a TBB thread, with a rescuer after 300 us: the call's own deadline
  // still ends the wait (the waiting thread keeps checking it; the rescuer does not).
  auto slow = Sleeper("S", {{"sleep_ms", 2000}})
                  .to_dist({.lazy_launch = false, .timeout = std::chrono::milliseconds(100)});
  test::Asker asker("A", slow);
  auto gate = std::make_shared<detail::ResultState>();
  Msg result = asker(Msg::placeholder(gate));  // deferred
  const auto start = Clock::now();
  gate->resolve(Msg("u", "x"));
  EXPECT_TRUE(result.wait_for(std::chrono::seconds(10)));
  EXPECT_LT(Clock::now() - start, 1500ms);  // the 100 ms timeout, not the 2 s reply
  EXPECT_NE(result.error_message().find("timed out"), std::string::npos) << result.error_message();
}

TEST(DistAgentTest, LocalAgentWithPendingInputDoesNotBlockTheProgram) {
  Counter local("L");
  auto slow = Sleeper("S", {{"sleep_ms", 1000}}).to_dist({.lazy_launch = false});
  const auto start = Clock::now();
  Msg x = slow(Msg("u", "a"));
  Msg y = local(x);
  Msg z = local(Msg("u", "later"));  // queued behind y: order kept
  EXPECT_LT(Clock::now() - start, 700ms);
  EXPECT_FALSE(y.ready());
  EXPECT_FALSE(z.ready());
  EXPECT_EQ(y.content(), "L:1:S(a)");
  EXPECT_EQ(z.content(), "L:2:later");
}

TEST(DistAgentTest, RemoteExceptionArrivesAsRemoteError) {
  auto f = Faulty("F").to_dist();
  Msg bad = f(Msg("u", "fail"));
  try {
    (void)bad.content();
    FAIL() << "no error";
  } catch (const RemoteError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("agent 'F'"), std::string::npos) << what;
    EXPECT_NE(what.find("class Faulty"), std::string::npos) << what;
    EXPECT_NE(what.find("asked to fail"), std::string::npos) << what;
  }
  EXPECT_TRUE(bad.error());
  EXPECT_NE(bad.error_message().find("asked to fail"), std::string::npos);
  // The agent keeps serving.
  EXPECT_EQ(f(Msg("u", "fine")).content(), "ok:fine");
}

// A reply() or observe() that throws what is not a std::exception fails its call with a
// RemoteError naming the agent, as in process, and the agent keeps serving.
TEST(DistAgentTest, ANonStandardExceptionArrivesAsRemoteError) {
  auto f = Faulty("F").to_dist();
  Faulty local("F");
  Msg bad = f(Msg("u", "throw 42"));
  EXPECT_THROW((void)bad.content(), RemoteError);
  EXPECT_EQ(bad.error_message(), "agent 'F' (class Faulty) raised a non-standard exception");
  EXPECT_EQ(bad.error_message(), local(Msg("u", "throw 42")).error_message());
  ObserveHandle seen = f.observe(Msg("u", "throw 42"));
  EXPECT_THROW(seen.get(), RemoteError);
  EXPECT_EQ(f(Msg("u", "fine")).content(), "ok:fine");
  EXPECT_EQ(local(Msg("u", "fine")).content(), "ok:fine");
}

TEST(DistAgentTest, DependantsOfAFailedCallFailTheSameWay) {
  auto f = Faulty("F").to_dist();
  auto c = Counter("C").to_dist();
  Msg bad = f(Msg("u", "fail"));
  Msg dependant = c(bad);
  Msg second = c(dependant);
  EXPECT_THROW((void)second.content(), RemoteError);
  EXPECT_EQ(dependant.error_message(), bad.error_message());
  EXPECT_EQ(c(Msg("u", "x")).content(), "C:1:x");  // the failed calls never ran
}

TEST(DistAgentTest, ObserveIsOrderedAndReportsFailure) {
  auto c = Counter("C").to_dist();
  c.observe(Msg("u", "seen"));                     // ignored handle
  EXPECT_EQ(c(Msg("u", "x")).content(), "C:2:x");  // observe counted first
  auto f = Faulty("F").to_dist();
  ObserveHandle bad = f.observe(Msg("u", "fail"));
  ObserveHandle good = f.observe(Msg("u", "fine"));
  EXPECT_THROW(bad.get(), RemoteError);
  EXPECT_NO_THROW(good.get());
  EXPECT_EQ(f(Msg("u", "after")).content(), "ok:after");  // not poisoned
}

// observe() returns at once, even to an agent busy with a long call; the failure of an observe
// whose handle nobody kept is logged, naming the agent and what it raised.
TEST(DistAgentTest, ObserveReturnsAtOnceAndAnIgnoredFailureIsLogged) {
  auto s = Sleeper("S", {{"sleep_ms", 1000}}).to_dist({.lazy_launch = false});
  Msg busy = s(Msg("u", "x"));
  const auto start = Clock::now();
  ObserveHandle seen = s.observe(Msg("u", "seen"));
  EXPECT_LT(Clock::now() - start, 500ms);  // not behind the 1 s call it queues after
  EXPECT_FALSE(busy.ready());
  EXPECT_FALSE(seen.ready());

  auto f = Faulty("F").to_dist({.lazy_launch = false});
  testing::internal::CaptureStderr();
  f.observe(Msg("u", "fail"));                            // the handle is dropped at once
  EXPECT_EQ(f(Msg("u", "after")).content(), "ok:after");  // answered after the observe
  const std::string log = testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("observe on agent 'F' (class Faulty) failed"), std::string::npos) << log;
  EXPECT_NE(log.find("observe asked to fail"), std::string::npos) << log;
  EXPECT_NO_THROW(seen.get());
}

TEST(DistAgentTest, ACallWaitingForItsInputTimesOutForWhoeverPolls) {
  auto slow = Sleeper("S", {{"sleep_ms", 2000}}).to_dist();
  auto c = Counter("C").to_dist();
  Msg input = slow(Msg("u", "x"));
  Msg r = c.call({input}, {.timeout = 50ms});  // deferred: its input is pending
  const auto start = Clock::now();
  while (!r.ready() && Clock::now() - start < 1500ms) std::this_thread::sleep_for(5ms);
  ASSERT_TRUE(r.ready()) << "ready() never saw the deadline pass";
  EXPECT_THROW((void)r.content(), Timeout);
  EXPECT_FALSE(input.ready());  // well before the input resolved
}

TEST(DistAgentTest, WaitsWithoutALimitDoNotOverflow) {
  auto s = Sleeper("S", {{"sleep_ms", 100}}).to_dist();
  Msg slow = s(Msg("u", "x"));
  ObserveHandle seen = s.observe(Msg("u", "y"));  // queued behind the slow call
  EXPECT_TRUE(seen.wait_for(std::chrono::nanoseconds::max()));
  EXPECT_TRUE(slow.wait_for(std::chrono::nanoseconds::max()));
  EXPECT_TRUE(wait_all({s(Msg("u", "z"))}, std::chrono::nanoseconds::max()));
}

TEST(DistAgentTest, CopiesShareTheAgentAndShutdownEndsItForAll) {
  auto a = Counter("A").to_dist();
  DistAgent copy = a;
  EXPECT_EQ(a(Msg("u", "x")).content(), "A:1:x");
  EXPECT_EQ(copy(Msg("u", "y")).content(), "A:2:y");
  Msg pending = a(Msg("u", "z"));
  const pid_t server = a.server_pid();
  copy.shutdown();
  EXPECT_EQ(pending.content(), "A:3:z");  // pending calls complete first
  try {
    (void)a(Msg("u", "late")).content();
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("shut down"), std::string::npos) << e.what();
  }
  EXPECT_THROW(a.observe(Msg("u", "late")).get(), Error);
  // The server let the agent go, and it hosted no other: it ended, while handles remain.
  EXPECT_TRUE(ends(server)) << "the server outlived its shut-down agent";
}

// On a server that hosts others, a shut-down agent leaves it; the others go on.
TEST(DistAgentTest, ShutdownRemovesTheAgentFromItsServer) {
  auto a = Counter("A").to_dist({.lazy_launch = false});
  auto b = Counter("B").to_dist({.port = a.port(), .launch_server = false});
  EXPECT_EQ(b(Msg("u", "x")).content(), "B:1:x");
  ServerHandle server = b.server();
  ASSERT_EQ(server.info().agents.size(), 2u);
  a.shutdown();
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (server.info().agents.size() != 1 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(5ms);
  }
  const ServerInfo info = server.info();
  ASSERT_EQ(info.agents.size(), 1u);
  EXPECT_EQ(info.agents.front().name, "B");
  EXPECT_EQ(b(Msg("u", "y")).content(), "B:2:y");
}

TEST(DistAgentTest, ShutdownLetsACallWaitingForItsInputRunFirst) {
  auto slow = Sleeper("S", {{"sleep_ms", 100}}).to_dist({.lazy_launch = false});
  auto a = Counter("A").to_dist({.lazy_launch = false});
  Msg waiting = a(slow(Msg("u", "x")));  // not sent yet: its input is pending
  a.shutdown();
  EXPECT_FALSE(waiting.ready());
  EXPECT_EQ(waiting.content(), "A:1:S(x)");  // admitted before the shutdown: it runs
  EXPECT_THROW((void)a(Msg("u", "late")).content(), Error);
}

TEST(DistAgentTest, ServerInfoListsAgentsAndDeletesThem) {
  auto a = Counter("A").to_dist({.lazy_launch = false});
  auto b = Counter("B").to_dist({.port = a.port(), .launch_server = false});
  (void)a(Msg("u", "x")).content();
  // Wait until B has answered before asking the server what it hosts.
  (void)b(Msg("u", "ready")).content();
  ServerInfo info = a.server().info();
  EXPECT_EQ(info.pid, a.server_pid());
  EXPECT_EQ(info.port, a.port());
  EXPECT_GT(info.rss_bytes, 0u);
  EXPECT_EQ(info.agents.size(), 2u);
  a.server().delete_agent("B");
  // A refusal is troupe::Refused, not the RemoteError of an exception in reply().
  try {
    (void)b(Msg("u", "x")).content();
    FAIL();
  } catch (const Refused& e) {
    EXPECT_NE(std::string(e.what()).find("deleted"), std::string::npos) << e.what();
  }
  EXPECT_THROW(b.observe(Msg("u", "seen")).get(), Refused);
  EXPECT_EQ(a(Msg("u", "y")).content(), "A:2:y");
  EXPECT_THROW(a.server().delete_agent("nobody"), Refused);
  a.server().delete_all();
  EXPECT_THROW((void)a(Msg("u", "z")).content(), Refused);
  EXPECT_FALSE(a(Msg("u", "z")).error_message().empty());  // and reads as a value
}

// The server's report counts the calls waiting in an agent's mailbox, across processes.
TEST(DistAgentTest, ServerInfoReportsQueueDepths) {
  auto slow = Sleeper("S", {{"sleep_ms", 500}}).to_dist({.lazy_launch = false});
  std::vector<Msg> calls;
  for (int i = 0; i < 4; ++i) calls.push_back(slow(Msg("u", std::to_string(i))));
  // One runs, three wait: seen while the first sleeps (the report is not queued behind them).
  std::size_t depth = 0;
  for (const auto until = Clock::now() + 5s; depth != 3 && Clock::now() < until;) {
    const ServerInfo info = slow.server().info();
    ASSERT_EQ(info.agents.size(), 1u);
    depth = info.agents[0].queue_depth;
    if (depth != 3) std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(depth, 3u);
  wait_all(calls);
  const ServerInfo after = slow.server().info();
  ASSERT_EQ(after.agents.size(), 1u);
  EXPECT_EQ(after.agents[0].queue_depth, 0u);
  EXPECT_EQ(after.agents[0].calls, 4u);
}

TEST(DistAgentTest, PerCallAndPerAgentTimeouts) {
  auto slow = Sleeper("S", {{"sleep_ms", 1500}}).to_dist({.lazy_launch = false});
  Msg late = slow.call({Msg("u", "a")}, {.timeout = 50ms});
  const auto start = Clock::now();
  EXPECT_THROW((void)late.content(), Timeout);
  EXPECT_LT(Clock::now() - start, 1000ms);           // failed at its deadline, not at the reply
  EXPECT_EQ(slow(Msg("u", "b")).content(), "S(b)");  // later calls proceed

  auto limited = Sleeper("T", {{"sleep_ms", 300}}).to_dist({.lazy_launch = false, .timeout = 50ms});
  EXPECT_THROW((void)limited(Msg("u", "c")).content(), Timeout);
}

// A timed call whose send finds the server's ring full waits for space until its deadline,
// then fails with Timeout, saying so; the program and other servers go on.
TEST(DistAgentTest, ACallWaitingForRingSpaceTimesOutAtItsDeadline) {
  // S holds its first call; the 1 MiB calls behind it fill its queue budget (64 MiB), then
  // its 1 MiB ring, and then a send waits.
  auto slow = Sleeper("S", {{"sleep_ms", 10000}}).to_dist({.lazy_launch = false, .timeout = 1s});
  auto bystander = Counter("B").to_dist({.lazy_launch = false});
  const Msg big("u", std::string(1 << 20, 'x'));
  std::vector<Msg> calls;
  Clock::time_point sent_at;
  for (int i = 0; i < 200; ++i) {
    sent_at = Clock::now();
    calls.push_back(slow(big));
    // A call settled when it is issued: its send gave up (the others wait for S).
    if (calls.back().ready()) break;
  }
  const auto waited = Clock::now() - sent_at;
  ASSERT_TRUE(calls.back().ready()) << "no send waited for ring space";
  EXPECT_GT(calls.size(), 2u);
  // The send gives up at the deadline, and the runtime's sweep of deadlines fails the call
  // then too: either may say so first ("sending to its server (...): timed out", or "call
  // timed out").
  const std::string error = calls.back().error_message();
  EXPECT_NE(error.find("agent 'S' (class Sleeper): "), std::string::npos) << error;
  EXPECT_NE(error.find("timed out"), std::string::npos) << error;
  EXPECT_THROW((void)calls.back().content(), Timeout);
  EXPECT_GE(waited, 500ms);  // it waited for space (the deadline is 1 s after the call)
  EXPECT_LT(waited, 10s);    // until its deadline, not the 30 s a send waits without one
  EXPECT_EQ(bystander(Msg("u", "x")).content(), "B:1:x");
  // The calls S queued time out too, by their deadlines.
  EXPECT_THROW((void)calls.front().content(), Timeout);
  ::kill(slow.server_pid(), SIGKILL);  // not 64 calls of 10 s to sleep out
}

// Calls with short deadlines among thousands in flight on one link: they fail at their
// deadlines, unread (the runtime's sweep takes the due calls without looking at the rest), and
// every other call completes, in order.
TEST(DistAgentTest, TimedCallsAmongManyInFlightFailOnTimeAndAlone) {
  // S's 4 s hold the window the checks need, even in a sanitizer build on a loaded machine;
  // the test does not wait for them (the server sleeps them out after the link closes).
  auto slow = Sleeper("S", {{"sleep_ms", 4000}}).to_dist({.lazy_launch = false});
  // C's calls have a deadline too (far off), answered long before it: the link's deadline
  // heap sheds their entries as it goes.
  auto counter =
      Counter("C").to_dist({.port = slow.port(), .launch_server = false, .timeout = 60s});
  Msg busy = slow(Msg("u", "busy"));  // holds S: the timed calls behind it cannot answer in time
  std::vector<Msg> timed;
  std::vector<Msg> untimed;
  for (int i = 0; i < 2000; ++i) {
    untimed.push_back(counter(Msg("u", std::to_string(i))));
    if (i % 400 == 0)
      timed.push_back(slow.call({Msg("u", "t")}, {.timeout = 30ms + 1ms * i / 400}));
  }
  // Nobody reads the timed calls: only the sweep can fail them. A deferred local call on each
  // settles when it does.
  Counter local("L");
  std::vector<Msg> after;
  for (const Msg& t : timed) after.push_back(local(t));
  EXPECT_TRUE(wait_all(after, 5s));
  EXPECT_FALSE(busy.ready());  // they failed by their deadlines, not behind S's first reply
  for (const Msg& a : after) EXPECT_NE(a.error_message().find("timed out"), std::string::npos);
  for (int i = 0; i < 2000; ++i) {
    ASSERT_EQ(untimed[i].content(), "C:" + std::to_string(i + 1) + ":" + std::to_string(i));
  }
  EXPECT_FALSE(busy.ready());
}

// A link whose timed calls have all been answered or have expired empties its deadline heap
// (giving back a buffer grown past 4096 entries); timed calls made after that still fail at
// their deadlines, by the runtime's sweep, among untimed calls in flight that all complete in
// order. S's server sleeps out the calls queued on it after the link closes, until this test
// binary ends.
TEST(DistAgentTest, TimedCallsAfterTheTimedOnesAreAllDoneStillExpire) {
  auto slow = Sleeper("S", {{"sleep_ms", 4000}}).to_dist({.lazy_launch = false});
  auto counter = Counter("C").to_dist({.port = slow.port(), .launch_server = false});
  Msg busy = slow(Msg("u", "busy"));         // holds S: its timed calls below cannot answer in time
  std::vector<std::pair<int, Msg>> untimed;  // C's call number, and its result
  int sent = 0;
  auto untimed_calls = [&](int n) {
    for (int i = 0; i < n; ++i, ++sent) {
      untimed.emplace_back(sent, counter(Msg("u", std::to_string(sent))));
    }
  };
  Counter local("L");
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    untimed_calls(300);
    if (round == 2) {
      // 5000 timed calls in flight at once, all expiring: the heap grew past 4096 entries, and
      // the sweep that takes the last of them empties it.
      std::vector<Msg> expiring;
      for (int i = 0; i < 5000; ++i)
        expiring.push_back(slow.call({Msg("u", "e")}, {.timeout = 30ms}));
      Msg last = local(expiring.back());
      ASSERT_TRUE(last.wait_for(10s));
      for (const Msg& e : expiring)
        ASSERT_NE(e.error_message().find("timed out"), std::string::npos);
    }
    // Nobody reads the timed call: only the sweep can fail it (and names the agent when it
    // does). A deferred local call on it settles when it fails.
    Msg timed = slow.call({Msg("u", "t")}, {.timeout = 30ms});
    Msg after = local(timed);
    if (round == 1) {
      // Meanwhile, timed calls that are all answered: entries go while `timed` keeps its own.
      std::vector<Msg> answered;
      for (int i = 0; i < 50; ++i)
        answered.push_back(counter.call({Msg("u", "t")}, {.timeout = 60s}));
      for (int i = 0; i < 50; ++i) {
        ASSERT_EQ(answered[i].content(), "C:" + std::to_string(sent + i + 1) + ":t");
      }
      sent += 50;
    }
    untimed_calls(300);
    ASSERT_TRUE(after.wait_for(5s)) << "the timed call never expired";
    EXPECT_NE(after.error_message().find("agent 'S' (class Sleeper): call timed out"),
              std::string::npos)
        << after.error_message();
  }
  for (const auto& [i, result] : untimed) {
    ASSERT_EQ(result.content(), "C:" + std::to_string(i + 1) + ":" + std::to_string(i));
  }
  EXPECT_FALSE(busy.ready());
}

TEST(DistAgentTest, WaitingIsNotFailing) {
  auto slow = Sleeper("S", {{"sleep_ms", 300}}).to_dist({.lazy_launch = false});
  Msg x = slow(Msg("u", "a"));
  EXPECT_FALSE(x.wait_for(20ms));
  EXPECT_FALSE(x.error_message().size());  // waits, then: no failure
  EXPECT_EQ(x.content(), "S(a)");
}

TEST(DistAgentTest, WaitAnyAndWaitAll) {
  auto fast = Sleeper("F", {{"sleep_ms", 10}}).to_dist({.lazy_launch = false});
  auto slow = Sleeper("S", {{"sleep_ms", 400}}).to_dist({.lazy_launch = false});
  std::vector<Msg> both{slow(Msg("u", "s")), fast(Msg("u", "f"))};
  EXPECT_EQ(wait_any(both, 5s), 1);
  EXPECT_FALSE(wait_all(both, 10ms));
  EXPECT_TRUE(wait_all(both, 5s));

  // None ready within the timeout: -1 (and after it, the results still come).
  std::vector<Msg> pending{slow(Msg("u", "p")), slow(Msg("u", "q"))};
  const auto start = Clock::now();
  EXPECT_EQ(wait_any(pending, 20ms), -1);
  EXPECT_LT(Clock::now() - start, 350ms);  // at the timeout, not at the first reply (400 ms)
  EXPECT_TRUE(wait_all(pending, 5s));
  EXPECT_EQ(pending[1].content(), "S(q)");
  EXPECT_EQ(wait_any({}, 10ms), -1);

  // A failed result is a ready one: the waits end, and the failure is read as a value.
  auto faulty = Faulty("X").to_dist({.lazy_launch = false});
  std::vector<Msg> failing{slow(Msg("u", "r")), faulty(Msg("u", "fail"))};
  EXPECT_EQ(wait_any(failing, 5s), 1);
  EXPECT_NE(failing[1].error_message().find("asked to fail"), std::string::npos);
  EXPECT_TRUE(wait_all(failing, 5s));
}

TEST(DistAgentTest, ReplyLargerThanTheRingArrivesWhole) {
  auto big = test::BigReply("Big").to_dist();
  const std::size_t n = 8u << 20;  // 8 MiB through 1 MiB rings
  Msg m = big(Msg("u", std::to_string(n)));
  ASSERT_EQ(m.payload().size(), n);
  for (std::size_t i = 0; i < n; i += 4099)
    ASSERT_EQ(m.payload()[i], static_cast<std::byte>(i * 7));
}

// The other way: an input larger than the ring (in fragments) reaches reply() whole, and its
// answer, as large, comes back whole.
TEST(DistAgentTest, InputLargerThanTheRingArrivesWhole) {
  auto a = Counter("A").to_dist();
  std::string content(8u << 20, '\0');  // 8 MiB through 1 MiB rings
  for (std::size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>('a' + i % 23);
  const Msg m = a(Msg("u", content));
  ASSERT_EQ(m.content().size(), content.size() + 4);
  EXPECT_EQ(m.content().substr(0, 4), "A:1:");
  const auto differs = std::mismatch(content.begin(), content.end(), m.content().begin() + 4);
  EXPECT_TRUE(differs.first == content.end())
      << "the content differs from byte " << differs.first - content.begin();
  EXPECT_EQ(a(Msg("u", "x")).content(), "A:2:x");
}

TEST(DistAgentTest, ManyCallsInFlightKeepOrderPerAgent) {
  auto a = Counter("A").to_dist();
  std::vector<Msg> results;
  for (int i = 0; i < 20000; ++i) results.push_back(a(Msg("u", std::to_string(i))));
  for (int i = 0; i < 20000; ++i) {
    ASSERT_EQ(results[i].content(), "A:" + std::to_string(i + 1) + ":" + std::to_string(i));
  }
}

// A program busy issuing calls delivers the replies that come meanwhile, from every server,
// not only from the one it last sent to: calls that alternate between two servers once left
// the second server's replies unread for the whole burst, so every later call that took them
// as inputs waited in the flow graph. The background pump is paused here: it would deliver
// them too, had this thread a pause of a millisecond between two calls.
TEST(DistAgentTest, AProgramIssuingCallsDeliversRepliesFromEveryServer) {
  auto a = Counter("A").to_dist({.lazy_launch = false});
  auto b = Counter("B").to_dist({.lazy_launch = false});
  ASSERT_NE(a.server_pid(), b.server_pid());
  detail::Runtime& runtime = *detail::Runtime::get();
  runtime.pause_background_pump(true);
  struct Resume {
    detail::Runtime& runtime;
    ~Resume() { runtime.pause_background_pump(false); }
  } resume{runtime};
  const Msg x("u", "x");
  // Alternating, an issuing thread that pumps only the server it last sent to, every 32 calls,
  // reads one of the two rings and never the other: both first replies must come in. At most
  // 3000 calls per server, 50 us apart (time for the servers to answer): far fewer replies
  // than fill a ring, whose full state would make the sender drain it anyway.
  std::vector<Msg> to_a, to_b;
  while (to_a.size() < 3000) {
    to_a.push_back(a(x));
    to_b.push_back(b(x));
    if (to_a.front().ready() && to_b.front().ready()) break;
    test::busy_for(50us);
  }
  EXPECT_TRUE(to_a.front().ready()) << "after " << to_a.size() << " pairs of calls";
  EXPECT_TRUE(to_b.front().ready()) << "after " << to_b.size() << " pairs of calls";
  EXPECT_EQ(to_a.front().content(), "A:1:x");
  EXPECT_EQ(to_b.back().content(), "B:" + std::to_string(to_b.size()) + ":x");
}

TEST(DistAgentTest, AgentsCreatedWhileCallsAreInFlight) {
  std::vector<DistAgent> busy;
  for (int i = 0; i < 5; ++i) {
    busy.push_back(
        Sleeper("busy" + std::to_string(i), {{"sleep_ms", 60}}).to_dist({.lazy_launch = false}));
  }
  // Every other call takes the previous call's pending result: it waits in the dispatcher's
  // graph, and TBB's workers send it when that result comes, while the fork server forks.
  std::vector<Msg> in_flight;
  for (int i = 0; i < 50; ++i) {
    in_flight.push_back(busy[i % 5](i % 2 == 0 ? Msg("u", std::to_string(i)) : in_flight.back()));
  }
  // Each busy agent has 10 calls of 60 ms to run: the first new agent at least is made while
  // they run (even under a sanitizer, where a server takes a few hundred ms to start).
  std::vector<DistAgent> fresh;
  for (int i = 0; i < 5; ++i) {
    fresh.push_back(Counter("new" + std::to_string(i)).to_dist({.lazy_launch = false}));
    if (i == 0) {
      EXPECT_GT(std::count_if(in_flight.begin(), in_flight.end(),
                              [](const Msg& m) { return !m.ready(); }),
                0);
    }
  }
  for (auto& f : fresh) EXPECT_EQ(f(Msg("u", "x")).content(), f.name() + ":1:x");
  ASSERT_TRUE(wait_all(in_flight, 30s));
  for (int i = 0; i < 50; ++i) {
    const std::string input = i % 2 == 0 ? std::to_string(i) : in_flight[i - 1].content();
    EXPECT_EQ(in_flight[i].content(), busy[i % 5].name() + "(" + input + ")");
  }
}

// Registered in this test binary only: the foreign server's program lacks it.
class OnlyHere : public AgentBase {
 public:
  using AgentBase::AgentBase;
  Msg reply(const Msg& x) override { return x; }
};
TROUPE_REGISTER_AGENT(OnlyHere);

// A class the server lacks: every call on the agent is refused, naming the class, and the
// server keeps serving this program's other agents.
TEST(DistAgentTest, AClassTheServerLacksIsRefused) {
  test::ForeignServer foreign(TROUPE_FOREIGN_SERVER_PROGRAM);
  auto missing = OnlyHere("M").to_dist({.port = foreign.port, .launch_server = false});
  auto counter = Counter("C").to_dist({.port = foreign.port, .launch_server = false});
  for (int i = 0; i < 2; ++i) {
    try {
      (void)missing(Msg("u", "x")).content();
      FAIL() << "a call on a class the server lacks succeeded";
    } catch (const Refused& e) {
      EXPECT_NE(std::string(e.what()).find("OnlyHere"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(counter(Msg("u", "y")).content(), "C:1:y");
}

// Threads attaching to one server (of another program) at the same moment share one link:
// the server ends up with one client of this program.
TEST(DistAgentTest, ThreadsAttachingToAServerAtOnceShareOneLink) {
  test::ForeignServer foreign(TROUPE_FOREIGN_SERVER_PROGRAM);
  constexpr int kThreads = 6;
  std::vector<DistAgent> handles(kThreads);
  std::atomic<int> arrived{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      arrived.fetch_add(1);
      while (arrived.load() < kThreads) std::this_thread::yield();
      handles[t] = Counter("Shared").to_dist({.port = foreign.port, .launch_server = false});
    });
  }
  for (auto& t : threads) t.join();
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(handles[t](Msg("u", "x")).content(), "Shared:" + std::to_string(t + 1) + ":x");
  }
  // This program's link and the launcher's of the program that started the server (a link
  // that lost the race is closed, and the server drops it soon).
  const auto until = Clock::now() + 10s;
  std::size_t clients = 0;
  while ((clients = handles[0].server().info().clients) != 2 && Clock::now() < until) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(clients, 2u);
}

TEST(DistAgentTest, ThreadsWithSeveralCallsInFlightKeepTheirOwnOrder) {
  auto a = Counter("A").to_dist();
  std::vector<std::thread> threads;
  std::vector<std::vector<Msg>> results(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      // 50 rounds of 20 calls issued before any is read.
      for (int round = 0; round < 50; ++round) {
        std::vector<Msg> batch;
        for (int i = 0; i < 20; ++i) batch.push_back(a(Msg("u", std::to_string(t))));
        for (Msg& m : batch) results[t].push_back(std::move(m));
      }
      wait_all(results[t]);
    });
  }
  for (auto& t : threads) t.join();
  std::set<int> seen;
  for (int t = 0; t < 4; ++t) {
    int last = 0;
    for (const Msg& m : results[t]) {
      // "A:<n>:<t>": n counts the agent's calls and rises along each thread's own calls.
      const std::string c = m.content();
      const std::size_t colon = c.find(':', 2);
      ASSERT_NE(colon, std::string::npos) << c;
      const int n = std::stoi(c.substr(2, colon - 2));
      EXPECT_GT(n, last) << c;
      EXPECT_EQ(c.substr(colon + 1), std::to_string(t)) << c;
      last = n;
      seen.insert(n);
    }
  }
  EXPECT_EQ(seen.size(), 4000u);  // no call ran twice, none was lost
}

TEST(DistAgentTest, HandlesAreThreadSafe) {
  auto a = Counter("A").to_dist();
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  std::mutex seen_mutex;
  std::set<int> seen;  // every call's number, from all threads
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      int last = 0;
      for (int i = 0; i < 500; ++i) {
        // "A:<n>:<t>": n counts the agent's calls; each thread's own calls come in its order.
        const std::string c = a(Msg("u", std::to_string(t))).content();
        const std::size_t colon = c.find(':', 2);
        const int n = colon == std::string::npos ? 0 : std::stoi(c.substr(2, colon - 2));
        if (c.rfind("A:", 0) != 0 || n <= last || c.substr(colon + 1) != std::to_string(t)) {
          ++bad;
        }
        last = n;
        std::lock_guard lock(seen_mutex);
        seen.insert(n);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(seen.size(), 2000u);  // no call ran twice, none was lost
  EXPECT_EQ(a(Msg("u", "end")).content(), "A:2001:end");
}

}  // namespace
}  // namespace troupe
