// AgentServer under bad input, driven through a raw channel: malformed frames, unknown agents
// and classes, bad kwargs, unexpected kinds. The server answers with errors and keeps serving.
#include "troupe/core/agent_server.hpp"

#include <gtest/gtest.h>

#include <thread>

#include "support/test_agents.hpp"
#include "troupe/core/detail/server_link.hpp"
#include "troupe/shm/local_transport.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;

class AgentServerTest : public ::testing::Test {
 protected:
  // Fixtures below change these.
  virtual shm::ShmChannelOptions channel_options() const { return {}; }
  virtual AgentServerOptions server_options() const { return {.workers = 2}; }

  void SetUp() override {
    transport_ = std::make_unique<shm::LocalTransport>(channel_options());
    server_ = std::make_unique<AgentServer>(server_options());
    client_ = connect(/*owner=*/true);
    thread_ = std::thread([this] { server_->run(); });
    expect_next(wire::Kind::Hello);
  }
  void TearDown() override {
    for (auto& other : others_) other->close();
    client_->close();
    thread_.join();
  }

  // A client of the server: the fixture's own (the owner), or another one.
  std::unique_ptr<Channel> connect(bool owner) {
    auto [client, token] = transport_->make_child_channel();
    server_->add_channel(transport_->attach_child_channel(token), owner);
    return std::move(client);
  }
  Channel& another_client() {
    others_.push_back(connect(/*owner=*/false));
    return *others_.back();
  }

  void send(const EnvelopeFields& fields) { send(*client_, fields); }
  void send(Channel& to, const EnvelopeFields& fields) {
    ASSERT_FALSE(to.send(builder_.build(fields), Clock::now() + 5s));
  }
  // The next frame from the server, decoded: kind, call id, error text, first message.
  struct Reply {
    wire::Kind kind;
    std::uint64_t call_id;
    std::string error;
    Msg msg;
  };
  Reply next() { return next(*client_); }
  Reply next(Channel& from) {
    std::optional<Reply> reply;
    std::error_code ec;
    const auto deadline = Clock::now() + 10s;
    while (!reply && Clock::now() < deadline) {
      from.poll(
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
  Reply expect_next(wire::Kind kind) { return expect_next(*client_, kind); }
  Reply expect_next(Channel& from, wire::Kind kind) {
    Reply r = next(from);
    EXPECT_EQ(r.kind, kind) << r.error;
    return r;
  }
  void create(std::uint64_t id, const std::string& cls, const std::string& name,
              const std::string& kwargs = "{}") {
    create(*client_, id, cls, name, kwargs);
  }
  void create(Channel& on, std::uint64_t id, const std::string& cls, const std::string& name,
              const std::string& kwargs = "{}") {
    std::vector<Msg> d{Msg().set_name(name).set_content(cls).set_metadata(kwargs)};
    send(on, {.kind = wire::Kind::Create, .call_id = 1000 + id, .agent_id = id, .messages = d});
  }
  // The server's info, asked over the fixture's client.
  nlohmann::json ask_info() {
    send({.kind = wire::Kind::Info, .call_id = 3});
    return nlohmann::json::parse(expect_next(wire::Kind::Result).msg.metadata());
  }
  void call(std::uint64_t id, std::uint64_t call_id, const std::string& content) {
    call(*client_, id, call_id, content);
  }
  void call(Channel& on, std::uint64_t id, std::uint64_t call_id, const std::string& content) {
    std::vector<Msg> in{Msg("u", content)};
    send(on, {.kind = wire::Kind::Call, .call_id = call_id, .agent_id = id, .messages = in});
  }

  std::unique_ptr<shm::LocalTransport> transport_;
  std::unique_ptr<AgentServer> server_;
  std::unique_ptr<Channel> client_;
  std::vector<std::unique_ptr<Channel>> others_;
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

TEST_F(AgentServerTest, HelloSaysPidPortAndProtocol) {
  Reply hello = expect_next(another_client(), wire::Kind::Hello);
  const auto said = nlohmann::json::parse(hello.msg.metadata());
  EXPECT_EQ(said.value("pid", 0), ::getpid());  // this test runs the server in this process
  EXPECT_TRUE(said.contains("port"));
  EXPECT_EQ(said.value("protocol", 0), kProtocolVersion);
}

// A client refuses a server that speaks another protocol (or an older one that does not say,
// or a first frame it cannot read) with a clear error, instead of dropping the frames it
// cannot read; calls on the link fail.
TEST(ServerLinkTest, AServerOfAnotherProtocolIsRefused) {
  const std::string theirs = std::to_string(kProtocolVersion + 1);
  const std::string ours = std::to_string(kProtocolVersion);
  const std::vector<std::pair<nlohmann::json, std::string>> cases = {
      {{{"pid", 1}, {"port", 0}, {"protocol", kProtocolVersion + 1}},
       "speaks Troupe protocol " + theirs + ", this program " + ours},
      {{{"pid", 1}, {"port", 0}}, "does not state its Troupe protocol"},
      {{{"port", 0}, {"protocol", kProtocolVersion}}, "cannot read"},
  };
  for (const auto& [hello, says] : cases) {
    shm::LocalTransport transport(shm::ShmChannelOptions{});
    auto [client, token] = transport.make_child_channel();
    const std::unique_ptr<Channel> server = transport.attach_child_channel(token);
    detail::ServerLink link(std::move(client), 0, /*launched=*/false, "a test server");
    FrameBuilder builder;
    const std::vector<Msg> msgs{Msg().set_metadata(hello.dump())};
    ASSERT_FALSE(server->send(builder.build({.kind = wire::Kind::Hello, .messages = msgs}),
                              Clock::now() + 5s));
    try {
      link.wait_ready(Clock::now() + 5s);
      FAIL() << "a server of another protocol was accepted: " << hello.dump();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
    EXPECT_TRUE(link.dead());
    EXPECT_EQ(link.pid(), 0);  // a refused Hello changes nothing
    auto state = std::make_shared<detail::ResultState>();
    link.request(wire::Kind::Call, 1, {}, state,
                 std::make_shared<const std::string>("agent 'X' of class Y"));
    EXPECT_THROW((void)state->value(), AgentDied);
  }
}

// A frame from the server that fails verification breaks the protocol: the link gives up, and
// its pending and later calls fail with a clear error instead of waiting for good.
TEST(ServerLinkTest, AFrameThatFailsVerificationFailsTheLinkClearly) {
  shm::LocalTransport transport(shm::ShmChannelOptions{});
  auto [client, token] = transport.make_child_channel();
  const std::unique_ptr<Channel> server = transport.attach_child_channel(token);
  detail::ServerLink link(std::move(client), 0, /*launched=*/false, "a test server");
  FrameBuilder builder;
  const nlohmann::json hello{{"pid", ::getpid()}, {"port", 0}, {"protocol", kProtocolVersion}};
  const std::vector<Msg> msgs{Msg().set_metadata(hello.dump())};
  ASSERT_FALSE(server->send(builder.build({.kind = wire::Kind::Hello, .messages = msgs}),
                            Clock::now() + 5s));
  link.wait_ready(Clock::now() + 5s);
  const auto who = std::make_shared<const std::string>("agent 'X' (class Y)");
  auto pending = std::make_shared<detail::ResultState>();
  link.request(wire::Kind::Call, 1, {}, pending, who);

  const std::vector<std::byte> garbage(64, std::byte{0xff});  // no Envelope
  ASSERT_FALSE(server->send(garbage, Clock::now() + 5s));
  for (int i = 0; i < 500 && !pending->settled(); ++i) link.pump(Clock::now() + 10ms);
  ASSERT_TRUE(pending->settled()) << "the call waits for a reply that will never come";
  try {
    (void)pending->value();
    FAIL() << "the call succeeded";
  } catch (const AgentDied& e) {
    EXPECT_NE(std::string(e.what()).find("agent 'X' (class Y): its server sent a frame that "
                                         "fails verification"),
              std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(link.dead());
  auto later = std::make_shared<detail::ResultState>();
  link.request(wire::Kind::Call, 1, {}, later, who);
  EXPECT_THROW((void)later->value(), AgentDied);
}

TEST_F(AgentServerTest, MalformedFramesAreDroppedAndCounted) {
  std::vector<std::uint64_t> garbage(16, 0xdeadbeefcafef00dULL);
  ASSERT_FALSE(client_->send(std::as_bytes(std::span(garbage)), Clock::now() + 5s));
  create(1, "Counter", "A");
  expect_next(wire::Kind::Result);  // still serving
  call(1, 2, "x");
  EXPECT_EQ(expect_next(wire::Kind::Result).msg.content(), "A:1:x");
  EXPECT_EQ(server_->info().malformed_frames, 1u);
}

TEST_F(AgentServerTest, UnknownClassIsRefusedNamingIt) {
  create(1, "NoSuchClass", "A");
  Reply r = expect_next(wire::Kind::Refused);
  EXPECT_NE(r.error.find("unknown agent class 'NoSuchClass'"), std::string::npos) << r.error;
  call(1, 2, "x");  // calls on it say why
  Reply later = expect_next(wire::Kind::Refused);
  EXPECT_NE(later.error.find("NoSuchClass"), std::string::npos) << later.error;
}

TEST_F(AgentServerTest, BadKwargsJsonIsRefused) {
  create(1, "Counter", "A", "{not json");
  Reply r = expect_next(wire::Kind::Refused);
  EXPECT_NE(r.error.find("bad kwargs JSON"), std::string::npos) << r.error;
  call(1, 2, "x");  // calls on it say why
  Reply later = expect_next(wire::Kind::Refused);
  EXPECT_EQ(later.call_id, 2u);
  EXPECT_NE(later.error.find("bad kwargs JSON"), std::string::npos) << later.error;
  create(3, "Counter", "B");  // the server goes on serving
  expect_next(wire::Kind::Result);
  call(3, 4, "y");
  EXPECT_EQ(expect_next(wire::Kind::Result).msg.content(), "B:1:y");
}

TEST_F(AgentServerTest, ConstructorRefusingKwargsIsRefused) {
  create(1, "Picky", "P", R"({"colour":"red"})");
  call(1, 2, "x");  // queued behind the build, before it fails
  Reply r = expect_next(wire::Kind::Refused);
  EXPECT_EQ(r.call_id, 1001u);
  EXPECT_NE(r.error.find("Picky needs kwargs.level"), std::string::npos) << r.error;
  Reply queued = expect_next(wire::Kind::Refused);
  EXPECT_EQ(queued.call_id, 2u);
  EXPECT_NE(queued.error.find("Picky needs kwargs.level"), std::string::npos) << queued.error;
}

TEST_F(AgentServerTest, ConstructorThrowingANonStandardExceptionIsRefused) {
  create(1, "Unruly", "U");
  Reply r = expect_next(wire::Kind::Refused);
  EXPECT_NE(r.error.find("not a std::exception"), std::string::npos) << r.error;
  create(2, "Counter", "C");  // and the server serves on
  expect_next(wire::Kind::Result);
  call(2, 5, "x");
  EXPECT_EQ(expect_next(wire::Kind::Result).msg.content(), "C:1:x");
}

TEST_F(AgentServerTest, InfoOnAgentNamesThatAreNotUtf8) {
  create(1, "Counter", "caf\xe9");
  expect_next(wire::Kind::Result);
  const nlohmann::json info = ask_info();
  ASSERT_EQ(info["agents"].size(), 1u);
  EXPECT_EQ(info["agents"][0]["name"], "caf\xef\xbf\xbd");  // U+FFFD for the stray byte
  call(1, 5, "x");
  EXPECT_EQ(expect_next(wire::Kind::Result).msg.content(), "caf\xe9:1:x");
}

TEST_F(AgentServerTest, ASlowConstructorHoldsUpNoOtherAgent) {
  create(1, "Sleeper", "Slow", R"({"construct_ms": 3000})");
  const auto start = Clock::now();
  create(2, "Counter", "C");
  call(2, 5, "x");
  // C's answers come first, while Slow is still being built on another worker.
  Reply created = expect_next(wire::Kind::Result);
  EXPECT_EQ(created.call_id, 1002u);
  Reply answered = expect_next(wire::Kind::Result);
  EXPECT_EQ(answered.call_id, 5u);
  EXPECT_EQ(answered.msg.content(), "C:1:x");
  EXPECT_LT(Clock::now() - start, 2s);
  call(1, 6, "y");  // queued behind Slow's build, and answered after it
  EXPECT_EQ(expect_next(wire::Kind::Result).call_id, 1001u);
  EXPECT_EQ(expect_next(wire::Kind::Result).msg.content().rfind("Slow(y)", 0), 0u);
}

TEST_F(AgentServerTest, SameNameWithAnotherClassIsRefused) {
  create(1, "Counter", "A");
  expect_next(wire::Kind::Result);
  create(2, "Faulty", "A");
  Reply r = expect_next(wire::Kind::Refused);
  EXPECT_NE(r.error.find("as class Counter, not Faulty"), std::string::npos) << r.error;
}

TEST_F(AgentServerTest, UnknownAgentIdAndUnexpectedKind) {
  call(42, 5, "x");
  Reply r = expect_next(wire::Kind::Refused);
  EXPECT_EQ(r.call_id, 5u);
  EXPECT_NE(r.error.find("no agent is bound to id 42"), std::string::npos) << r.error;
  send({.kind = wire::Kind::Result, .call_id = 6});
  EXPECT_EQ(expect_next(wire::Kind::Error).call_id, 6u);
}

TEST_F(AgentServerTest, InfoReportsAgentsAndQueues) {
  create(1, "Counter", "A");
  expect_next(wire::Kind::Result);
  const nlohmann::json info = ask_info();
  EXPECT_EQ(info["pid"], ::getpid());
  ASSERT_EQ(info["agents"].size(), 1u);
  EXPECT_EQ(info["agents"][0]["name"], "A");
  EXPECT_EQ(info["agents"][0]["class"], "Counter");
}

TEST_F(AgentServerTest, InfoCountsQueuedAndRunCalls) {
  create(1, "Sleeper", "S", R"({"sleep_ms": 50})");
  expect_next(wire::Kind::Result);
  for (std::uint64_t i = 0; i < 5; ++i) call(1, 10 + i, "x");
  std::size_t deepest = 0;
  for (int i = 0; i < 100 && deepest < 3; ++i) {
    deepest = std::max(deepest, server_->info().agents.at(0).queue_depth);
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_GE(deepest, 3u);  // one runs, the others wait in its mailbox
  for (int i = 0; i < 5; ++i) expect_next(wire::Kind::Result);
  // A call is counted just after its reply leaves: look until the count settles.
  ServerInfo info;
  for (int i = 0; i < 1000; ++i) {
    info = server_->info();
    if (info.agents.at(0).calls == 5) break;
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(info.agents.at(0).queue_depth, 0u);
  EXPECT_EQ(info.agents.at(0).calls, 5u);
}

TEST_F(AgentServerTest, AClientThatLeavesIsDroppedAndTheOthersAreServed) {
  Channel& other = another_client();
  expect_next(other, wire::Kind::Hello);
  create(other, 1, "Counter", "A");
  expect_next(other, wire::Kind::Result);
  create(2, "Counter", "A");  // the owner attaches to the same agent by name
  expect_next(wire::Kind::Result);
  call(other, 1, 5, "x");
  EXPECT_EQ(expect_next(other, wire::Kind::Result).msg.content(), "A:1:x");
  EXPECT_EQ(server_->info().clients, 2u);
  other.close();
  std::size_t clients = 2;
  for (int i = 0; i < 2000 && (clients = server_->info().clients) != 1; ++i) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(clients, 1u);
  call(2, 6, "y");  // the agent lives on for the client that stays
  EXPECT_EQ(expect_next(wire::Kind::Result).msg.content(), "A:2:y");
}

TEST_F(AgentServerTest, PingPong) {
  send({.kind = wire::Kind::Ping, .call_id = 9});
  EXPECT_EQ(expect_next(wire::Kind::Pong).call_id, 9u);
}

// Channels that carry frames of at most 16 KiB.
class SmallFramesTest : public AgentServerTest {
 protected:
  shm::ShmChannelOptions channel_options() const override {
    return {.ring_bytes = 64 * 1024, .max_message_bytes = 16 * 1024};
  }
};

TEST_F(SmallFramesTest, AReplyTooLargeForTheChannelIsAnErrorReply) {
  create(1, "BigReply", "B");
  expect_next(wire::Kind::Result);
  call(1, 2, "100000");  // a 100 kB payload
  Reply r = expect_next(wire::Kind::Error);
  EXPECT_EQ(r.call_id, 2u);
  EXPECT_NE(r.error.find("agent 'B' (class BigReply): the reply (a frame of "), std::string::npos)
      << r.error;
  EXPECT_NE(r.error.find("larger than the channel carries"), std::string::npos) << r.error;
  call(1, 3, "1000");  // still serving
  Reply fine = expect_next(wire::Kind::Result);
  EXPECT_EQ(fine.call_id, 3u);
  EXPECT_EQ(fine.msg.payload().size(), 1000u);
}

// A server that waits 200 ms, not 30 s, for a client to make room for a reply.
class ImpatientServerTest : public AgentServerTest {
 protected:
  shm::ShmChannelOptions channel_options() const override { return {.ring_bytes = 64 * 1024}; }
  AgentServerOptions server_options() const override {
    return {.workers = 2, .send_patience = 200ms};
  }
};

TEST_F(ImpatientServerTest, AClientThatStopsReadingIsDroppedAndOthersAreServed) {
  Channel& other = another_client();
  expect_next(other, wire::Kind::Hello);
  create(1, "BigReply", "B");
  expect_next(wire::Kind::Result);
  // 40 replies of 4 kB each do not fit in the client's 64 KiB ring, and it reads none.
  for (std::uint64_t i = 0; i < 40; ++i) call(1, 10 + i, "4000");
  // The server gives up on it and drops it (reading nothing meanwhile: a read would make room).
  const auto dropped_by = Clock::now() + 20s;
  while (server_->info().clients != 1 && Clock::now() < dropped_by) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_EQ(server_->info().clients, 1u) << "the client that reads nothing was not dropped";
  // Its channel is closed: the client finds the replies that fit, then the close (its calls
  // fail instead of waiting for ever).
  std::error_code ec;
  std::size_t replies = 0;
  const auto deadline = Clock::now() + 10s;
  while (!ec && Clock::now() < deadline) {
    replies += client_->poll([](FrameBytes) {}, 64, Clock::now() + 100ms, ec);
  }
  EXPECT_EQ(ec, make_error_code(Errc::kClosed)) << ec.message();
  EXPECT_LT(replies, 40u);
  // The other client is served throughout.
  create(other, 2, "Counter", "C");
  expect_next(other, wire::Kind::Result);
  call(other, 2, 5, "x");
  EXPECT_EQ(expect_next(other, wire::Kind::Result).msg.content(), "C:1:x");
}

// A server with small rings and the patience of a real one.
class PatientServerTest : public AgentServerTest {
 protected:
  static constexpr std::size_t kRingBytes = 64 * 1024;
  shm::ShmChannelOptions channel_options() const override { return {.ring_bytes = kRingBytes}; }
  AgentServerOptions server_options() const override {
    return {.workers = 2, .send_patience = 10s};
  }
};

TEST_F(PatientServerTest, AClientThatReadsNoReplyDoesNotHoldUpTheOthers) {
  Channel& other = another_client();
  expect_next(other, wire::Kind::Hello);
  // The fixture's client sends pings and reads no pong: enough for its pongs to fill its ring
  // one and a half times over, but not for its pings to fill theirs (its sends never wait).
  const std::size_t record = (builder_.build({.kind = wire::Kind::Ping}).size() + 15) / 8 * 8;
  const std::size_t pings = kRingBytes / record * 3 / 2;
  for (std::uint64_t i = 0; i < pings; ++i) send({.kind = wire::Kind::Ping, .call_id = 10 + i});
  std::this_thread::sleep_for(100ms);  // the server has the pings, and a full ring of pongs
  // The other client is served at once, not after the server's 10 s of patience.
  const auto start = Clock::now();
  create(other, 1, "Counter", "C");
  expect_next(other, wire::Kind::Result);
  call(other, 1, 5, "x");
  EXPECT_EQ(expect_next(other, wire::Kind::Result).msg.content(), "C:1:x");
  EXPECT_LT(Clock::now() - start, 5s);
  // The pongs were not lost: reading now, the client gets every one.
  std::size_t pongs = 0;
  const auto deadline = Clock::now() + 10s;
  std::error_code ec;
  while (pongs < pings && !ec && Clock::now() < deadline) {
    pongs += client_->poll([](FrameBytes) {}, 256, Clock::now() + 100ms, ec);
  }
  EXPECT_EQ(pongs, pings) << ec.message();
}

// A server that lets each client queue at most 16 KiB of calls.
class TightQueueTest : public AgentServerTest {
 protected:
  AgentServerOptions server_options() const override {
    return {.workers = 2, .max_queued_bytes_per_client = 16 * 1024};
  }
};

TEST_F(TightQueueTest, AFastCallerIsHeldBackAndLosesNothing) {
  create(1, "Sleeper", "S", R"({"sleep_ms": 2})");
  expect_next(wire::Kind::Result);
  constexpr std::uint64_t kCalls = 200;
  for (std::uint64_t i = 0; i < kCalls; ++i) call(1, 100 + i, std::to_string(i));
  // The mailbox holds no more than the budget allows (each call costs its frame plus
  // kQueuedCallOverhead); the rest waits in the ring.
  const std::size_t most = 16 * 1024 / kQueuedCallOverhead + 1;
  std::size_t deepest = 0;
  for (int i = 0; i < 20; ++i) {
    for (const auto& agent : server_->info().agents) {
      deepest = std::max(deepest, agent.queue_depth);
    }
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_LE(deepest, most);
  EXPECT_GT(deepest, 0u);
  // Every call is answered, in order.
  for (std::uint64_t i = 0; i < kCalls; ++i) {
    Reply r = expect_next(wire::Kind::Result);
    ASSERT_EQ(r.call_id, 100 + i);
    EXPECT_EQ(r.msg.content(), "S(" + std::to_string(i) + ")");
  }
}

TEST_F(TightQueueTest, BigCallsCountByTheirBytes) {
  create(1, "Sleeper", "S", R"({"sleep_ms": 5})");
  expect_next(wire::Kind::Result);
  constexpr std::uint64_t kCalls = 20;
  const std::string big(8 * 1024, 'b');  // two such calls fill the 16 KiB budget
  for (std::uint64_t i = 0; i < kCalls; ++i) call(1, 100 + i, big);
  std::size_t deepest = 0;
  for (int i = 0; i < 10; ++i) {
    for (const auto& agent : server_->info().agents) {
      deepest = std::max(deepest, agent.queue_depth);
    }
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_LE(deepest, 3u);  // the budget, overshot by one frame at most
  for (std::uint64_t i = 0; i < kCalls; ++i) {
    ASSERT_EQ(expect_next(wire::Kind::Result).call_id, 100 + i);
  }
}

TEST(AgentServerOptionsTest, RefusesNegativeWorkers) {
  EXPECT_THROW(AgentServer({.workers = -1}), Error);
}

TEST(AgentServerOptionsTest, RefusesNoPatienceAndNoQueue) {
  EXPECT_THROW(AgentServer({.send_patience = 0ms}), Error);
  EXPECT_THROW(AgentServer({.max_queued_bytes_per_client = 0}), Error);
}

TEST(AgentServerOptionsTest, HostRefusesUnknownClass) {
  AgentServer server;
  EXPECT_THROW(server.host("Nope", "n", Kwargs::object()), Error);
}

}  // namespace
}  // namespace troupe
