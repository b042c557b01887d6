// AgentServer under bad input, driven through a raw channel: malformed frames, unknown agents
// and classes, bad kwargs, unexpected kinds. The server answers with errors and keeps serving.
#include "troupe/core/agent_server.hpp"

#include <gtest/gtest.h>

#include <thread>

#include "support/test_agents.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;

class AgentServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto [client, token] = transport_.make_child_channel();
    client_ = std::move(client);
    server_.add_channel(transport_.attach_child_channel(token), /*owner=*/true);
    thread_ = std::thread([this] { server_.run(); });
    expect_next(wire::Kind::Hello);
  }
  void TearDown() override {
    client_->close();
    thread_.join();
  }

  void send(const EnvelopeFields& fields) {
    ASSERT_FALSE(client_->send(builder_.build(fields), Clock::now() + 5s));
  }
  // The next frame from the server, decoded: kind, call id, error text, first message.
  struct Reply {
    wire::Kind kind;
    std::uint64_t call_id;
    std::string error;
    Msg msg;
  };
  Reply next() {
    std::optional<Reply> reply;
    std::error_code ec;
    const auto deadline = Clock::now() + 10s;
    while (!reply && Clock::now() < deadline) {
      client_->poll(
          [&](FrameBytes f) {
            std::error_code verify;
            const auto* env = verify_frame(f, verify);
            if (env == nullptr) return;
            Reply r{env->kind(), env->call_id(), env->error() ? env->error()->str() : "", {}};
            if (env->messages() && env->messages()->size() > 0)
              r.msg = from_wire(*env->messages()->Get(0));
            reply = r;
          },
          1, deadline, ec);
      if (ec) break;
    }
    if (!reply) throw Error("no reply from the server");
    return *reply;
  }
  Reply expect_next(wire::Kind kind) {
    Reply r = next();
    EXPECT_EQ(r.kind, kind) << r.error;
    return r;
  }
  void create(std::uint64_t id, const std::string& cls, const std::string& name,
              const std::string& kwargs = "{}") {
    std::vector<Msg> d{Msg().set_name(name).set_content(cls).set_metadata(kwargs)};
    send({.kind = wire::Kind::Create, .call_id = 1000 + id, .agent_id = id, .messages = d});
  }
  void call(std::uint64_t id, std::uint64_t call_id, const std::string& content) {
    std::vector<Msg> in{Msg("u", content)};
    send({.kind = wire::Kind::Call, .call_id = call_id, .agent_id = id, .messages = in});
  }

  shm::LocalTransport transport_;
  std::unique_ptr<Channel> client_;
  AgentServer server_{{.workers = 2}};
  std::thread thread_;
  FrameBuilder builder_;
};

TEST_F(AgentServerTest, CreatesAgentsAndAnswersCalls) {
  create(1, "Counter", "A");
  expect_next(wire::Kind::Result);
  call(1, 7, "x");
  Reply r = expect_next(wire::Kind::Result);
  EXPECT_EQ(r.call_id, 7u);
  EXPECT_EQ(r.msg.content(), "A:1:x");
}

TEST_F(AgentServerTest, MalformedFramesAreDroppedAndCounted) {
  std::vector<std::uint64_t> garbage(16, 0xdeadbeefcafef00dULL);
  ASSERT_FALSE(client_->send(std::as_bytes(std::span(garbage)), Clock::now() + 5s));
  create(1, "Counter", "A");
  expect_next(wire::Kind::Result);  // still serving
  call(1, 2, "x");
  EXPECT_EQ(expect_next(wire::Kind::Result).msg.content(), "A:1:x");
  EXPECT_EQ(server_.info().malformed_frames, 1u);
}

TEST_F(AgentServerTest, UnknownClassIsAnErrorNamingIt) {
  create(1, "NoSuchClass", "A");
  Reply r = expect_next(wire::Kind::Error);
  EXPECT_NE(r.error.find("unknown agent class 'NoSuchClass'"), std::string::npos) << r.error;
  call(1, 2, "x");  // calls on it say why
  Reply later = expect_next(wire::Kind::Error);
  EXPECT_NE(later.error.find("NoSuchClass"), std::string::npos) << later.error;
}

TEST_F(AgentServerTest, BadKwargsJsonIsAnError) {
  create(1, "Counter", "A", "{not json");
  Reply r = expect_next(wire::Kind::Error);
  EXPECT_NE(r.error.find("bad kwargs JSON"), std::string::npos) << r.error;
}

TEST_F(AgentServerTest, ConstructorRefusingKwargsIsAnError) {
  create(1, "Picky", "P", R"({"colour":"red"})");
  Reply r = expect_next(wire::Kind::Error);
  EXPECT_NE(r.error.find("Picky needs kwargs.level"), std::string::npos) << r.error;
}

TEST_F(AgentServerTest, SameNameWithAnotherClassIsRefused) {
  create(1, "Counter", "A");
  expect_next(wire::Kind::Result);
  create(2, "Faulty", "A");
  Reply r = expect_next(wire::Kind::Error);
  EXPECT_NE(r.error.find("as class Counter, not Faulty"), std::string::npos) << r.error;
}

TEST_F(AgentServerTest, UnknownAgentIdAndUnexpectedKind) {
  call(42, 5, "x");
  Reply r = expect_next(wire::Kind::Error);
  EXPECT_EQ(r.call_id, 5u);
  EXPECT_NE(r.error.find("no agent is bound to id 42"), std::string::npos) << r.error;
  send({.kind = wire::Kind::Result, .call_id = 6});
  EXPECT_EQ(expect_next(wire::Kind::Error).call_id, 6u);
}

TEST_F(AgentServerTest, InfoReportsAgentsAndQueues) {
  create(1, "Counter", "A");
  expect_next(wire::Kind::Result);
  send({.kind = wire::Kind::Info, .call_id = 3});
  Reply r = expect_next(wire::Kind::Result);
  auto info = nlohmann::json::parse(r.msg.metadata());
  EXPECT_EQ(info["pid"], ::getpid());
  ASSERT_EQ(info["agents"].size(), 1u);
  EXPECT_EQ(info["agents"][0]["name"], "A");
  EXPECT_EQ(info["agents"][0]["class"], "Counter");
}

TEST_F(AgentServerTest, PingPong) {
  send({.kind = wire::Kind::Ping, .call_id = 9});
  EXPECT_EQ(expect_next(wire::Kind::Pong).call_id, 9u);
}

TEST(AgentServerOptionsTest, RefusesNegativeWorkers) {
  EXPECT_THROW(AgentServer({.workers = -1}), Error);
}

TEST(AgentServerOptionsTest, HostRefusesUnknownClass) {
  AgentServer server;
  EXPECT_THROW(server.host("Nope", "n", Kwargs::object()), Error);
}

}  // namespace
}  // namespace troupe
