// An agent class that troupe-agent-server loads from a shared library (a module built from this
// file); agent_server_program_test has the same class compiled in, as a client placing it needs.
// Its replies name the process they ran in, so a test sees where it ran.
#include <unistd.h>

#include <string>
#include <troupe/troupe.hpp>

namespace {

class Plugged : public troupe::AgentBase {
 public:
  using AgentBase::AgentBase;
  troupe::Msg reply(const troupe::Msg& x) override {
    ++calls_;
    return troupe::Msg(name(), "plugged " + std::to_string(calls_) + " in " +
                                   std::to_string(::getpid()) + ": " + x.content());
  }

 private:
  int calls_ = 0;
};
TROUPE_REGISTER_AGENT(Plugged);

}  // namespace
