// Local ports: the rendezvous that lets a client on this host hand a server its channel.
#include "troupe/shm/local_transport.hpp"

#include <gtest/gtest.h>

#include <thread>

#include "troupe/core/error.hpp"

namespace troupe::shm {
namespace {

using namespace std::chrono_literals;

TEST(LocalTransportTest, PicksAPortAndAcceptsClients) {
  LocalTransport transport;
  auto listener = transport.listen("localhost", 0);
  ASSERT_GE(listener->port(), 20000);
  std::unique_ptr<Channel> accepted;
  std::thread server([&] { accepted = listener->accept(Clock::now() + 5s); });
  auto client = transport.connect("localhost", listener->port());
  server.join();
  ASSERT_TRUE(accepted);
  std::array<std::byte, 8> hello{};
  ASSERT_FALSE(client->send(hello, Clock::now() + 1s));
  std::error_code ec;
  EXPECT_EQ(accepted->poll([](FrameBytes f) { EXPECT_EQ(f.size(), 8u); }, 1, Clock::now() + 1s, ec),
            1u);
}

TEST(LocalTransportTest, APortInUseIsAClearError) {
  LocalTransport transport;
  auto first = transport.listen("localhost", 0);
  try {
    transport.listen("localhost", first->port());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("in use"), std::string::npos) << e.what();
  }
}

TEST(LocalTransportTest, ConnectWithoutAServerIsAClearError) {
  LocalTransport transport;
  EXPECT_THROW(transport.connect("localhost", 3), Error);
}

TEST(LocalTransportTest, OtherHostsAreRefused) {
  LocalTransport transport;
  EXPECT_THROW(transport.connect("192.0.2.1", 3), Error);
  EXPECT_THROW(transport.listen("192.0.2.1", 0), Error);
}

TEST(LocalTransportTest, BadPortIsRefused) {
  LocalTransport transport;
  EXPECT_THROW(transport.listen("localhost", 70000), Error);
}

TEST(LocalTransportTest, AcceptTimesOutAndCloseRemovesTheRendezvous) {
  LocalTransport transport;
  auto listener = transport.listen("localhost", 0);
  const int port = listener->port();
  EXPECT_EQ(listener->accept(Clock::now() + 20ms), nullptr);
  listener->close();
  EXPECT_THROW(transport.connect("localhost", port), Error);
}

}  // namespace
}  // namespace troupe::shm
