#pragma once
// Agents the runtime tests place in servers. Include from exactly one source file per test
// binary (it registers the classes).
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <troupe/core/wake_word.hpp>
#include <troupe/troupe.hpp>
#include <vector>

#include "support/test_support.hpp"

namespace troupe::test {

inline std::int64_t wall_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Answers "<name>:<n>:<inputs...>" where n counts its calls (state persists across calls).
class Counter : public AgentBase {
 public:
  using AgentBase::AgentBase;
  Msg reply(const std::vector<Msg>& xs) override {
    ++calls_;
    std::string content = name() + ":" + std::to_string(calls_);
    for (const Msg& x : xs) content += ":" + (x.empty() ? std::string("-") : x.content());
    return Msg(name(), content);
  }
  Msg reply(const Msg& x) override { return reply(std::vector<Msg>{x}); }
  void observe(const Msg& x) override {
    observed_ += x.content().size();
    ++calls_;
  }

 private:
  int calls_ = 0;
  std::size_t observed_ = 0;
};

// Sleeps kwargs["sleep_ms"] (or the input's content, if numeric), or computes for
// kwargs["busy_us"] if given, then reports when it ran.
class Sleeper : public AgentBase {
 public:
  // kwargs.construct_ms: how long the constructor takes (default 0).
  explicit Sleeper(std::string name, Kwargs kwargs = {})
      : AgentBase(std::move(name), std::move(kwargs)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(this->kwargs().value("construct_ms", 0)));
  }
  Msg reply(const std::vector<Msg>& xs) override {
    const std::int64_t start = wall_ns();
    if (kwargs().contains("busy_us")) {
      busy_for(std::chrono::microseconds(kwargs()["busy_us"].get<int>()));
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(kwargs().value("sleep_ms", 100)));
    }
    std::string content = name();
    for (const Msg& x : xs) content += "(" + (x.empty() ? std::string() : x.content()) + ")";
    return Msg(name(), content)
        .set_metadata(nlohmann::json{{"start_ns", start}, {"end_ns", wall_ns()}}.dump());
  }
  Msg reply(const Msg& x) override { return reply(std::vector<Msg>{x}); }
};

/// When a Sleeper's reply started and ended (wall clock, ns), from its metadata.
inline std::int64_t start_of(const Msg& m) {
  return nlohmann::json::parse(m.metadata())["start_ns"];
}
inline std::int64_t end_of(const Msg& m) { return nlohmann::json::parse(m.metadata())["end_ns"]; }

/// The seed's graph (A->B, A->C, B->D, C->D, E->F, D->F) on six Sleepers with `kwargs`, one
/// server each, issued as a sequential program: its results, and the agents (kept alive).
struct SeedGraph {
  Msg x, y, z, w, e, f;  // A, B, C, D, E, F
  std::vector<DistAgent> agents;
};
inline SeedGraph run_seed_graph(const Kwargs& kwargs) {
  const DistOptions eager{.lazy_launch = false};
  auto A = Sleeper("A", kwargs).to_dist(eager), B = Sleeper("B", kwargs).to_dist(eager),
       C = Sleeper("C", kwargs).to_dist(eager), D = Sleeper("D", kwargs).to_dist(eager),
       E = Sleeper("E", kwargs).to_dist(eager), F = Sleeper("F", kwargs).to_dist(eager);
  SeedGraph g;
  g.agents = {A, B, C, D, E, F};
  g.x = A();
  g.y = B(g.x);
  g.z = C(g.x);
  g.w = D({g.y, g.z});
  g.e = E();
  g.f = F({g.w, g.e});
  return g;
}

// Throws when the content is "fail" (in reply and observe); otherwise echoes.
class Faulty : public AgentBase {
 public:
  using AgentBase::AgentBase;
  Msg reply(const Msg& x) override {
    if (x.content() == "fail") throw std::runtime_error("asked to fail");
    if (x.content() == "throw 42") throw 42;  // not a std::exception
    return Msg(name(), "ok:" + x.content());
  }
  void observe(const Msg& x) override {
    if (x.content() == "fail") throw std::runtime_error("observe asked to fail");
    if (x.content() == "throw 42") throw 42;
  }
};

// Answers with a payload of kwargs["bytes"] (or the input's content) bytes.
class BigReply : public AgentBase {
 public:
  using AgentBase::AgentBase;
  Msg reply(const Msg& x) override {
    const std::size_t n = x.content().empty() ? kwargs().value("bytes", std::size_t{1} << 20)
                                              : std::stoul(x.content());
    std::vector<std::byte> payload(n);
    for (std::size_t i = 0; i < n; ++i) payload[i] = static_cast<std::byte>(i * 7);
    return Msg(name(), std::to_string(n)).set_payload(std::move(payload));
  }
};

// Built only in the process kwargs["home_pid"] names: its re-creation in a server fails.
class Homebound : public AgentBase {
 public:
  Homebound(std::string name, Kwargs kwargs) : AgentBase(std::move(name), std::move(kwargs)) {
    if (this->kwargs().value("home_pid", 0) != static_cast<int>(::getpid())) {
      throw std::invalid_argument("Homebound is built only in its home process");
    }
  }
  Msg reply(const Msg& x) override { return x; }
};

// Runs its input as a shell command and answers with what it printed.
class Shell : public AgentBase {
 public:
  using AgentBase::AgentBase;
  Msg reply(const Msg& x) override {
    std::string out;
    if (FILE* pipe = ::popen(x.content().c_str(), "r")) {
      char buffer[256];
      while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) out += buffer;
      ::pclose(pipe);
    }
    return Msg(name(), out);
  }
};

// A constructor that refuses bad kwargs.
class Picky : public AgentBase {
 public:
  Picky(std::string name, Kwargs kwargs) : AgentBase(std::move(name), std::move(kwargs)) {
    if (!this->kwargs().contains("level")) throw std::invalid_argument("Picky needs kwargs.level");
  }
  Msg reply(const Msg& x) override { return Msg(name(), x.content()); }
};

// An in-process agent whose reply() calls another agent (with `also`, if given, as a second
// input: a pending one makes that call wait for it) and reads its answer.
class Asker : public AgentBase {
 public:
  Asker(std::string name, DistAgent asked, std::optional<Msg> also = {})
      : AgentBase(std::move(name)), remote_(std::move(asked)), also_(std::move(also)) {}
  Asker(std::string name, AgentBase& asked, std::optional<Msg> also = {})
      : AgentBase(std::move(name)), local_(&asked), also_(std::move(also)) {}
  using AgentBase::reply;
  Msg reply(const std::vector<Msg>& xs) override {
    std::vector<Msg> in = xs;
    // Passed as it is: asking whether a placeholder is empty would wait for it here.
    if (also_) in.push_back(*also_);
    return Msg(name(), (local_ ? (*local_)(std::move(in)) : remote_(std::move(in))).content());
  }

 private:
  DistAgent remote_;
  AgentBase* local_ = nullptr;
  std::optional<Msg> also_;
};

// Its constructor throws something that is not a std::exception.
class Unruly : public AgentBase {
 public:
  Unruly(std::string name, Kwargs kwargs) : AgentBase(std::move(name), std::move(kwargs)) {
    throw 42;
  }
  Msg reply(const Msg& x) override { return x; }
};

// Answers whether the process it runs in may sleep on several futex words at once
// (futex_waitv): "yes" or "no".
class FutexProbe : public AgentBase {
 public:
  using AgentBase::AgentBase;
  Msg reply(const Msg&) override { return Msg(name(), can_wait_on_several() ? "yes" : "no"); }
};

// Ends its whole process when asked: "exit:<status>" exits with that status (no clean-up, as
// a crash would), "abort" raises SIGABRT (without a core file); anything else is echoed.
class Quitter : public AgentBase {
 public:
  using AgentBase::AgentBase;
  Msg reply(const Msg& x) override {
    const std::string& what = x.content();
    if (what.rfind("exit:", 0) == 0) std::_Exit(std::stoi(what.substr(5)));
    if (what == "abort") {
      const rlimit no_core{0, 0};
      ::setrlimit(RLIMIT_CORE, &no_core);
      std::abort();
    }
    return Msg(name(), "ok:" + what);
  }
};

TROUPE_REGISTER_AGENT(Counter);
TROUPE_REGISTER_AGENT(Sleeper);
TROUPE_REGISTER_AGENT(Faulty);
TROUPE_REGISTER_AGENT(BigReply);
TROUPE_REGISTER_AGENT(Picky);
TROUPE_REGISTER_AGENT(Homebound);
TROUPE_REGISTER_AGENT(Shell);
TROUPE_REGISTER_AGENT(Unruly);
TROUPE_REGISTER_AGENT(FutexProbe);
TROUPE_REGISTER_AGENT(Quitter);

}  // namespace troupe::test
