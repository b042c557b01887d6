// troupe-agent-server: an agent server started from the command line (AgentScope's
// RpcAgentServerLauncher run as a program). It loads agent classes from the shared libraries it
// is given (their TROUPE_REGISTER_AGENT lines register them as the library loads), launches a
// server on this host, prints "ready <port> <server pid>", and serves until it is stopped
// (Ctrl-C, SIGTERM: the server follows this program) or the server ends.
//
//   troupe-agent-server --load build/libmy_agents.so [--load ...] [--port 12001]
//                       [--agent-class Speaker --kwargs '{"name": "Alice"}']
//
// Programs on this host reach its agents with to_dist({.port = <port>, .launch_server = false}).
// (A program that loads agent libraries itself must do so before troupe::init(), for the same
// reason as this one: see main.)
// A library links troupe::troupe like any Troupe program; this executable exports its own Troupe
// symbols, and the library's references resolve to them, so its classes land in the one
// registry the server creates agents from.
#include <dlfcn.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <troupe/troupe.hpp>
#include <vector>

int main(int argc, char** argv) {
  CLI::App app{"Troupe agent server: serves agents of the classes in the given libraries"};
  std::vector<std::string> libraries;
  int port = 0;
  std::string host = "localhost";
  std::string agent_class;
  std::string kwargs_text = "{}";
  app.add_option("--load", libraries, "shared library with agent classes (repeatable)");
  app.add_option("--port", port, "port to serve on (0: a free one)")->check(CLI::Range(0, 65535));
  app.add_option("--host", host, "host to serve on (this host only, for now)");
  app.add_option("--agent-class", agent_class, "create an agent of this class at launch");
  app.add_option("--kwargs", kwargs_text, "its kwargs, a JSON object (\"name\" names it)")
      ->needs(app.get_option("--agent-class"));
  CLI11_PARSE(app, argc, argv);

  auto& registry = troupe::detail::AgentRegistry::instance();
  for (const std::string& library : libraries) {
    const std::size_t before = registry.class_names().size();
    if (::dlopen(library.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
      std::fprintf(stderr, "troupe-agent-server: cannot load %s: %s\n", library.c_str(),
                   ::dlerror());
      return 2;
    }
    // Its classes register into this program's registry only if the library binds to this
    // program's Troupe symbols: not when built with hidden visibility, -Bsymbolic or the like.
    // A library of helpers (or one loaded already) adds none legitimately: a note, not an error.
    if (registry.class_names().size() == before) {
      std::fprintf(stderr,
                   "troupe-agent-server: note: %s added no agent class (if it has "
                   "TROUPE_REGISTER_AGENT lines, it was built so that its symbols bind to its "
                   "own copy of Troupe: hidden visibility, -Bsymbolic)\n",
                   library.c_str());
    }
  }
  // After the libraries: the fork server that init() starts is a copy of this process as it is
  // then, and every agent server a copy of it, so the classes must be loaded already.
  troupe::init(argc, argv);
  try {
    troupe::Kwargs kwargs = troupe::Kwargs::parse(kwargs_text);
    troupe::RpcAgentServerLauncher launcher(agent_class, std::move(kwargs), host, port);
    launcher.launch();
    std::printf("ready %d %d\n", launcher.port(), launcher.pid());
    std::fflush(stdout);
    launcher.wait_until_terminate();
    std::fprintf(stderr, "troupe-agent-server: the server (pid %d) ended\n", launcher.pid());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "troupe-agent-server: %s\n", e.what());
    return 1;
  }
}
