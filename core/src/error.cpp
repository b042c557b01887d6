#include "troupe/core/error.hpp"

namespace troupe {
namespace {

class TroupeCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "troupe"; }
  std::string message(int ev) const override {
    switch (static_cast<Errc>(ev)) {
      case Errc::kTimeout:
        return "timed out";
      case Errc::kPeerDead:
        return "peer process died";
      case Errc::kClosed:
        return "channel closed";
      case Errc::kMessageTooLarge:
        return "message larger than the size limit";
      case Errc::kMalformedFrame:
        return "malformed frame";
      case Errc::kLayoutMismatch:
        return "shared-memory layout mismatch";
      case Errc::kNoSpace:
        return "no space left for the shared-memory segment";
      case Errc::kInvalidArgument:
        return "invalid argument";
    }
    return "unknown troupe error " + std::to_string(ev);
  }
};

}  // namespace

const std::error_category& troupe_category() noexcept {
  static const TroupeCategory category;
  return category;
}

void throw_error(std::error_code ec, std::string_view context) {
  std::string text = std::string(context) + ": " + ec.message();
  if (ec == Errc::kTimeout) throw Timeout(text);
  if (ec == Errc::kPeerDead) throw AgentDied(text);
  if (ec == Errc::kMalformedFrame || ec == Errc::kLayoutMismatch) throw ProtocolError(text);
  throw Error(text);
}

std::system_error system_error(int errnum, std::string_view call_and_args) {
  return std::system_error(errnum, std::generic_category(), std::string(call_and_args));
}

}  // namespace troupe
