#pragma once
// What a call on an agent takes and gives besides its messages, wherever the agent runs:
// CallOptions, and the ObserveHandle that tell() and observe() return.
#include <chrono>
#include <exception>
#include <memory>
#include <string>

namespace troupe {

namespace detail {
class ResultState;
}

struct CallOptions {
  /// This call's deadline (0: the agent's own timeout, if any).
  std::chrono::nanoseconds timeout{0};
};

/// The handle an observation returns: ignore it, or ask whether the observation failed.
class ObserveHandle {
 public:
  ObserveHandle() = default;
  explicit ObserveHandle(std::shared_ptr<detail::ResultState> state) : state_(std::move(state)) {}
  /// A handle that also reports a failure nobody asks about (on stderr, naming `who`).
  static ObserveHandle reporting(std::shared_ptr<detail::ResultState> state, std::string who);

  bool ready() const noexcept;
  bool wait_for(std::chrono::nanoseconds timeout) const;
  /// The failure, or nullptr once it succeeded; waits.
  std::exception_ptr error() const;
  /// Waits; throws the failure if any.
  void get() const;

 private:
  std::shared_ptr<detail::ResultState> state_;
};

}  // namespace troupe
