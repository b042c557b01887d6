#pragma once
// The local-mode transport: servers on this host, reached through shared memory only.
//
// A local port is a name, not a socket: a server listening on port P owns the rendezvous
// segment "troupe.port.<P>" (rendezvous_layout.hpp), and a client connects by creating a
// ShmChannel and handing its name over there. Port 0 picks a free number in [20000, 60000).
// Local ports and TCP ports are separate namespaces.
#include <memory>
#include <string>

#include "troupe/core/transport.hpp"
#include "troupe/shm/shm_channel.hpp"

namespace troupe::shm {

/// The rendezvous segment name of local port `port`.
std::string rendezvous_name(int port);

class LocalTransport final : public Transport {
 public:
  explicit LocalTransport(ShmChannelOptions options = {}) : options_(options) {}
  std::unique_ptr<Listener> listen(const std::string& host, int port) override;
  std::unique_ptr<Channel> connect(const std::string& host, int port) override;
  std::pair<std::unique_ptr<Channel>, std::string> make_child_channel() override;
  std::unique_ptr<Channel> attach_child_channel(const std::string& token) override;
  void remove_stale() noexcept override;

 private:
  ShmChannelOptions options_;
};

}  // namespace troupe::shm
