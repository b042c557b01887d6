#pragma once
// Troupe: everything a user includes. Link troupe::troupe.
//
//   int main(int argc, char** argv) {
//     troupe::init(argc, argv);                 // first, before any thread
//     auto a = Echo("A").to_dist();             // a forked child, shared-memory rings
//     troupe::Msg x = a(troupe::Msg("user", "hi"));
//   }
#include "troupe/core/agent.hpp"
#include "troupe/core/agent_server.hpp"
#include "troupe/core/channel.hpp"
#include "troupe/core/detail/runtime.hpp"
#include "troupe/core/dist_agent.hpp"
#include "troupe/core/error.hpp"
#include "troupe/core/msg.hpp"
#include "troupe/core/wire.hpp"
#include "troupe/shm/local_transport.hpp"

namespace troupe {

/// Starts Troupe's runtime: removes the shared-memory segments of dead runs, forks the
/// single-threaded fork server that starts agent servers, then starts the dispatcher (a oneTBB
/// arena with its worker threads, so that the first call that must wait returns at once; its
/// size and TBB's stack size are fixed from here on) and a background thread. Call it first
/// thing in main, before any thread exists, on the main thread. `options` sets the rings of
/// every local channel.
inline void init(int argc = 0, char** argv = nullptr, const shm::ShmChannelOptions& options = {}) {
  (void)argc;
  (void)argv;
  auto transport = std::make_unique<shm::LocalTransport>(options);
  transport->remove_stale();
  detail::Runtime::initialise(std::move(transport));
}

}  // namespace troupe
