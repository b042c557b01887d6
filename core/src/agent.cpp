#include "troupe/core/agent.hpp"

#include "troupe/core/channel.hpp"
#include "troupe/core/detail/agent_lane.hpp"
#include "troupe/core/detail/runtime.hpp"
#include "troupe/core/error.hpp"

namespace troupe {

AgentBase::AgentBase(std::string name, Kwargs kwargs)
    : name_(std::move(name)),
      kwargs_(kwargs.is_null() ? Kwargs::object() : std::move(kwargs)),
      lane_(std::make_shared<detail::AgentLane>()) {}

AgentBase::~AgentBase() {
  // Deferred calls would run reply() on this object, whose derived part is already gone: the
  // ones that have not started fail now, with a clear error, and never run; one that runs on
  // another thread is waited for. (Its inputs resolving while the derived destructor runs is
  // the user's race, as with any object destroyed while in use: keep an in-process agent alive
  // until its deferred results are in.)
  lane_->close("agent '" + name_ + "' was destroyed before this call could run");
}

std::string AgentBase::class_name() const {
  return detail::AgentRegistry::instance().name_of(typeid(*this));
}

Msg AgentBase::reply(const Msg& /*x*/) {
  throw Error("agent '" + name_ + "' does not implement reply()");
}

Msg AgentBase::reply(const std::vector<Msg>& xs) {
  if (xs.empty()) return reply(Msg());
  if (xs.size() == 1) return reply(xs.front());
  throw Error("agent '" + name_ + "' was called with " + std::to_string(xs.size()) +
              " messages: override reply(const std::vector<Msg>&) to accept several");
}

void AgentBase::observe(const Msg& /*x*/) {}

Msg AgentBase::operator()(const Msg& x) { return (*this)(std::vector<Msg>{x}); }

Msg AgentBase::operator()(std::vector<Msg> xs) { return call(std::move(xs), {}); }

Msg AgentBase::call(std::vector<Msg> xs, const CallOptions& options) {
  auto result = enqueue(std::move(xs), /*observation=*/false, options.timeout);
  if (result->status() == detail::ResultState::kValue) return result->value();  // ran now
  return Msg::placeholder(std::move(result));
}

ObserveHandle AgentBase::tell(const Msg& x) {
  return ObserveHandle::reporting(enqueue({x}, /*observation=*/true, {}), describe());
}

std::string AgentBase::describe() const {
  return "agent '" + name_ + "' (class " + class_name() + ")";
}

std::shared_ptr<detail::ResultState> AgentBase::enqueue(std::vector<Msg> xs, bool observation,
                                                        std::chrono::nanoseconds timeout) {
  auto call = std::make_shared<detail::FunctionLaneCall>([this, lane = lane_,
                                                          observation](detail::LaneCall& c) {
    if (const std::string* why = lane->closed()) {
      c.result->fail(std::make_exception_ptr(Error(*why)));
      return;
    }
    // The same failures a distributed agent reports, so placement never changes results.
    try {
      if (observation) {
        observe(c.inputs.front());
        c.result->resolve(Msg());
      } else {
        c.result->resolve(reply(c.inputs));
      }
    } catch (const std::exception& e) {
      c.result->fail(std::make_exception_ptr(
          RemoteError(describe() + (observation ? " observe raised: " : " raised: ") + e.what())));
    } catch (...) {
      c.result->fail(std::make_exception_ptr(RemoteError(
          describe() + (observation ? " observe raised" : " raised a non-standard exception"))));
    }
  });
  call->inputs = std::move(xs);
  call->runs_user_code = true;  // a rescuer does not run it (agent_lane.cpp)
  // With the runtime as driver, a thread reading a deferred result pumps remote replies itself.
  call->result = detail::make_result_state(detail::Runtime::get());
  if (timeout.count() > 0) call->result->deadline = deadline_after(timeout);
  auto result = call->result;
  lane_->admit(std::move(call));
  return result;
}

}  // namespace troupe
