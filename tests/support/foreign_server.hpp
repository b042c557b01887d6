#pragma once
// A server that another program started (support/foreign_server_program.cpp, or
// troupe-agent-server): this program attaches to it by port, so its death reaches this program
// only through the channel (no exit notice from its own fork server). The program prints
// "ready <port> <server pid>" first; it is stopped with SIGTERM at the end.
#include <signal.h>

#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/started_program.hpp"
#include "troupe/core/child_process.hpp"

namespace troupe::test {

struct ForeignServer {
  int port = 0;
  pid_t server_pid = 0;
  ChildProcess program;

  explicit ForeignServer(const char* path, std::vector<std::string> args = {})
      : program(start(path, std::move(args), port, server_pid)) {}
  static ChildProcess start(const char* path, std::vector<std::string> args, int& port,
                            pid_t& server_pid) {
    StartedProgram program = start_program(path, std::move(args));
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
