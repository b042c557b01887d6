// ShmChannel between real processes (fork) and between threads of one process: ordering and
// checksums under stress, fragmentation, backpressure, dead and closing peers, bad input.
#include "troupe/shm/shm_channel.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <random>
#include <thread>

#include "support/test_support.hpp"
#include "troupe/core/child_process.hpp"
#include "troupe/core/error.hpp"
#include "troupe/core/wake_word.hpp"

namespace troupe::shm {
namespace {

using namespace std::chrono_literals;
using troupe::test::check_message;
using troupe::test::make_message;

constexpr std::uint64_t kBad = ~std::uint64_t{0};

std::unique_ptr<ShmChannel> make_client(std::size_t ring_bytes = 1 << 16,
                                        std::size_t max_message = kMaxFrameBytes) {
  return ShmChannel::create(unique_segment_name("test"), ChannelSide::kClient,
                            {.ring_bytes = ring_bytes, .max_message_bytes = max_message});
}

// Polls until `count` frames arrived or `deadline`; returns the frames' sequence numbers.
std::vector<std::uint64_t> receive(Channel& channel, std::size_t count, Deadline deadline,
                                   std::error_code* last_ec = nullptr) {
  std::vector<std::uint64_t> seqs;
  std::error_code ec;
  while (seqs.size() < count && Clock::now() < deadline) {
    channel.poll([&](FrameBytes f) { seqs.push_back(check_message(f)); }, count - seqs.size(),
                 deadline, ec);
    if (ec) break;
  }
  if (last_ec) *last_ec = ec;
  return seqs;
}

// Child body: attaches as server and echoes every frame back until the client closes.
int echo_server(const std::string& name) {
  auto server = ShmChannel::attach(name, ChannelSide::kServer);
  for (;;) {
    std::error_code ec;
    std::error_code send_ec;
    server->poll([&](FrameBytes f) { send_ec = server->send(f, Clock::now() + 30s); }, 64,
                 Clock::now() + 30s, ec);
    if (send_ec) return 3;
    if (ec) return ec == Errc::kClosed ? 0 : 2;
  }
}

TEST(ShmChannelTest, RefusesBadOptionsNamingThem) {
  try {
    ShmChannel::create(unique_segment_name("bad"), ChannelSide::kClient, {.ring_bytes = 5000});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ring_bytes = 5000"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ShmChannel::create(unique_segment_name("bad"), ChannelSide::kClient,
                                  {.max_message_bytes = 0}),
               Error);
  EXPECT_THROW(ShmChannel::create(unique_segment_name("bad"), ChannelSide::kClient,
                                  {.max_message_bytes = kMaxFrameBytes + 1}),
               Error);
}

TEST(ShmChannelTest, AttachRefusesAnotherKindOfSegment) {
  const std::string name = unique_segment_name("scratch");
  Segment s = Segment::create(name, 1 << 16, SegmentKind::kScratch);
  s.mark_ready();
  EXPECT_THROW(ShmChannel::attach(name, ChannelSide::kServer), ProtocolError);
}

TEST(ShmChannelTest, ThreadsOfOneProcessEchoInOrder) {
  auto client = make_client();
  auto server = ShmChannel::attach(client->name(), ChannelSide::kServer);
  std::thread echo([&] {
    std::size_t echoed = 0;
    std::error_code ec;
    while (echoed < 20'000 && !ec) {
      echoed += server->poll([&](FrameBytes f) { (void)server->send(f, Clock::now() + 30s); }, 64,
                             Clock::now() + 30s, ec);
    }
  });
  std::mt19937_64 rng(1);
  std::vector<std::uint64_t> got;
  std::thread reader([&] { got = receive(*client, 20'000, Clock::now() + 60s); });
  for (std::uint64_t i = 0; i < 20'000; ++i) {
    ASSERT_FALSE(client->send(make_message(i, 16 + rng() % 2000, rng), Clock::now() + 30s));
  }
  reader.join();
  echo.join();
  ASSERT_EQ(got.size(), 20'000u);
  for (std::uint64_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], i);
}

TEST(ShmChannelTest, UnflushedFramesWaitForFlush) {
  auto client = make_client();
  auto server = ShmChannel::attach(client->name(), ChannelSide::kServer);
  std::mt19937_64 rng(2);
  for (int i = 0; i < 5; ++i)
    ASSERT_FALSE(client->send(make_message(i, 32, rng), Clock::now(), false));
  std::error_code ec;
  EXPECT_EQ(server->poll([](FrameBytes) {}, 10, Clock::now() + 1ms, ec), 0u);
  EXPECT_FALSE(ec);
  ASSERT_FALSE(client->flush());
  EXPECT_EQ(receive(*server, 5, Clock::now() + 5s).size(), 5u);
}

// Unflushed frames are gathered and appended in one copy at the next flush or flushing send;
// order holds across gathered frames, frames written directly (too large to gather, or past the
// ring's free space) and fragmented ones, with a reader draining the ring meanwhile.
TEST(ShmChannelTest, GatheredFramesKeepTheirOrderWithEveryOtherKind) {
  constexpr std::size_t kRing = 1 << 13;  // gathers up to 2 KiB
  constexpr std::uint64_t kCount = 30'000;
  auto client = make_client(kRing);
  auto server = ShmChannel::attach(client->name(), ChannelSide::kServer);
  std::vector<std::uint64_t> got;
  std::thread reader([&] { got = receive(*server, kCount, Clock::now() + 120s); });
  std::mt19937_64 rng(4);
  for (std::uint64_t i = 0; i < kCount; ++i) {
    // Mostly small; some past the gathering buffer, some fragmented (over half the ring).
    const std::uint64_t kind = rng() % 100;
    const std::size_t size = kind == 0   ? 1 + rng() % (2 * kRing)
                             : kind < 10 ? 1 + rng() % 3000
                                         : 16 + rng() % 200;
    const bool flush = rng() % 40 == 0;
    ASSERT_FALSE(client->send(make_message(i, size, rng), Clock::now() + 30s, flush)) << i;
  }
  ASSERT_FALSE(client->flush());
  reader.join();
  ASSERT_EQ(got.size(), kCount);
  for (std::uint64_t i = 0; i < kCount; ++i) ASSERT_EQ(got[i], i) << "at " << i;
  EXPECT_EQ(server->stats().malformed_dropped, 0u);
  EXPECT_EQ(client->stats().frames_sent, kCount);
}

// Gathered frames wait for the flush, as unflushed frames always did: a peer that polls sees
// nothing, and a flushing send publishes them first, then its own frame.
TEST(ShmChannelTest, AFlushingSendPublishesTheGatheredFramesFirst) {
  auto client = make_client();
  auto server = ShmChannel::attach(client->name(), ChannelSide::kServer);
  std::mt19937_64 rng(5);
  ASSERT_FALSE(client->send(make_message(0, 40, rng), Clock::now(), false));
  ASSERT_FALSE(client->send(make_message(1, 40, rng), Clock::now(), false));
  std::error_code ec;
  EXPECT_EQ(server->poll([](FrameBytes) {}, 10, Clock::now() + 1ms, ec), 0u);
  ASSERT_FALSE(client->send(make_message(2, 40, rng), Clock::now(), true));
  const auto got = receive(*server, 3, Clock::now() + 5s);
  ASSERT_EQ(got, (std::vector<std::uint64_t>{0, 1, 2}));
}

// A frame is gathered only while the ring has room for it: one sent unflushed to a full ring
// waits for room, and times out, as a flushing send does (a flush never has to wait).
TEST(ShmChannelTest, AnUnflushedFrameForAFullRingWaitsAsAnyOther) {
  auto client = make_client(1 << 12);
  auto server = ShmChannel::attach(client->name(), ChannelSide::kServer);
  std::mt19937_64 rng(6);
  std::uint64_t sent = 0;
  while (!client->send(make_message(sent, 500, rng), Clock::now() + 1ms)) ++sent;
  ASSERT_GT(sent, 3u);
  // 512 bytes are left, with the word kept free; this frame's record needs 616 (the
  // gathering buffer would take it: 1 KiB).
  EXPECT_EQ(client->send(make_message(sent, 600, rng), Clock::now() + 1ms, false), Errc::kTimeout);
  auto got = receive(*server, sent, Clock::now() + 5s);
  ASSERT_EQ(got.size(), sent);
  for (std::uint64_t i = 0; i < sent; ++i) ASSERT_EQ(got[i], i);
  ASSERT_FALSE(client->send(make_message(sent, 100, rng), Clock::now() + 1s, false));
  ASSERT_FALSE(client->flush());
  EXPECT_EQ(receive(*server, 1, Clock::now() + 5s), (std::vector<std::uint64_t>{sent}));
}

// A fragmented frame cut short (its send timed out) is dropped by the receiver before the
// frames sent after it, gathered ones too: the abort record goes first.
TEST(ShmChannelTest, AFrameCutShortIsDroppedBeforeLaterUnflushedFrames) {
  auto client = make_client(1 << 12);
  auto server = ShmChannel::attach(client->name(), ChannelSide::kServer);
  std::mt19937_64 rng(7);
  // 10 KB travel as fragments; with nobody reading, the ring fills and the send times out.
  EXPECT_EQ(client->send(make_message(100, 10'000, rng), Clock::now() + 5ms), Errc::kTimeout);
  std::error_code ec;
  EXPECT_EQ(server->poll([](FrameBytes) {}, 10, Clock::now() + 1ms, ec), 0u);  // no whole frame
  EXPECT_FALSE(ec);
  for (std::uint64_t i = 0; i < 3; ++i) {
    ASSERT_FALSE(client->send(make_message(i, 50, rng), Clock::now() + 1s, false)) << i;
  }
  ASSERT_FALSE(client->flush());
  EXPECT_EQ(receive(*server, 3, Clock::now() + 5s), (std::vector<std::uint64_t>{0, 1, 2}));
  EXPECT_EQ(server->poll([](FrameBytes) {}, 10, Clock::now() + 1ms, ec), 0u);
  EXPECT_EQ(server->stats().malformed_dropped, 0u);
}

// Two processes, random sizes from 1 byte to three ring capacities (fragmented), each message
// sequence-numbered and checksummed, echoed back and checked: no loss, duplicate or reorder.
TEST(ShmChannelTest, CrossProcessStressRandomSizes) {
  constexpr std::size_t kRing = 1 << 14;
  constexpr std::uint64_t kCount = 20'000;
  auto client = make_client(kRing);
  auto child = ChildProcess::fork([&] { return echo_server(client->name()); });
  client->expect_peer(child.pid());
  std::vector<std::uint64_t> got;
  std::thread reader([&] { got = receive(*client, kCount, Clock::now() + 120s); });
  std::mt19937_64 rng(3);
  std::size_t fragmented = 0;
  for (std::uint64_t i = 0; i < kCount; ++i) {
    // Mostly small, one in ten up to three ring capacities.
    std::size_t size = (rng() % 10 == 0) ? 1 + rng() % (3 * kRing) : 1 + rng() % 512;
    fragmented += size > max_record_payload(kRing);
    ASSERT_FALSE(client->send(make_message(i, size, rng), Clock::now() + 30s));
  }
  reader.join();
  // Nothing after the last echo: no duplicate trails the stream.
  std::error_code ec;
  EXPECT_EQ(client->poll([](FrameBytes) {}, 1, Clock::now() + 50ms, ec), 0u);
  client->close();
  EXPECT_EQ(describe_exit(child.wait()), "exited with status 0");
  EXPECT_GT(fragmented, 100u);
  ASSERT_EQ(got.size(), kCount);
  for (std::uint64_t i = 0; i < kCount; ++i) ASSERT_EQ(got[i], i) << "at " << i;
  EXPECT_EQ(client->stats().malformed_dropped, 0u);
}

TEST(ShmChannelTest, LargeMessageIsReassembledIntact) {
  auto client = make_client(1 << 16, 32 << 20);
  auto child = ChildProcess::fork([&] { return echo_server(client->name()); });
  client->expect_peer(child.pid());
  std::mt19937_64 rng(4);
  auto big = make_message(7, 32 << 20, rng);  // exactly the limit, 512 ring capacities
  std::vector<std::uint64_t> got;
  std::thread reader([&] { got = receive(*client, 1, Clock::now() + 60s); });
  ASSERT_FALSE(client->send(big, Clock::now() + 60s));
  reader.join();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], 7u);
}

TEST(ShmChannelTest, OversizeIsRefusedAndTheChannelKeepsWorking) {
  auto client = make_client(1 << 16, 1 << 20);
  auto server = ShmChannel::attach(client->name(), ChannelSide::kServer);
  std::mt19937_64 rng(5);
  EXPECT_EQ(client->send(make_message(0, (1 << 20) + 1, rng), Clock::now() + 1s),
            Errc::kMessageTooLarge);
  ASSERT_FALSE(client->send(make_message(1, 100, rng), Clock::now() + 1s));
  auto got = receive(*server, 1, Clock::now() + 5s);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], 1u);
}

// A full ring makes the sender wait, with a deadline; nothing is lost.
TEST(ShmChannelTest, BackpressureTimesOutThenDeliversEverything) {
  auto client = make_client(1 << 12);
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  auto child = ChildProcess::fork([&] {
    auto server = ShmChannel::attach(client->name(), ChannelSide::kServer);
    char c;
    if (::read(go[0], &c, 1) != 1) return 4;  // do not read until the parent says so
    std::error_code ec;
    auto seqs = receive(*server, 1000, Clock::now() + 60s, &ec);
    if (seqs.size() != 1000) return 5;
    for (std::uint64_t i = 0; i < seqs.size(); ++i) {
      if (seqs[i] != i) return 6;
    }
    return 0;
  });
  client->expect_peer(child.pid());
  std::mt19937_64 rng(6);
  std::uint64_t sent = 0;
  std::error_code ec;
  auto msg = make_message(sent, 100, rng);
  while (!(ec = client->send(msg, Clock::now() + 50ms))) msg = make_message(++sent, 100, rng);
  EXPECT_EQ(ec, Errc::kTimeout);
  EXPECT_GT(sent, 10u);  // the 4 KiB ring took some before it filled
  EXPECT_GT(client->stats().send_waits, 0u);
  // A patience (a span of time, counted from when the send has to wait) times out the same way.
  const auto before = Clock::now();
  EXPECT_EQ(client->send(msg, std::chrono::nanoseconds(50ms)), Errc::kTimeout);
  EXPECT_GE(Clock::now() - before, 50ms);
  ASSERT_EQ(::write(go[1], "g", 1), 1);
  for (; sent < 1000; msg = make_message(++sent, 100, rng)) {
    ASSERT_FALSE(client->send(msg, Clock::now() + 30s)) << sent;
  }
  EXPECT_EQ(describe_exit(child.wait()), "exited with status 0");
  ::close(go[0]);
  ::close(go[1]);
}

// Both processes only send, with small rings, before either polls: each sender drains what it
// receives while it waits, so neither blocks the other for good.
TEST(ShmChannelTest, FullRingsInBothDirectionsDoNotDeadlock) {
  constexpr std::uint64_t kCount = 3000;
  auto client = make_client(1 << 12);
  auto child = ChildProcess::fork([&] {
    auto server = ShmChannel::attach(client->name(), ChannelSide::kServer);
    std::mt19937_64 rng(8);
    for (std::uint64_t i = 0; i < kCount; ++i) {
      if (server->send(make_message(i, 1000, rng), Clock::now() + 30s)) return 7;
    }
    auto seqs = receive(*server, kCount, Clock::now() + 30s);
    if (seqs.size() != kCount) return 8;
    for (std::uint64_t i = 0; i < kCount; ++i) {
      if (seqs[i] != i) return 9;
    }
    return 0;
  });
  client->expect_peer(child.pid());
  std::mt19937_64 rng(7);
  for (std::uint64_t i = 0; i < kCount; ++i) {
    ASSERT_FALSE(client->send(make_message(i, 1000, rng), Clock::now() + 30s)) << i;
  }
  auto seqs = receive(*client, kCount, Clock::now() + 30s);
  ASSERT_EQ(seqs.size(), kCount);
  for (std::uint64_t i = 0; i < kCount; ++i) ASSERT_EQ(seqs[i], i);
  EXPECT_EQ(describe_exit(child.wait()), "exited with status 0");
}

// A blocked sender drains the peer's frames into its inbox only up to its cap (a server's
// guard against a client that sends without reading); the peer's sends then wait, and nothing
// is lost or reordered.
TEST(ShmChannelTest, ACappedInboxStopsDrainingAndLosesNothing) {
  constexpr std::size_t kFrame = 1024;
  constexpr std::size_t kCap = 32 * 1024;
  auto client = make_client(1 << 16);
  auto server = ShmChannel::attach(client->name(), ChannelSide::kServer);
  server->cap_inbox(kCap);
  client->cap_inbox(1);  // this side drains (almost) nothing: both sides end up blocked
  std::atomic<bool> server_done{false};
  std::thread server_sender([&] {  // 200 KiB into a 64 KiB ring nobody reads yet
    std::mt19937_64 rng(21);
    for (std::uint64_t i = 0; i < 200; ++i) {
      ASSERT_FALSE(server->send(make_message(i, kFrame, rng), Clock::now() + 30s));
    }
    server_done = true;
  });
  std::mt19937_64 rng(22);
  std::uint64_t sent = 0;
  while (sent < 1000 && !client->send(make_message(sent, kFrame, rng), Clock::now() + 300ms)) {
    ++sent;
  }
  EXPECT_GT(sent, 64u);  // the ring's worth and then some went into the server's inbox
  EXPECT_LE(server->inbox_bytes(), kCap + kFrame + 64);
  EXPECT_FALSE(server_done.load());
  // The client reads the server's frames: the server's sends complete.
  EXPECT_EQ(receive(*client, 200, Clock::now() + 30s).size(), 200u);
  server_sender.join();
  std::vector<std::uint64_t> expected(sent);
  for (std::uint64_t i = 0; i < sent; ++i) expected[i] = i;
  EXPECT_EQ(receive(*server, sent, Clock::now() + 30s), expected);
}

TEST(ShmChannelTest, PeerDeathEndsABlockedSend) {
  auto client = make_client(1 << 12);
  auto child = ChildProcess::fork([&] {
    auto server = ShmChannel::attach(client->name(), ChannelSide::kServer);
    ::pause();  // attached, never reads
    return 0;
  });
  client->expect_peer(child.pid());
  std::mt19937_64 rng(9);
  Clock::time_point killed_at{};
  std::thread killer([&] {
    std::this_thread::sleep_for(200ms);
    killed_at = Clock::now();
    child.kill(SIGKILL);
  });
  std::error_code ec;
  for (std::uint64_t i = 0; !ec; ++i)
    ec = client->send(make_message(i, 200, rng), Clock::now() + 30s);
  const auto noticed = Clock::now();
  killer.join();
  EXPECT_EQ(ec, Errc::kPeerDead);
  const auto latency = std::chrono::duration_cast<std::chrono::milliseconds>(noticed - killed_at);
  std::printf("dead peer noticed by a blocked sender after %lld ms\n",
              static_cast<long long>(latency.count()));
  EXPECT_LT(latency, 5s);  // bounded, not a hang (the figure is printed above)
}

TEST(ShmChannelTest, PeerDeathEndsAWaitingPoll) {
  auto client = make_client();
  auto child = ChildProcess::fork([&] {
    auto server = ShmChannel::attach(client->name(), ChannelSide::kServer);
    ::pause();
    return 0;
  });
  client->expect_peer(child.pid());
  std::thread killer([&] {
    std::this_thread::sleep_for(100ms);
    child.kill(SIGKILL);
  });
  std::error_code ec;
  const auto start = Clock::now();
  EXPECT_EQ(client->poll([](FrameBytes) {}, 1, Clock::now() + 30s, ec), 0u);
  killer.join();
  EXPECT_EQ(ec, Errc::kPeerDead);
  EXPECT_LT(Clock::now() - start, 10s);
}

TEST(ShmChannelTest, PeerThatDiesBeforeAttachingIsNoticed) {
  auto client = make_client();
  auto child = ChildProcess::fork([] { return 0; });
  client->expect_peer(child.pid());
  std::error_code ec;
  EXPECT_EQ(client->poll([](FrameBytes) {}, 1, Clock::now() + 30s, ec), 0u);
  EXPECT_EQ(ec, Errc::kPeerDead);
}

TEST(ShmChannelTest, FramesSentBeforeACleanCloseAreDeliveredThenClosed) {
  auto client = make_client();
  auto child = ChildProcess::fork([&] {
    auto server = ShmChannel::attach(client->name(), ChannelSide::kServer);
    std::mt19937_64 rng(10);
    for (std::uint64_t i = 0; i < 3; ++i)
      (void)server->send(make_message(i, 64, rng), Clock::now() + 5s);
    server->close();
    return 0;
  });
  client->expect_peer(child.pid());
  EXPECT_EQ(describe_exit(child.wait()), "exited with status 0");
  std::error_code ec;
  auto seqs = receive(*client, 4, Clock::now() + 10s, &ec);
  EXPECT_EQ(seqs, (std::vector<std::uint64_t>{0, 1, 2}));
  EXPECT_EQ(ec, Errc::kClosed);
  std::mt19937_64 rng(11);
  EXPECT_EQ(client->send(make_message(9, 64, rng), Clock::now() + 1s), Errc::kClosed);
}

TEST(ShmChannelTest, CloseEndsThisProcessesOwnWaits) {
  auto client = make_client();
  auto server = ShmChannel::attach(client->name(), ChannelSide::kServer);
  std::thread closer([&] {
    std::this_thread::sleep_for(50ms);
    client->close();
  });
  std::error_code ec;
  client->poll([](FrameBytes) {}, 1, Clock::now() + 30s, ec);
  closer.join();
  EXPECT_EQ(ec, Errc::kClosed);
}

// A wait on several channels at once: each armed channel's doorbell rings when its peer
// (another process) sends, and wakes the one futex_waitv; a frame already there, or another
// thread holding the receive end, is said instead of arming.
TEST(ShmChannelTest, AWaitOnSeveralChannelsWakesWhenAnyPeerSends) {
  auto quiet = make_client();
  auto talker = make_client();
  const std::string talker_name = talker->name();
  int release[2];
  ASSERT_EQ(::pipe(release), 0);
  auto child = ChildProcess::fork([&] {
    quiet->segment().disown();
    talker->segment().disown();
    auto server = ShmChannel::attach(talker_name, ChannelSide::kServer);
    std::this_thread::sleep_for(100ms);  // the parent is asleep by then
    std::mt19937_64 rng(5);
    if (server->send(make_message(1, 64, rng), Clock::now() + 10s)) return 1;
    // The channel stays open until the parent got the frame: its close, which wakes every
    // waiter, must not stand in for the send's doorbell.
    char done;
    return ::read(release[0], &done, 1) == 1 ? 0 : 2;
  });
  ::close(release[0]);
  talker->expect_peer(child.pid());
  std::uint32_t own_signal = 0;
  std::atomic<std::uint32_t> own{0};
  Channel* channels[] = {quiet.get(), talker.get()};
  const auto started = Clock::now();
  std::vector<std::uint64_t> got;
  std::error_code ec;
  while (talker->poll([&](FrameBytes f) { got.push_back(check_message(f)); }, 1, kNoWait, ec) ==
         0) {
    ASSERT_TRUE(sleep_on_channels(channels, {&own, own_signal, true}, Clock::now() + 30s,
                                  Clock::now() + 30s));
    ASSERT_LT(Clock::now() - started, 20s) << "the sender's doorbell did not wake the wait";
  }
  EXPECT_EQ(got, (std::vector<std::uint64_t>{1}));
  ASSERT_EQ(::write(release[1], "x", 1), 1);
  ::close(release[1]);
  EXPECT_EQ(child.wait(), 0);

  // A frame waiting: nothing is armed, and the caller is told to receive.
  std::mt19937_64 rng(6);
  auto server = ShmChannel::attach(quiet->name(), ChannelSide::kServer);
  ASSERT_FALSE(server->send(make_message(2, 64, rng), Clock::now() + 1s));
  WakeWord word;
  EXPECT_EQ(quiet->arm_wakeup(word), WakeupArm::kFrameWaiting);
  EXPECT_EQ(receive(*quiet, 1, Clock::now() + 1s), (std::vector<std::uint64_t>{2}));
  // Armed, the receive end is this thread's until end_wakeup(): a second arming is refused,
  // and a poll meanwhile delivers nothing.
  ASSERT_EQ(quiet->arm_wakeup(word), WakeupArm::kArmed);
  EXPECT_TRUE(quiet->confirm_wakeup());
  EXPECT_EQ(quiet->arm_wakeup(word), WakeupArm::kCannot);
  ASSERT_FALSE(server->send(make_message(3, 64, rng), Clock::now() + 1s));
  EXPECT_EQ(quiet->poll([](FrameBytes) {}, 1, kNoWait, ec), 0u);
  quiet->end_wakeup();
  EXPECT_EQ(receive(*quiet, 1, Clock::now() + 1s), (std::vector<std::uint64_t>{3}));
}

TEST(ShmChannelTest, AttachRefusesASideHeldByALiveProcess) {
  auto client = make_client();
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  auto child = ChildProcess::fork([&] {
    auto server = ShmChannel::attach(client->name(), ChannelSide::kServer);
    (void)!::write(ready[1], "r", 1);
    ::pause();
    return 0;
  });
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  EXPECT_THROW(ShmChannel::attach(client->name(), ChannelSide::kServer), Error);
  ::close(ready[0]);
  ::close(ready[1]);
}

// A peer that left its rings' positions or capacity inconsistent: attaching refuses the
// channel, and the refusal leaves no claim on the side behind.
TEST(ShmChannelTest, AttachRefusesRingsThatBreakTheProtocol) {
  for (int damage = 0; damage < 3; ++damage) {
    auto client = make_client(1 << 12);
    auto ring = [&](std::size_t i) -> RingControl& {
      return *reinterpret_cast<RingControl*>(client->segment().base() + ring_offset(i, 1 << 12));
    };
    const std::uint64_t head = ring(0).head.load(), tail = ring(1).tail.load();
    if (damage == 0) ring(0).head.store(4);       // the server's inbound ring: not a boundary
    if (damage == 1) ring(1).tail.store(4);       // its outbound ring
    if (damage == 2) ring(1).capacity = 1 << 20;  // beyond the segment
    EXPECT_THROW(ShmChannel::attach(client->name(), ChannelSide::kServer), ProtocolError) << damage;
    ring(0).head.store(head);
    ring(1).tail.store(tail);
    ring(1).capacity = 1 << 12;
    auto server = ShmChannel::attach(client->name(), ChannelSide::kServer);
    std::mt19937_64 rng(damage);
    ASSERT_FALSE(client->send(make_message(7, 64, rng), Clock::now() + 1s));
    auto got = receive(*server, 1, Clock::now() + 5s);
    ASSERT_EQ(got.size(), 1u) << damage;
    EXPECT_EQ(got[0], 7u);
  }
}

// A peer that breaks the record protocol: the receiver reports it, counts it, and keeps
// serving its other channels.
TEST(ShmChannelTest, CorruptRingIsReportedAndOtherChannelsKeepServing) {
  auto bad_client = make_client(1 << 12);
  auto good_client = make_client(1 << 12);
  auto bad_server = ShmChannel::attach(bad_client->name(), ChannelSide::kServer);
  auto good_server = ShmChannel::attach(good_client->name(), ChannelSide::kServer);
  std::mt19937_64 rng(12);
  ASSERT_FALSE(bad_client->send(make_message(0, 64, rng), Clock::now() + 1s));
  // Overwrite the published record's header with a length beyond the ring.
  std::byte* data = bad_client->segment().base() + ring_offset(0, 1 << 12) + sizeof(RingControl);
  const RecordHeader garbage{1u << 30, RecordType::kMessage};
  std::memcpy(data, &garbage, sizeof garbage);
  std::error_code ec;
  EXPECT_EQ(bad_server->poll([](FrameBytes) {}, 1, Clock::now() + 1s, ec), 0u);
  EXPECT_EQ(ec, Errc::kMalformedFrame);
  EXPECT_EQ(bad_server->stats().malformed_dropped, 1u);

  ASSERT_FALSE(good_client->send(make_message(5, 64, rng), Clock::now() + 1s));
  auto got = receive(*good_server, 1, Clock::now() + 5s);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], 5u);
}

TEST(ShmChannelTest, FragmentsOutOfSequenceAreMalformed) {
  auto client = make_client(1 << 12);
  auto server = ShmChannel::attach(client->name(), ChannelSide::kServer);
  // A "last fragment" with no first one, written straight into the ring.
  RingControl& ring =
      *reinterpret_cast<RingControl*>(client->segment().base() + ring_offset(0, 1 << 12));
  SpscRingProducer raw(ring,
                       client->segment().base() + ring_offset(0, 1 << 12) + sizeof(RingControl));
  std::array<std::byte, 16> junk{};
  ASSERT_TRUE(raw.try_push(RecordType::kFragmentLast, junk));
  std::error_code ec;
  server->poll([](FrameBytes) {}, 1, Clock::now() + 1s, ec);
  EXPECT_EQ(ec, Errc::kMalformedFrame);
}

// Several threads send on one channel: each frame arrives whole, each thread's order is kept.
TEST(ShmChannelConcurrentTest, SeveralSenderThreadsShareOneChannel) {
  constexpr int kThreads = 4;
  constexpr std::uint64_t kPerThread = 20'000;
  auto client = make_client(1 << 13);
  auto server = ShmChannel::attach(client->name(), ChannelSide::kServer);
  std::vector<std::thread> senders;
  for (int t = 0; t < kThreads; ++t) {
    senders.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      for (std::uint64_t i = 0; i < kPerThread; ++i) {
        // Sequence numbers carry the thread in the top byte.
        auto m = make_message((std::uint64_t(t) << 56) | i, 16 + rng() % 3000, rng);
        if (client->send(m, Clock::now() + 60s)) return;
      }
    });
  }
  std::vector<std::uint64_t> next(kThreads, 0);
  std::uint64_t total = 0, bad = 0;
  std::error_code ec;
  const auto deadline = Clock::now() + 120s;
  while (total < kThreads * kPerThread && !ec && Clock::now() < deadline) {
    server->poll(
        [&](FrameBytes f) {
          std::uint64_t seq = check_message(f);
          if (seq == kBad) {
            ++bad;
          } else {
            std::uint64_t t = seq >> 56;
            bad += (t >= kThreads || (seq & ((1ULL << 56) - 1)) != next[t]++);
          }
          ++total;
        },
        256, deadline, ec);
  }
  for (auto& s : senders) s.join();
  EXPECT_EQ(total, kThreads * kPerThread);
  EXPECT_EQ(bad, 0u);
}

// Several threads poll one end: frames are shared out whole, none lost or duplicated.
TEST(ShmChannelConcurrentTest, SeveralPollingThreadsShareOneEnd) {
  constexpr std::uint64_t kCount = 50'000;
  auto client = make_client(1 << 13);
  auto server = ShmChannel::attach(client->name(), ChannelSide::kServer);
  std::vector<std::atomic<int>> seen(kCount);
  std::atomic<std::uint64_t> total{0};
  std::vector<std::thread> pollers;
  for (int t = 0; t < 3; ++t) {
    pollers.emplace_back([&] {
      std::error_code ec;
      while (total.load() < kCount && !ec) {
        server->poll(
            [&](FrameBytes f) {
              std::uint64_t seq = check_message(f);
              if (seq < kCount) seen[seq].fetch_add(1);
              total.fetch_add(1);
            },
            16, Clock::now() + 100ms, ec);
      }
    });
  }
  std::mt19937_64 rng(13);
  for (std::uint64_t i = 0; i < kCount; ++i) {
    ASSERT_FALSE(client->send(make_message(i, 16 + rng() % 500, rng), Clock::now() + 30s));
  }
  for (auto& p : pollers) p.join();
  EXPECT_EQ(total.load(), kCount);
  for (std::uint64_t i = 0; i < kCount; ++i) ASSERT_EQ(seen[i].load(), 1) << i;
}

}  // namespace
}  // namespace troupe::shm
