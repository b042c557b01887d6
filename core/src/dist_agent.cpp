#include "troupe/core/dist_agent.hpp"

#include <cxxabi.h>
#include <signal.h>

#include <cstdlib>

#include "troupe/core/detail/remote_agent.hpp"
#include "troupe/core/detail/runtime.hpp"
#include "troupe/core/error.hpp"

namespace troupe {
namespace {

constexpr auto kManagementTimeout = std::chrono::seconds(10);
/// How long a launcher's shutdown waits for its server to end after SIGTERM before SIGKILL.
constexpr auto kLauncherStopGrace = std::chrono::seconds(5);

std::string demangle(const char* name) {
  int status = 0;
  char* readable = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  std::string out = status == 0 && readable != nullptr ? readable : name;
  std::free(readable);
  return out;
}

bool is_local_host(const std::string& host) {
  return host == "localhost" || host == "127.0.0.1" || host == "::1" || host.empty();
}

void check_options(const DistOptions& o) {
  if (o.port < 0 || o.port > 65535) {
    throw Error("to_dist: port = " + std::to_string(o.port) +
                ": must be in [0, 65535] (0 picks a free one)");
  }
  if (!o.local_mode || !is_local_host(o.host)) {
    throw Error("to_dist: host = '" + o.host +
                "', local_mode = " + (o.local_mode ? "true" : "false") +
                ": reaching a server over TCP needs the network transport, which this build "
                "does not have yet; use local_mode = true with host 'localhost'");
  }
  if (!o.launch_server && o.port == 0) {
    throw Error("to_dist: launch_server = false needs the port of a running server (port = 0)");
  }
  if (o.timeout.count() < 0) throw Error("to_dist: timeout must be >= 0 (0: none)");
  if (o.workers < 0) throw Error("to_dist: workers must be >= 0 (0: default)");
}

// Sends a management request to a server and returns its reply.
Msg ask_server(detail::ServerLink& link, wire::Kind kind, std::vector<Msg> msgs) {
  auto state = detail::make_result_state(detail::Runtime::get());
  state->deadline = Clock::now() + kManagementTimeout;
  link.request(kind, 0, msgs, state,
               std::make_shared<const std::string>("server (" + link.where() + ")"));
  return state->value();
}

}  // namespace

DistAgent AgentBase::to_dist() const { return to_dist(DistOptions{}); }

DistAgent AgentBase::to_dist(const DistOptions& options) const {
  const std::string class_name = detail::AgentRegistry::instance().name_of(typeid(*this));
  if (class_name.empty()) {
    const std::string type = demangle(typeid(*this).name());
    throw Error("to_dist: class " + type + " is not registered: add TROUPE_REGISTER_AGENT(" + type +
                ") to a source file");
  }
  check_options(options);
  std::string kwargs_json;
  try {
    kwargs_json = kwargs().dump();
  } catch (const std::exception& e) {
    throw Error("to_dist: the kwargs of agent '" + name() +
                "' cannot travel as JSON text: " + e.what());
  }
  detail::Runtime::require("to_dist");
  auto agent =
      std::make_shared<detail::RemoteAgent>(name(), class_name, std::move(kwargs_json), options);
  if (!options.launch_server || !options.lazy_launch) agent->ensure_placed();
  return DistAgent(std::move(agent));
}

const detail::RemoteAgent& DistAgent::agent() const {
  if (!agent_) throw Error("empty DistAgent handle");
  return *agent_;
}

Msg DistAgent::operator()(const Msg& x) const { return call({&x, 1}, {}, nullptr); }
Msg DistAgent::operator()(std::initializer_list<Msg> xs) const {
  return call({xs.begin(), xs.size()}, {}, nullptr);
}
Msg DistAgent::operator()(std::vector<Msg> xs) const { return call(xs, {}, &xs); }

Msg DistAgent::call(std::vector<Msg> xs, const CallOptions& options) const {
  return call(xs, options.timeout, &xs);
}

Msg DistAgent::call(std::span<const Msg> xs, std::chrono::nanoseconds timeout,
                    std::vector<Msg>* movable) const {
  agent();
  return Msg::placeholder(agent_->call(xs, wire::Kind::Call, timeout, movable));
}

ObserveHandle DistAgent::observe(const Msg& x) const {
  agent();
  // A failure nobody asks about is still reported.
  return ObserveHandle::reporting(
      agent_->call({&x, 1}, wire::Kind::Observe, std::chrono::nanoseconds{0}), agent_->describe());
}

const std::string& DistAgent::name() const { return agent().name(); }
const std::string& DistAgent::class_name() const { return agent().class_name(); }

int DistAgent::port() const {
  auto link = const_cast<detail::RemoteAgent&>(agent()).link();
  link->wait_ready(Clock::now() + std::chrono::seconds(10));
  return link->port();
}

pid_t DistAgent::server_pid() const {
  auto link = const_cast<detail::RemoteAgent&>(agent()).link();
  link->wait_ready(Clock::now() + std::chrono::seconds(10));
  return link->pid();
}

ServerHandle DistAgent::server() const {
  return ServerHandle(const_cast<detail::RemoteAgent&>(agent()).link());
}

void DistAgent::shutdown() const { const_cast<detail::RemoteAgent&>(agent()).shutdown(); }

ServerInfo ServerHandle::info() const {
  Msg reply = ask_server(*link_, wire::Kind::Info, {});
  auto j = nlohmann::json::parse(reply.metadata());
  ServerInfo info;
  info.pid = j.value("pid", pid_t{0});
  info.port = j.value("port", 0);
  info.rss_bytes = j.value("rss_bytes", std::size_t{0});
  info.clients = j.value("clients", std::size_t{0});
  info.malformed_frames = j.value("malformed_frames", std::size_t{0});
  for (const auto& a : j.value("agents", nlohmann::json::array())) {
    info.agents.push_back({a.value("name", ""), a.value("class", ""),
                           a.value("queue_depth", std::size_t{0}),
                           a.value("calls", std::uint64_t{0})});
  }
  return info;
}

std::vector<std::string> ServerHandle::list_agents() const {
  std::vector<std::string> names;
  for (const auto& a : info().agents) names.push_back(a.name);
  return names;
}

void ServerHandle::delete_agent(const std::string& name) const {
  ask_server(*link_, wire::Kind::Delete, {Msg().set_name(name)});
}

void ServerHandle::delete_all() const { ask_server(*link_, wire::Kind::DeleteAll, {}); }

pid_t ServerHandle::pid() const {
  link_->wait_ready(Clock::now() + std::chrono::seconds(10));
  return link_->pid();
}

int ServerHandle::port() const {
  link_->wait_ready(Clock::now() + std::chrono::seconds(10));
  return link_->port();
}

RpcAgentServerLauncher::RpcAgentServerLauncher(std::string agent_class, Kwargs agent_kwargs,
                                               std::string host, int port, bool local_mode)
    : agent_class_(std::move(agent_class)),
      agent_kwargs_(std::move(agent_kwargs)),
      host_(std::move(host)),
      port_(port),
      local_mode_(local_mode) {}

RpcAgentServerLauncher::RpcAgentServerLauncher(RpcAgentServerLauncher&& other) noexcept
    : agent_class_(std::move(other.agent_class_)),
      agent_kwargs_(std::move(other.agent_kwargs_)),
      host_(std::move(other.host_)),
      port_(other.port_),
      local_mode_(other.local_mode_),
      link_(std::move(other.link_)) {}

RpcAgentServerLauncher& RpcAgentServerLauncher::operator=(RpcAgentServerLauncher&& other) noexcept {
  if (this == &other) return *this;
  try {
    shutdown();
  } catch (...) {
  }
  agent_class_ = std::move(other.agent_class_);
  agent_kwargs_ = std::move(other.agent_kwargs_);
  host_ = std::move(other.host_);
  port_ = other.port_;
  local_mode_ = other.local_mode_;
  link_ = std::move(other.link_);
  return *this;
}

RpcAgentServerLauncher::~RpcAgentServerLauncher() {
  try {
    shutdown();
  } catch (...) {
  }
}

void RpcAgentServerLauncher::launch() {
  if (link_) throw Error("RpcAgentServerLauncher::launch: already launched");
  check_options({.host = host_, .port = port_, .local_mode = local_mode_});
  nlohmann::json pinned;
  if (!agent_class_.empty()) {
    if (!detail::AgentRegistry::instance().contains(agent_class_)) {
      // Fails the same way the server would, but here, before a process starts.
      detail::AgentRegistry::instance().create(agent_class_, "", Kwargs::object());
    }
    Kwargs kwargs = agent_kwargs_.is_null() ? Kwargs::object() : agent_kwargs_;
    if (!kwargs.is_object()) {
      throw Error(std::string("RpcAgentServerLauncher: agent_kwargs must be a JSON object, not ") +
                  kwargs.type_name());
    }
    const Kwargs::const_iterator name = kwargs.find("name");
    if (name != kwargs.end() && !name->is_string()) {
      throw Error("RpcAgentServerLauncher: agent_kwargs[\"name\"] must be a string");
    }
    pinned = {{"class", agent_class_},
              {"name", name != kwargs.end() ? name->get<std::string>() : agent_class_},
              {"kwargs", kwargs}};
    try {
      (void)pinned.dump();
    } catch (const std::exception& e) {
      throw Error(std::string("RpcAgentServerLauncher: agent_kwargs cannot travel as JSON text: ") +
                  e.what());
    }
  }
  auto& runtime = detail::Runtime::require("RpcAgentServerLauncher::launch");
  link_ = runtime.launch({.host = host_, .port = port_, .lazy_launch = false}, pinned);
  try {
    link_->wait_ready(Clock::now() + std::chrono::seconds(10));
  } catch (...) {
    shutdown();  // a server that did not start in time must not live on unseen
    throw;
  }
  port_ = link_->port();
}

void RpcAgentServerLauncher::wait_until_terminate() {
  if (!link_) throw Error("RpcAgentServerLauncher::wait_until_terminate: not launched");
  detail::Runtime::require("wait_until_terminate").wait_exit(link_->pid());
}

void RpcAgentServerLauncher::shutdown() {
  if (!link_) return;
  auto link = std::move(link_);
  link->unbind_agent();
  // Agents of this program attached to the server share this link: their calls fail saying why.
  link->mark_dead("its server was shut down by its launcher");
  const pid_t pid = link->pid();
  auto* runtime = detail::Runtime::get();
  const bool watched = runtime != nullptr && !runtime->shutting_down();
  // Not a server that has ended already: its pid may be another process's by now.
  if (pid <= 0 || (watched && runtime->wait_exit(pid, std::chrono::nanoseconds(0)))) return;
  // Attached clients would keep the server alive: a launcher's shutdown ends it for them too.
  ::kill(pid, SIGTERM);
  if (!watched) return;
  // A server stuck in a reply() does not hold the launcher's owner forever.
  if (!runtime->wait_exit(pid, kLauncherStopGrace)) {
    ::kill(pid, SIGKILL);
    runtime->wait_exit(pid, kLauncherStopGrace);
  }
}

pid_t RpcAgentServerLauncher::pid() const noexcept { return link_ ? link_->pid() : 0; }

ServerHandle RpcAgentServerLauncher::server() const {
  if (!link_) throw Error("RpcAgentServerLauncher::server: not launched");
  return ServerHandle(link_);
}

}  // namespace troupe
