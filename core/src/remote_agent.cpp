#include "troupe/core/detail/remote_agent.hpp"

#include "troupe/core/detail/runtime.hpp"
#include "troupe/core/error.hpp"

namespace troupe::detail {
namespace {

constexpr auto kStartTimeout = std::chrono::seconds(10);

}  // namespace

// A call that waits for its inputs or its turn, then sends: the agent and the kind travel in
// the call's own allocation (a std::function holding them took one more).
struct RemoteAgent::SendWhenReady final : LaneCall {
  SendWhenReady(std::shared_ptr<RemoteAgent> to, wire::Kind call_kind)
      : agent(std::move(to)), kind(call_kind) {}
  void run() override { agent->send(kind, inputs, result); }
  // Every call holds the agent until it ran, or until its inputs settle if it was abandoned
  // (timed out) before: its inputs' continuations hold the call.
  std::shared_ptr<RemoteAgent> agent;
  wire::Kind kind;
};

RemoteAgent::RemoteAgent(std::string name, std::string class_name, std::string kwargs_json,
                         DistOptions options)
    : name_(std::move(name)),
      class_name_(std::move(class_name)),
      description_(
          std::make_shared<const std::string>("agent '" + name_ + "' (class " + class_name_ + ")")),
      kwargs_json_(std::move(kwargs_json)),
      options_(std::move(options)) {}

RemoteAgent::~RemoteAgent() {
  // Every call holds this object until it ran (an abandoned one, until its inputs settled):
  // the lane is empty, the Release follows them.
  if (!released_.exchange(true)) release_on_link();
}

void RemoteAgent::release_on_link() {
  ServerLink* placed = placed_.load(std::memory_order_acquire);
  if (placed == nullptr) return;
  Runtime* runtime = Runtime::get();
  if (runtime == nullptr || runtime->shutting_down()) return;
  placed->request(wire::Kind::Release, agent_id_, {}, nullptr, who());
  placed->unbind_agent();
}

void RemoteAgent::ensure_placed() {
  if (placed_.load(std::memory_order_acquire) != nullptr) return;
  std::lock_guard lock(place_mutex_);
  if (place_error_) std::rethrow_exception(place_error_);
  if (link_) return;
  std::shared_ptr<ServerLink> link;
  try {
    Runtime& runtime = Runtime::require("to_dist");
    link = options_.launch_server ? runtime.launch(options_, nullptr)
                                  : runtime.connect(options_.host, options_.port);
    if (options_.launch_server && !options_.lazy_launch)
      link->wait_ready(Clock::now() + kStartTimeout);
    agent_id_ = link->new_agent_id();
    // Created (or attached to, by name) in the server; a failure there fails later calls.
    std::vector<Msg> description{
        Msg().set_name(name_).set_content(class_name_).set_metadata(kwargs_json_)};
    link->request(wire::Kind::Create, agent_id_, description, make_result_state(Runtime::get()),
                  who());
    // Handles of one server agent (by name) share its lane: one agent, one program order.
    lane_ = link->lane_for(name_, who());
    link_ = std::move(link);
    placed_.store(link_.get(), std::memory_order_release);
  } catch (...) {
    // Unbound, the link retires: a server launched for this agent then ends.
    if (link && !link_) link->unbind_agent();
    place_error_ = std::current_exception();
    throw;
  }
}

std::shared_ptr<ServerLink> RemoteAgent::link() {
  ensure_placed();
  std::lock_guard lock(place_mutex_);
  return link_;
}

std::shared_ptr<ResultState> RemoteAgent::call(std::span<const Msg> inputs, wire::Kind kind,
                                               std::chrono::nanoseconds timeout,
                                               std::vector<Msg>* movable) {
  Runtime* runtime = Runtime::get();
  auto state = make_result_state(runtime);
  if (shut_down_.load(std::memory_order_acquire)) {
    state->fail(std::make_exception_ptr(Error(describe() + " was shut down")));
    return state;
  }
  try {
    ensure_placed();
  } catch (...) {
    state->fail(std::current_exception());
    return state;
  }
  if (timeout.count() <= 0) timeout = options_.timeout;
  if (timeout.count() > 0) state->deadline = deadline_after(timeout);
  runtime->note_call();
  if (!lane_->run_if_direct(inputs, state, [&] { send(kind, inputs, state); })) {
    auto lane_call = std::make_shared<SendWhenReady>(shared_from_this(), kind);
    lane_call->inputs =
        movable != nullptr ? std::move(*movable) : std::vector<Msg>(inputs.begin(), inputs.end());
    lane_call->result = state;
    lane_->admit(std::move(lane_call));
  }
  // Here, outside the lane's lock (a graph call may run inside admit()): delivering replies
  // runs their continuations.
  runtime->deliver_replies_now_and_then();
  return state;
}

void RemoteAgent::send(wire::Kind kind, std::span<const Msg> inputs, const ResultPtr& result) {
  ServerLink* link = placed_.load(std::memory_order_acquire);
  link->request(kind, agent_id_, inputs, result, who());
}

void RemoteAgent::shutdown() {
  if (shut_down_.exchange(true)) return;
  if (placed_.load(std::memory_order_acquire) == nullptr) return;
  // Released in order, after the calls admitted before this.
  auto release = std::make_shared<FunctionLaneCall>([self = shared_from_this()](LaneCall& c) {
    if (!self->released_.exchange(true)) self->release_on_link();
    c.result->resolve(Msg());
  });
  release->result = make_result_state();
  lane_->admit(std::move(release));
}

}  // namespace troupe::detail
