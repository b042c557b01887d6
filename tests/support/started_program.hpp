#pragma once
// A program a test starts and talks to through its first line of output ("ready ...").
#include <unistd.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "troupe/core/child_process.hpp"

namespace troupe::test {

struct StartedProgram {
  ChildProcess process;
  std::string first_line;  ///< what it printed first, without the newline
};

/// Runs `path` with `args` in a process group of its own, as a shell gives a job, and reads
/// its first line of output (stderr stays the test's).
inline StartedProgram start_program(const char* path, std::vector<std::string> args = {}) {
  std::vector<char*> argv{const_cast<char*>(path)};
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  int out[2];
  if (::pipe(out) != 0) throw std::runtime_error("pipe");
  auto process = ChildProcess::fork([&] {
    ::setpgid(0, 0);
    ::dup2(out[1], STDOUT_FILENO);
    ::close(out[0]);
    ::execv(path, argv.data());
    return 127;
  });
  ::close(out[1]);
  std::string line;
  char c;
  while (::read(out[0], &c, 1) == 1 && c != '\n') line += c;
  ::close(out[0]);
  return {std::move(process), std::move(line)};
}

}  // namespace troupe::test
