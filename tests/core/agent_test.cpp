// AgentBase in process, the registry, and what to_dist refuses up front.
#include <gtest/gtest.h>
#include <oneapi/tbb/global_control.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <fstream>
#include <set>
#include <thread>

#include "support/test_agents.hpp"
#include "troupe/core/detail/agent_lane.hpp"
#include "troupe/core/detail/reply_pool.hpp"
#include "troupe/core/detail/result_state.hpp"
#include "troupe/core/detail/runtime.hpp"

namespace troupe {
namespace {

using test::Counter;

class Unregistered : public AgentBase {
 public:
  using AgentBase::AgentBase;
  Msg reply(const Msg& x) override { return x; }
};

TEST(AgentTest, InProcessCallsRunNowAndKeepState) {
  Counter c("C");
  Msg a = c(Msg("u", "x"));
  EXPECT_FALSE(a.is_placeholder());  // ran at once, on this thread
  EXPECT_EQ(a.content(), "C:1:x");
  EXPECT_EQ(c(Msg("u", "y")).content(), "C:2:y");
  EXPECT_EQ(c().content(), "C:3:-");
  EXPECT_EQ(c({Msg("u", "a"), Msg("u", "b")}).content(), "C:4:a:b");
}

TEST(AgentTest, InProcessExceptionIsAFailedResult) {
  test::Faulty f("F");
  Msg bad = f(Msg("u", "fail"));
  EXPECT_THROW((void)bad.content(), RemoteError);
  EXPECT_NE(bad.error_message().find("agent 'F' (class Faulty) raised: asked to fail"),
            std::string::npos)
      << bad.error_message();
}

TEST(AgentTest, DestroyingAnAgentFailsItsDeferredCallsClearly) {
  auto gate = std::make_shared<detail::ResultState>();
  const Msg input = Msg::placeholder(gate);
  Msg deferred;
  {
    Counter c("C");
    deferred = c(input);  // waits for `input`
    EXPECT_FALSE(deferred.ready());
  }  // the deferred call fails now, without waiting for its input, and never runs reply()
  ASSERT_TRUE(deferred.ready());
  EXPECT_THROW((void)deferred.content(), Error);
  EXPECT_NE(deferred.error_message().find("agent 'C' was destroyed before this call could run"),
            std::string::npos)
      << deferred.error_message();
  gate->resolve(Msg("u", "x"));  // the call reaches the graph now, finds its lane closed
  EXPECT_NE(deferred.error_message().find("was destroyed"), std::string::npos);
}

TEST(AgentTest, TellIsOrderedWithDeferredCallsAndReportsFailure) {
  auto gate = std::make_shared<detail::ResultState>();
  Counter c("C");
  Msg deferred = c(Msg::placeholder(gate));       // waits for the gate
  ObserveHandle seen = c.tell(Msg("u", "seen"));  // queued behind it, not run now
  Msg after = c(Msg("u", "x"));
  EXPECT_FALSE(seen.ready());
  gate->resolve(Msg("u", "g"));
  EXPECT_EQ(deferred.content(), "C:1:g");  // before the observation
  EXPECT_NO_THROW(seen.get());
  EXPECT_EQ(after.content(), "C:3:x");  // the observation counted second

  test::Faulty f("F");
  ObserveHandle bad = f.tell(Msg("u", "fail"));
  EXPECT_THROW(bad.get(), RemoteError);
  try {
    bad.get();
  } catch (const RemoteError& e) {
    EXPECT_NE(std::string(e.what()).find("agent 'F' (class Faulty) observe raised"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(f(Msg("u", "after")).content(), "ok:after");  // not poisoned

  // A failure nobody asks about is logged, as a distributed agent's is.
  testing::internal::CaptureStderr();
  f.tell(Msg("u", "fail"));  // the handle is dropped at once
  EXPECT_EQ(f(Msg("u", "later")).content(), "ok:later");
  const std::string log = testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("observe on agent 'F' (class Faulty) failed"), std::string::npos) << log;
  EXPECT_NE(log.find("observe asked to fail"), std::string::npos) << log;
}

TEST(AgentTest, ADeferredInProcessCallTimesOut) {
  auto gate = std::make_shared<detail::ResultState>();
  Counter c("C");
  Msg r = c.call({Msg::placeholder(gate)}, {.timeout = std::chrono::milliseconds(50)});
  EXPECT_THROW((void)r.content(), Timeout);  // while its input is still pending
  gate->resolve(Msg("u", "g"));
  EXPECT_THROW((void)r.content(), Timeout);  // the call was abandoned; it never runs
}

TEST(AgentTest, ATimedOutDeferredCallLetsLaterCallsProceedAndNeverRuns) {
  auto gate = std::make_shared<detail::ResultState>();
  Counter c("C");
  Msg stuck = c.call({Msg::placeholder(gate)}, {.timeout = std::chrono::milliseconds(50)});
  Msg later = c(Msg("u", "x"));  // queued behind the stuck call
  // Nobody waits for `stuck`: the runtime's deadline watch fails it, and `later` runs.
  ASSERT_TRUE(later.wait_for(std::chrono::seconds(5))) << "the lane stayed blocked";
  EXPECT_EQ(later.content(), "C:1:x");  // the abandoned call never ran
  EXPECT_THROW((void)stuck.content(), Timeout);
  gate->resolve(Msg("u", "g"));
  EXPECT_EQ(c(Msg("u", "y")).content(), "C:2:y");
}

// Looks every millisecond, up to 10 s, until `done()`; returns whether it was.
template <class Done>
bool eventually(Done&& done) {
  const auto until = Clock::now() + std::chrono::seconds(10);
  while (!done() && Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return done();
}

// A chain of `levels` in-process Askers over a Counter, each asking the next with a gate that
// opens only after it waits: every reply() in the chain blocks, reading a call that is itself
// deferred, so each inner call needs a thread that is not held by a waiting reply(). TBB is
// limited to one worker, as on this 2-core machine: the outermost reply() holds it, its rescuer
// hands the inner calls to the reply pool, and there a thread that waits long stops counting as
// running.
void expect_nested_deferred_waits_complete(int levels) {
  tbb::global_control one_worker(tbb::global_control::max_allowed_parallelism, 2);
  std::vector<std::shared_ptr<detail::ResultState>> gates;
  for (int i = 0; i <= levels; ++i) gates.push_back(std::make_shared<detail::ResultState>());
  Counter inner("C");
  std::vector<std::unique_ptr<test::Asker>> askers;  // the outermost last
  AgentBase* asked = &inner;
  for (int i = levels; i >= 1; --i) {
    askers.push_back(
        std::make_unique<test::Asker>("A" + std::to_string(i), *asked, Msg::placeholder(gates[i])));
    asked = askers.back().get();
  }
  Msg result = (*asked)(Msg::placeholder(gates[0]));
  EXPECT_FALSE(result.ready());
  std::thread resolver([&] {
    for (int i = 0; i <= levels; ++i) {
      // Each gate opens once the reply() it feeds waits on the call that takes it.
      if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      gates[i]->resolve(Msg("u", std::to_string(i)));
    }
  });
  const bool done = result.wait_for(std::chrono::seconds(10));
  resolver.join();
  ASSERT_TRUE(done) << "a chain " << levels << " deep";
  std::string expected = "C:1:0";
  for (int i = 1; i <= levels; ++i) expected += ":" + std::to_string(i);
  EXPECT_EQ(result.content(), expected);
}

TEST(AgentTest, ADeferredReplyMayWaitForAnotherDeferredCall) {
  expect_nested_deferred_waits_complete(1);
}

TEST(AgentTest, DeferredRepliesMayWaitTwoLevelsDeep) { expect_nested_deferred_waits_complete(2); }

// Sixteen waits at once, each needing a thread of its own. (When rescuers ran the inner calls
// themselves, four of them at most, five hung.)
TEST(AgentTest, DeferredRepliesMayWaitSixteenLevelsDeep) {
  expect_nested_deferred_waits_complete(16);
  // The pool's threads beyond what may run at once leave after a second idle.
  const int limit = detail::reply_pool_counts().limit;
  eventually([&] { return detail::reply_pool_counts().threads <= limit; });
  EXPECT_LE(detail::reply_pool_counts().threads, limit);
  EXPECT_EQ(detail::reply_pool_counts().waiting, 0);
}

// In-process replies that wait do not hold up the graph: while more of them wait than TBB has
// threads and rescuers, a remote call that waited in the graph for its input is still sent.
TEST(AgentTest, WaitingInProcessRepliesLeaveTheGraphItsThreads) {
  tbb::global_control one_worker(tbb::global_control::max_allowed_parallelism, 2);
  auto gate = std::make_shared<detail::ResultState>();
  // However the test ends, the waiting replies are let go before their agents are destroyed.
  const std::shared_ptr<void> open_gate(nullptr, [&](void*) { gate->resolve(Msg("u", "g")); });
  Counter inner("C");
  std::vector<std::unique_ptr<test::Asker>> waiters;
  std::vector<Msg> waiting;
  const int waiting_before = detail::reply_pool_counts().waiting;  // an earlier test's, if any
  for (int i = 0; i < 6; ++i) {
    // Each reply() asks C with the gate as a second input, and waits for that deferred call.
    waiters.push_back(
        std::make_unique<test::Asker>("W" + std::to_string(i), inner, Msg::placeholder(gate)));
    auto trigger = std::make_shared<detail::ResultState>();
    waiting.push_back((*waiters.back())(Msg::placeholder(trigger)));
    trigger->resolve(Msg("u", std::to_string(i)));
  }
  eventually([&] { return detail::reply_pool_counts().waiting >= waiting_before + 5; });
  // The first reply waits on TBB's worker, the others (handed over by its rescuer) on the pool
  // (all six, if a rescuer left by an earlier test took the first).
  ASSERT_GE(detail::reply_pool_counts().waiting, waiting_before + 5);
  auto remote = Counter("R").to_dist({.lazy_launch = false});
  auto input = std::make_shared<detail::ResultState>();
  Msg through_graph = remote(Msg::placeholder(input));  // waits in the graph for `input`
  input->resolve(Msg("u", "r"));
  EXPECT_TRUE(through_graph.wait_for(std::chrono::seconds(5)));
  EXPECT_EQ(through_graph.content(), "R:1:r");
  EXPECT_FALSE(waiting.front().ready());
  gate->resolve(Msg("u", "g"));
  ASSERT_TRUE(wait_all(waiting, std::chrono::seconds(10)));
  std::set<std::string> answers;
  for (const Msg& m : waiting) answers.insert(m.content());
  EXPECT_EQ(answers.size(), 6u);  // C answered each once, in some order
}

// Records the order of its calls, and whether two ever overlapped.
class Recorder : public AgentBase {
 public:
  using AgentBase::AgentBase;
  using AgentBase::reply;
  Msg reply(const std::vector<Msg>& xs) override {  // the first message names the call
    if (in_reply_.exchange(true)) overlapped_ = true;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    seen_.push_back(xs.at(0).content());
    on_pool_.push_back(detail::on_reply_pool_thread());
    in_reply_ = false;
    return Msg(name(), xs.at(0).content());
  }
  std::vector<std::string> seen_;  // written one call at a time (the point of the test)
  std::vector<bool> on_pool_;
  std::atomic<bool> overlapped_{false};

 private:
  std::atomic<bool> in_reply_{false};
};

// A reply() that waits long on TBB's worker (with TBB limited to one); `release` ends the wait.
struct WorkerHolder {
  std::shared_ptr<detail::ResultState> release = std::make_shared<detail::ResultState>();
  std::shared_ptr<detail::ResultState> trigger = std::make_shared<detail::ResultState>();
  Counter inner{"I"};
  test::Asker holder{"H", inner, Msg::placeholder(release)};
  Msg held = holder(Msg::placeholder(trigger));
  WorkerHolder() {
    // A rescuer an earlier test let go may still finish a task: it would take the holder's
    // call (to the pool) and leave the worker free.
    eventually([] { return detail::rescuers_running() == 0; });
    trigger->resolve(Msg("u", "h"));
    // Its rescuer runs the graph once the wait has lasted 300 us.
    eventually([] { return detail::rescuers_running() > 0; });
  }
  ~WorkerHolder() {
    release->resolve(Msg("u", "r"));
    (void)held.wait_for(std::chrono::seconds(10));
  }
};

// A lane's calls run one at a time and in order when some go to the reply pool (a rescuer took
// them while a reply() waited on TBB's worker), more than a pool turn (16) at once, and later
// ones run on TBB's worker again (after the pool is done with the lane's earlier ones).
TEST(AgentTest, InProcessCallsKeepOrderAcrossTheReplyPool) {
  tbb::global_control one_worker(tbb::global_control::max_allowed_parallelism, 2);
  Recorder recorder("R");
  std::vector<Msg> results;
  auto issue = [&](int from, int to) {
    auto gate = std::make_shared<detail::ResultState>();
    for (int i = from; i < to; ++i) {
      results.push_back(recorder({Msg("u", std::to_string(i)), Msg::placeholder(gate)}));
    }
    gate->resolve(Msg("u", "g"));
  };
  {
    WorkerHolder holder;  // from here the rescuer runs the graph: R's calls go to the pool
    issue(0, 40);
  }
  issue(40, 60);  // the worker is free again, but R's first calls are not done: these follow
  ASSERT_TRUE(wait_all(results, std::chrono::seconds(20)));
  // The pool lets go of the lane just after its last call settles.
  eventually([] { return detail::reply_pool_counts().busy == 0; });
  issue(60, 80);  // none left on the pool: these run on TBB's thread
  ASSERT_TRUE(wait_all(results, std::chrono::seconds(20)));
  for (const Msg& r : results) ASSERT_EQ(r.error_message(), "");
  EXPECT_FALSE(recorder.overlapped_);
  ASSERT_EQ(recorder.seen_.size(), 80u);
  for (int i = 0; i < 80; ++i) EXPECT_EQ(recorder.seen_[i], std::to_string(i));
  // Which thread took which call is TBB's choice; what matters is that calls went both ways.
  const auto on_pool = [&](int from, int to) {
    return std::count(recorder.on_pool_.begin() + from, recorder.on_pool_.begin() + to, true);
  };
  std::printf(
      "calls that ran on the pool: %zd of the first 40, %zd of the next 20, %zd of the "
      "last 20\n",
      on_pool(0, 40), on_pool(40, 60), on_pool(60, 80));
  EXPECT_GE(on_pool(0, 40), 1);
  EXPECT_LT(on_pool(60, 80), 20);
}

// An agent destroyed while its calls wait on the reply pool's queue (every pool thread busy):
// they fail with the usual error and never run; the pool, coming to them later, skips them.
TEST(AgentTest, DestroyingAnAgentFailsItsCallsWaitingOnTheReplyPool) {
  tbb::global_control one_worker(tbb::global_control::max_allowed_parallelism, 2);
  WorkerHolder holder;  // the graph's calls now go to the pool
  // Calls that sleep (not waiting on results: the pool starts no thread for them past its
  // limit) on more agents than the pool has idle threads and may start (one more): the pool
  // is full.
  const detail::ReplyPoolCounts counts = detail::reply_pool_counts();
  std::vector<std::unique_ptr<test::Sleeper>> sleepers;
  std::vector<Msg> sleeping;
  auto sleepers_input = std::make_shared<detail::ResultState>();
  for (int i = 0; i < counts.threads - counts.waiting + counts.limit + 1; ++i) {
    sleepers.push_back(
        std::make_unique<test::Sleeper>("S" + std::to_string(i), Kwargs{{"sleep_ms", 500}}));
    sleeping.push_back((*sleepers.back())(Msg::placeholder(sleepers_input)));
  }
  sleepers_input->resolve(Msg("u", "s"));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // every pool thread sleeps now
  auto counter = std::make_unique<Counter>("A");
  auto input = std::make_shared<detail::ResultState>();
  std::vector<Msg> calls;
  for (int i = 0; i < 5; ++i) calls.push_back((*counter)(Msg::placeholder(input)));
  input->resolve(Msg("u", "x"));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // handed over by now
  ASSERT_FALSE(calls[0].ready()) << "A's calls ran: the pool had a thread for them";
  counter.reset();
  for (const Msg& m : calls) {
    EXPECT_NE(m.error_message().find("agent 'A' was destroyed before this call could run"),
              std::string::npos)
        << m.error_message();
  }
  ASSERT_TRUE(wait_all(sleeping, std::chrono::seconds(20)));
  for (const Msg& m : sleeping) EXPECT_EQ(m.error_message(), "");
}

// Says which thread its reply() started on, then sleeps `sleep`.
class SaysWhenStarted : public AgentBase {
 public:
  SaysWhenStarted(std::string name, std::atomic<std::thread::id>& started_on,
                  std::chrono::milliseconds sleep)
      : AgentBase(std::move(name)), started_on_(started_on), sleep_(sleep) {}
  Msg reply(const Msg& x) override {
    // Copied first: once it has said so, the test may begin destroying this object.
    const auto sleep = sleep_;
    std::string content = x.content();
    started_on_.store(std::this_thread::get_id());
    std::this_thread::sleep_for(sleep);
    return Msg("S", std::move(content));
  }

 private:
  std::atomic<std::thread::id>& started_on_;
  std::chrono::milliseconds sleep_;
};

std::chrono::nanoseconds thread_cpu_time() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

// An agent destroyed while a deferred call of it runs waits for that call to end, asleep: the
// destroying thread uses little CPU while a 300 ms reply() finishes (a thread that yielded in
// a loop used as much CPU as the wait took, on a core another thread could have had).
TEST(AgentTest, DestroyingAnAgentWaitsForItsRunningCallAsleep) {
  std::atomic<std::thread::id> started_on{};
  auto agent = std::make_unique<SaysWhenStarted>("S", started_on, std::chrono::milliseconds(300));
  auto input = std::make_shared<detail::ResultState>();
  const Msg result = (*agent)(Msg::placeholder(input));  // deferred: a TBB thread runs it
  input->resolve(Msg("u", "x"));
  ASSERT_TRUE(eventually([&] { return started_on.load() != std::thread::id{}; }));
  ASSERT_NE(started_on.load(), std::this_thread::get_id()) << "the call ran here: no wait";
  const auto cpu_before = thread_cpu_time();
  const auto wall_before = std::chrono::steady_clock::now();
  agent.reset();
  const auto wall = std::chrono::steady_clock::now() - wall_before;
  const auto cpu = thread_cpu_time() - cpu_before;
  ASSERT_TRUE(result.ready()) << "the destructor returned before the running call ended";
  EXPECT_EQ(result.content(), "x");
  EXPECT_LT(cpu, std::chrono::milliseconds(5) + wall / 4)
      << "the destructor used " << cpu.count() / 1000 << " us of CPU in a wait of "
      << std::chrono::duration_cast<std::chrono::microseconds>(wall).count() << " us";
}

TEST(AgentTest, DefaultReplyRefusesSeveralMessagesClearly) {
  test::Faulty f("F");
  Msg m = f({Msg("u", "a"), Msg("u", "b")});
  EXPECT_NE(m.error_message().find("override reply(const std::vector<Msg>&)"), std::string::npos);
}

TEST(AgentTest, RegistryKnowsClassesByName) {
  auto& registry = detail::AgentRegistry::instance();
  EXPECT_TRUE(registry.contains("Counter"));
  EXPECT_EQ(Counter("x").class_name(), "Counter");
  EXPECT_EQ(Unregistered("x").class_name(), "");
  auto made = registry.create("Counter", "made", Kwargs::object());
  EXPECT_EQ(made->name(), "made");
  try {
    registry.create("Nope", "n", Kwargs::object());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown agent class 'Nope'"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("Counter"), std::string::npos);  // lists known ones
  }
}

TEST(AgentTest, ToDistRefusesAnUnregisteredClass) {
  try {
    Unregistered("U").to_dist();
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("TROUPE_REGISTER_AGENT"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("Unregistered"), std::string::npos) << e.what();
  }
}

TEST(AgentTest, ToDistRefusesBadOptions) {
  EXPECT_THROW(Counter("C").to_dist({.port = -1}), Error);
  EXPECT_THROW(Counter("C").to_dist({.port = 70000}), Error);
  EXPECT_THROW(Counter("C").to_dist({.launch_server = false}), Error);  // which server?
  EXPECT_THROW(Counter("C").to_dist({.timeout = std::chrono::nanoseconds(-1)}), Error);
  try {
    Counter("C").to_dist({.local_mode = false});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("local_mode"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Counter("C").to_dist({.host = "10.1.2.3"}), Error);
}

TEST(AgentTest, AttachingToAPortWithNoServerIsAClearError) {
  try {
    Counter("C").to_dist({.port = 1, .launch_server = false});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no Troupe server listens on local port 1"),
              std::string::npos)
        << e.what();
  }
}

// The processes the fork server has started and that still run.
std::set<pid_t> servers_running() {
  std::set<pid_t> pids;
  const pid_t fork_server = detail::Runtime::get()->fork_server_pid();
  std::ifstream children("/proc/" + std::to_string(fork_server) + "/task/" +
                         std::to_string(fork_server) + "/children");
  for (pid_t pid; children >> pid;) pids.insert(pid);
  return pids;
}

// The servers started since `before` that still run after waiting up to 10 s for them to end.
std::set<pid_t> servers_left_since(const std::set<pid_t>& before) {
  std::set<pid_t> left;
  eventually([&] {
    left.clear();
    for (pid_t pid : servers_running()) {
      if (before.count(pid) == 0) left.insert(pid);
    }
    return left.empty();
  });
  return left;
}

TEST(AgentTest, KwargsTheConstructorRefusesAreAClearError) {
  // Here, at construction (no local object exists to place).
  EXPECT_THROW(test::Picky("P", {{"colour", "red"}}), std::invalid_argument);
  // In a server: a launcher's agent built from kwargs its class refuses fails the launch,
  // saying why, and leaves no server behind.
  const std::set<pid_t> before = servers_running();
  RpcAgentServerLauncher launcher("Picky", {{"name", "P"}, {"colour", "red"}});
  try {
    launcher.launch();
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Picky needs kwargs.level"), std::string::npos)
        << e.what();
  }
  // Its server ended: no process this test started remains.
  EXPECT_EQ(servers_left_since(before).size(), 0u);
  // The same class with kwargs it accepts is served.
  test::Picky ok("P", {{"level", 1}});
  EXPECT_EQ(ok.to_dist()(Msg("u", "x")).content(), "x");
}

// A launcher of a class its server does not know fails the launch naming the class and the
// classes it knows, and leaves no server behind.
TEST(AgentTest, ALauncherOfAnUnknownClassFailsNamingIt) {
  const std::set<pid_t> before = servers_running();
  RpcAgentServerLauncher launcher("NoSuchAgent", {{"name", "N"}});
  try {
    launcher.launch();
    FAIL() << "a server launched an agent of an unknown class";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("unknown agent class 'NoSuchAgent'"), std::string::npos) << what;
    EXPECT_NE(what.find("Counter"), std::string::npos) << what;  // among the registered
  }
  EXPECT_EQ(servers_left_since(before).size(), 0u);
}

// Kwargs that cannot travel (JSON text must be UTF-8) are refused at to_dist with
// troupe::Error, before any server starts; so are a launcher's kwargs that are not an object.
TEST(AgentTest, KwargsThatCannotTravelAreRefusedAtToDist) {
  const std::set<pid_t> before = servers_running();
  // No server started (one of an earlier test may still be ending: fewer is fine).
  const auto none_started = [&] { return std::ranges::includes(before, servers_running()); };
  test::Counter bad("C", {{"note", std::string("\xff\xfe")}});
  for (bool lazy : {true, false}) {
    try {
      (void)bad.to_dist({.lazy_launch = lazy});
      FAIL() << "to_dist took kwargs that are not UTF-8";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("kwargs of agent 'C'"), std::string::npos) << e.what();
    }
  }
  EXPECT_TRUE(none_started());
  for (const Kwargs& kwargs : {Kwargs::array({1, 2}), Kwargs{{"name", 7}},
                               Kwargs{{"name", "P"}, {"note", std::string("\xff")}}}) {
    RpcAgentServerLauncher launcher("Counter", kwargs);
    EXPECT_THROW(launcher.launch(), Error)
        << kwargs.dump(2, ' ', false, Kwargs::error_handler_t::replace);
  }
  EXPECT_TRUE(none_started());
}

TEST(AgentTest, AnAgentItsServerCannotBuildFailsItsCallsSayingWhy) {
  test::Homebound here("H", {{"home_pid", static_cast<int>(::getpid())}});
  auto there = here.to_dist({.lazy_launch = false});
  Msg m = there(Msg("u", "x"));
  EXPECT_THROW((void)m.content(), Error);
  EXPECT_NE(m.error_message().find("Homebound is built only in its home process"),
            std::string::npos)
      << m.error_message();
  EXPECT_THROW((void)there(Msg("u", "again")).content(), Error);  // every call says so
}

TEST(AgentTest, LazyLaunchStartsTheServerAtTheFirstCall) {
  const std::set<pid_t> before = servers_running();
  auto a = Counter("Lazy").to_dist();  // lazy by default: no process yet
  for (pid_t pid : servers_running()) EXPECT_EQ(before.count(pid), 1u) << "a new server " << pid;
  EXPECT_EQ(a(Msg("u", "x")).content(), "Lazy:1:x");
  EXPECT_GT(a.server_pid(), 0);
  EXPECT_EQ(servers_running().count(a.server_pid()), 1u);
}

TEST(AgentTest, LazyLaunchOnAPortInUseFailsTheFirstCall) {
  RpcAgentServerLauncher first;
  first.launch();
  auto a = Counter("A").to_dist({.port = first.port()});  // lazy: launched at the first call
  Msg m = a(Msg("u", "x"));
  EXPECT_NE(m.error_message().find("in use"), std::string::npos) << m.error_message();
  // Later calls fail the same way, at once, and so do calls that take the failed result.
  const auto later = Clock::now();
  EXPECT_NE(a(Msg("u", "y")).error_message().find("in use"), std::string::npos);
  EXPECT_NE(a(m).error_message().find("in use"), std::string::npos);
  EXPECT_LT(Clock::now() - later, std::chrono::seconds(5));
  EXPECT_THROW(Counter("B").to_dist({.port = first.port(), .lazy_launch = false}), Error);
}

}  // namespace
}  // namespace troupe
