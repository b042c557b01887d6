// A server started by another Troupe program, for tests that attach to it from theirs: its
// death reaches them only through the channel, never through their own fork server.
// Prints "ready <port> <server pid>", then serves until it is signalled.
#include <unistd.h>

#include <cstdio>
#include <troupe/troupe.hpp>

#include "support/test_agents.hpp"

int main(int argc, char** argv) {
  troupe::init(argc, argv);
  troupe::RpcAgentServerLauncher launcher;
  launcher.launch();
  std::printf("ready %d %d\n", launcher.port(), launcher.pid());
  std::fflush(stdout);
  for (;;) ::pause();
}
