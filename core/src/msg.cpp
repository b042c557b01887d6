#include "troupe/core/msg.hpp"

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <random>

#include "troupe/core/channel.hpp"
#include "troupe/core/detail/result_state.hpp"

namespace troupe {

namespace {
// Bumped in every forked child, so that a child reseeds instead of repeating its parent's ids.
std::atomic<unsigned> g_fork_generation{1};
const bool g_atfork_registered = [] {
  pthread_atfork(nullptr, nullptr,
                 [] { g_fork_generation.fetch_add(1, std::memory_order_relaxed); });
  return true;
}();
}  // namespace

std::string new_msg_id() {
  // 90 bits in 15 characters, so that an id fits std::string's inline buffer: a message costs
  // no allocation for its id (a 32-digit hex id cost a malloc and a free per message, three
  // per remote call). The bits: a random 64-bit prefix, drawn from the OS per thread (again
  // after a fork, and after every 2^26 ids), and a 26-bit counter under it. Ids differ unless
  // two draws of 64 random bits meet (about n^2 / 2^65 for n draws).
  static constexpr std::uint64_t kCounterSpan = std::uint64_t{1} << 26;
  thread_local std::uint64_t prefix = 0;
  thread_local std::uint64_t counter = kCounterSpan;  // spent: the first id draws a prefix
  thread_local unsigned seeded_generation = 0;
  if (unsigned generation = g_fork_generation.load(std::memory_order_relaxed);
      generation != seeded_generation || counter == kCounterSpan) {
    std::random_device os;
    prefix = std::uint64_t{os()} << 32 | os();
    counter = 0;
    seeded_generation = generation;
  }
  // The counter is mixed by an odd multiplier (a bijection modulo 2^26) so that consecutive
  // ids do not look alike.
  const std::uint64_t mixed = (counter++ * 0x9E3779B1u) & (kCounterSpan - 1);
  // URL- and file-name-safe digits of six bits: ten hold 60 bits of the prefix, the eleventh
  // its last 4 and the counter's top 2, the last four the counter's low 24.
  static constexpr char kDigits[] =
      "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_";
  std::string id(kMsgIdLength, '0');
  std::uint64_t low = prefix;
  for (std::size_t i = 0; i < 10; ++i, low >>= 6) id[i] = kDigits[low & 63];
  // 4 bits of the prefix left, with the counter's top 2 bits above them.
  id[10] = kDigits[(low & 15) | (mixed >> 24) << 4];
  for (std::size_t i = 11; i < kMsgIdLength; ++i) id[i] = kDigits[(mixed >> (6 * (i - 11))) & 63];
  return id;
}

Msg::Msg(std::string name, std::string content, std::string role) {
  fields_.id = new_msg_id();
  fields_.name = std::move(name);
  fields_.role = std::move(role);
  fields_.content = std::move(content);
  fields_.timestamp_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
}

// The settled value may be a placeholder itself (a local reply() may return one): its fields.
const Msg::Fields& Msg::settled_fields() const { return state_->value().fields(); }

void Msg::materialize() {
  if (state_) {
    fields_ = state_->value().fields();
    state_.reset();
  }
}

bool Msg::empty() const { return fields() == Fields{}; }

bool Msg::same_content_as(const Msg& other) const {
  const Fields& a = fields();
  const Fields& b = other.fields();
  return a.name == b.name && a.role == b.role && a.content == b.content && a.url == b.url &&
         a.metadata == b.metadata && a.payload == b.payload;
}

bool operator==(const Msg& a, const Msg& b) { return a.fields() == b.fields(); }

bool Msg::ready() const noexcept { return !state_ || state_->settled_or_expired(); }

bool Msg::wait_for(std::chrono::nanoseconds timeout) const {
  if (ready()) return true;
  const Deadline deadline = deadline_after(timeout);
  return state_->wait_until(deadline);
}

std::exception_ptr Msg::error() const { return state_ ? state_->error() : nullptr; }

std::string Msg::error_message() const {
  if (std::exception_ptr e = error()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      return ex.what();
    } catch (...) {
      return "unknown error";
    }
  }
  return {};
}

Msg Msg::resolved() const { return state_ ? state_->value().resolved() : *this; }

Msg Msg::placeholder(std::shared_ptr<detail::ResultState> state) {
  Msg m;
  m.state_ = std::move(state);
  return m;
}

bool wait_all(const std::vector<Msg>& msgs, std::chrono::nanoseconds timeout) {
  const Deadline deadline = deadline_after(timeout);
  for (const Msg& m : msgs) {
    if (!m.ready() && !m.state()->wait_until(deadline)) return false;
  }
  return true;
}

int wait_any(const std::vector<Msg>& msgs, std::chrono::nanoseconds timeout) {
  const Deadline deadline = deadline_after(timeout);
  // Its slices are too short to start a rescuer each (see ResultState::wait_until): a lane
  // body that waits here long gets one for the whole wait.
  const Deadline rescue_at = deadline_after(detail::kWaitBeforeRescue);
  std::shared_ptr<void> rescuer;
  for (;;) {
    for (std::size_t i = 0; i < msgs.size(); ++i) {
      if (msgs[i].ready()) return static_cast<int>(i);
    }
    if (msgs.empty() || Clock::now() >= deadline) return -1;
    if (!rescuer && Clock::now() >= rescue_at) {
      if (detail::RescueStarter start = detail::thread_rescue_starter()) rescuer = start();
    }
    // Drive the first pending one for a short slice, then look at all again.
    for (const Msg& m : msgs) {
      if (!m.ready()) {
        m.state()->wait_until(std::min(deadline, Clock::now() + std::chrono::microseconds(200)));
        break;
      }
    }
  }
}

}  // namespace troupe
