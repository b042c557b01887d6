#pragma once
// A server that another program started (support/foreign_server_program.cpp): this program
// attaches to it by port, so its death reaches this program only through the channel (no exit
// notice from its own fork server). Needs TROUPE_FOREIGN_SERVER_PROGRAM (tests/CMakeLists.txt).
#include <signal.h>

#include <sstream>
#include <stdexcept>
#include <string>

#include "support/started_program.hpp"
#include "troupe/core/child_process.hpp"

namespace troupe::test {

struct ForeignServer {
  int port = 0;
  pid_t server_pid = 0;
  ChildProcess program;

  ForeignServer() : program(start(port, server_pid)) {}
  static ChildProcess start(int& port, pid_t& server_pid) {
    StartedProgram program = start_program(TROUPE_FOREIGN_SERVER_PROGRAM);
    std::istringstream words(program.first_line);
    std::string ready;
    words >> ready >> port >> server_pid;
    if (ready != "ready") {
      throw std::runtime_error("the server program said: " + program.first_line);
    }
    return std::move(program.process);
  }
  ~ForeignServer() {
    program.kill(SIGTERM);
    program.wait();
  }
};

}  // namespace troupe::test
