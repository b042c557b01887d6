#pragma once
// How core reaches servers without knowing a transport: the shared-memory transport (and later
// TCP) implements these, and troupe::init installs them.
#include <sys/types.h>

#include <memory>
#include <string>
#include <utility>

#include "troupe/core/channel.hpp"

namespace troupe {

/// A server's end of "host:port": hands out a channel per client that connects.
class Listener {
 public:
  virtual ~Listener() = default;
  /// The port clients use (the one picked when listening on port 0).
  virtual int port() const noexcept = 0;
  /// The next client's channel, or nullptr if none connected before `deadline` or after close().
  virtual std::unique_ptr<Channel> accept(Deadline deadline) = 0;
  /// Stops accepting; ends a waiting accept(). Idempotent; also removes the rendezvous.
  virtual void close() noexcept = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;
  /// Listens on host:port; port 0 picks a free one. Throws troupe::Error naming the port when
  /// it is in use.
  virtual std::unique_ptr<Listener> listen(const std::string& host, int port) = 0;
  /// A channel to the server at host:port. Throws troupe::Error when there is none.
  virtual std::unique_ptr<Channel> connect(const std::string& host, int port) = 0;
  /// A channel whose other end a child forked next will attach with `token`: returns this
  /// process's end and the token.
  virtual std::pair<std::unique_ptr<Channel>, std::string> make_child_channel() = 0;
  /// In the child: the other end of make_child_channel().
  virtual std::unique_ptr<Channel> attach_child_channel(const std::string& token) = 0;
  /// Removes what dead processes left behind (shared-memory segments of crashed runs).
  virtual void remove_stale() noexcept {}
};

}  // namespace troupe
