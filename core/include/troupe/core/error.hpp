#pragma once
// Troupe's errors. Inside the transports, hot paths return std::error_code with a troupe::Errc
// value (a full or empty ring is not an error: try_* return bool/optional). At the user API,
// failures are exceptions from one small hierarchy rooted at troupe::Error.
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace troupe {

/// Error conditions a transport or the runtime reports as values.
enum class Errc : int {
  kTimeout = 1,      ///< a deadline passed before the operation completed
  kPeerDead,         ///< the process at the other end died or vanished
  kClosed,           ///< the channel was closed (by this side or cleanly by the peer)
  kMessageTooLarge,  ///< a frame exceeds the documented size limit
  kMalformedFrame,   ///< inbound bytes failed verification (dropped, counted)
  kLayoutMismatch,   ///< a shared-memory segment's header does not match this build
  kNoSpace,          ///< /dev/shm (or memory) cannot hold the segment
  kInvalidArgument,  ///< an argument out of its accepted range
};

const std::error_category& troupe_category() noexcept;
inline std::error_code make_error_code(Errc e) noexcept {
  return {static_cast<int>(e), troupe_category()};
}

/// Base of every exception Troupe throws at its API.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
/// A peer sent bytes that are not a valid frame, or a segment has the wrong layout.
class ProtocolError : public Error {
 public:
  using Error::Error;
};
/// A deadline passed.
class Timeout : public Error {
 public:
  using Error::Error;
};
/// The process (or connection) serving an agent died; the text names the exit status or signal.
class AgentDied : public Error {
 public:
  using Error::Error;
};
/// An exception thrown by a remote reply(); the text names the agent, its class and the message.
class RemoteError : public Error {
 public:
  using Error::Error;
};
/// A server refused a call or request without running reply() or observe(): the agent was
/// deleted, is not bound there, or could not be created (a class the server lacks, kwargs that
/// are not JSON or that its constructor rejected, a name taken by another class); the text
/// says which. (A launcher whose own agent cannot be created throws troupe::Error: the server
/// failed to start.)
class Refused : public Error {
 public:
  using Error::Error;
};

/// Throws the exception type that matches `ec` (Timeout, AgentDied, ProtocolError, or Error),
/// its text "<context>: <ec.message()>".
[[noreturn]] void throw_error(std::error_code ec, std::string_view context);

/// Wraps errno of a failed system call: "<call>(<args>): <strerror>".
std::system_error system_error(int errnum, std::string_view call_and_args);

}  // namespace troupe

template <>
struct std::is_error_code_enum<troupe::Errc> : std::true_type {};
