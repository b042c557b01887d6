#pragma once
// AgentBase: what users derive from. An agent is an actor: reply() and observe() run one at a
// time, in the order the program called them, and its state persists across calls.
//
//   class Echo : public troupe::AgentBase {
//    public:
//     using AgentBase::AgentBase;                       // (std::string name, troupe::Kwargs)
//     troupe::Msg reply(const troupe::Msg& x) override { return {name(), x.content()}; }
//   };
//   TROUPE_REGISTER_AGENT(Echo);                        // creatable by name in other processes
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "troupe/core/call.hpp"
#include "troupe/core/msg.hpp"

namespace troupe {

/// Creation arguments: JSON, so that an agent can be re-created in another process from its
/// class name, name and kwargs (no code travels).
using Kwargs = nlohmann::json;

class DistAgent;
struct DistOptions;
namespace detail {
class AgentLane;
}

class AgentBase {
 public:
  explicit AgentBase(std::string name, Kwargs kwargs = Kwargs::object());
  AgentBase(const AgentBase&) = delete;
  AgentBase& operator=(const AgentBase&) = delete;
  virtual ~AgentBase();

  const std::string& name() const noexcept { return name_; }
  const Kwargs& kwargs() const noexcept { return kwargs_; }
  /// The name this class was registered under with TROUPE_REGISTER_AGENT, or "" if none.
  std::string class_name() const;

  /// Answers one message (an empty Msg when called with none). The default throws: override it.
  virtual Msg reply(const Msg& x);
  /// Answers several messages at once (a call such as D({y, z})). The default passes a single
  /// message to reply(const Msg&) and refuses more: override it for fan-in agents.
  virtual Msg reply(const std::vector<Msg>& xs);
  /// Receives a message without answering. The default does nothing.
  virtual void observe(const Msg& x);

  /// In-process call, ordered with this agent's other calls. With every input ready and nothing
  /// queued it runs reply() now, on this thread; with a pending input it returns a placeholder
  /// at once and runs when the input resolves (never blocking this thread).
  Msg operator()(const Msg& x = Msg());
  Msg operator()(std::vector<Msg> xs);
  /// The same with options: a deferred call fails with troupe::Timeout once options.timeout
  /// has passed (a call that runs now, on this thread, runs to its end).
  Msg call(std::vector<Msg> xs, const CallOptions& options);
  /// Sends `x` to observe() without an answer (the actor model's "tell"), ordered with this
  /// agent's calls like operator(): now when `x` is resolved and nothing is queued, else once
  /// it is. Returns at once; the handle reports a failure, as DistAgent::observe()'s does.
  /// (Calling the virtual observe() directly runs it now, outside that order.)
  ObserveHandle tell(const Msg& x);

  /// Places a new instance of this agent (same class, name, kwargs) in a server process and
  /// returns its handle; this object is not used by the distributed agent. Throws troupe::Error
  /// if the class is not registered or an option is bad.
  DistAgent to_dist(const DistOptions& options) const;
  DistAgent to_dist() const;

 private:
  // Admits a call of reply() (or of observe(), for an observation) to this agent's lane.
  std::shared_ptr<detail::ResultState> enqueue(std::vector<Msg> xs, bool observation,
                                               std::chrono::nanoseconds timeout);
  std::string describe() const;

  std::string name_;
  Kwargs kwargs_;
  std::shared_ptr<detail::AgentLane> lane_;  // created on first in-process call
};

namespace detail {

using AgentFactory = std::unique_ptr<AgentBase> (*)(std::string name, const Kwargs& kwargs);

/// Class name -> factory, for every class registered with TROUPE_REGISTER_AGENT. Filled by
/// static initialisers before main, read-only afterwards (so reads need no lock).
class AgentRegistry {
 public:
  static AgentRegistry& instance();
  bool add(std::string class_name, const std::type_info& type, AgentFactory factory);
  /// Creates an agent; throws troupe::Error naming the class (and the known ones) if unknown.
  std::unique_ptr<AgentBase> create(const std::string& class_name, std::string name,
                                    const Kwargs& kwargs) const;
  bool contains(const std::string& class_name) const;
  /// The registered name of a dynamic type, or "".
  std::string name_of(const std::type_info& type) const;
  std::vector<std::string> class_names() const;

 private:
  struct Entry {
    std::string class_name;
    const std::type_info* type;
    AgentFactory factory;
  };
  std::vector<Entry> entries_;
};

}  // namespace detail
}  // namespace troupe

/// Makes `Class` creatable by name in other processes. `Class` must be constructible from
/// (std::string name, troupe::Kwargs kwargs). Use once, at namespace scope, in a source file.
#define TROUPE_REGISTER_AGENT(Class)                                                   \
  [[maybe_unused]] static const bool troupe_registered_agent_##Class =                 \
      ::troupe::detail::AgentRegistry::instance().add(                                 \
          #Class, typeid(Class),                                                       \
          [](std::string name,                                                         \
             const ::troupe::Kwargs& kwargs) -> std::unique_ptr<::troupe::AgentBase> { \
            return std::make_unique<Class>(std::move(name), kwargs);                   \
          })
