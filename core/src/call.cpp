#include "troupe/core/call.hpp"

#include <cstdio>

#include "troupe/core/channel.hpp"
#include "troupe/core/detail/result_state.hpp"

namespace troupe {

ObserveHandle ObserveHandle::reporting(std::shared_ptr<detail::ResultState> state,
                                       std::string who) {
  std::weak_ptr<detail::ResultState> weak = state;
  state->on_settled([weak, who = std::move(who)] {
    if (auto s = weak.lock(); s && s->status() == detail::ResultState::kFailed) {
      try {
        std::rethrow_exception(s->error());
      } catch (const std::exception& e) {
        std::fprintf(stderr, "troupe: observe on %s failed: %s\n", who.c_str(), e.what());
      } catch (...) {
        std::fprintf(stderr, "troupe: observe on %s failed\n", who.c_str());
      }
    }
  });
  return ObserveHandle(std::move(state));
}

bool ObserveHandle::ready() const noexcept { return !state_ || state_->settled_or_expired(); }

bool ObserveHandle::wait_for(std::chrono::nanoseconds timeout) const {
  return !state_ || state_->wait_until(deadline_after(timeout));
}

std::exception_ptr ObserveHandle::error() const { return state_ ? state_->error() : nullptr; }

void ObserveHandle::get() const {
  if (auto e = error()) std::rethrow_exception(e);
}

}  // namespace troupe
