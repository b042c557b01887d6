#include "troupe/shm/segment.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "support/test_support.hpp"
#include "troupe/core/child_process.hpp"
#include "troupe/core/error.hpp"

namespace troupe::shm {
namespace {

using test::process_state;

bool exists_in_dev_shm(const std::string& name) {
  return std::filesystem::exists("/dev/shm/" + name);
}

Segment make_ready(const std::string& name, std::size_t size = 4096) {
  Segment s = Segment::create(name, size, SegmentKind::kScratch);
  s.mark_ready();
  return s;
}

TEST(SegmentTest, CreateAttachShareBytes) {
  const std::string name = unique_segment_name("share");
  Segment created = make_ready(name);
  std::memcpy(created.base() + 256, "hello", 6);
  Segment attached = Segment::attach(name, SegmentKind::kScratch);
  EXPECT_EQ(attached.size(), 4096u);
  EXPECT_STREQ(reinterpret_cast<const char*>(attached.base() + 256), "hello");
  EXPECT_TRUE(created.owns_name());
  EXPECT_FALSE(attached.owns_name());
  EXPECT_EQ(created.header().creator_pid, ::getpid());
}

TEST(SegmentTest, CreatedOwnerOnlyAndRemovedWithItsOwner) {
  const std::string name = unique_segment_name("mode");
  {
    Segment s = make_ready(name);
    struct stat st {};
    ASSERT_EQ(::stat(("/dev/shm/" + name).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
  }
  EXPECT_FALSE(exists_in_dev_shm(name));
}

TEST(SegmentTest, NamesAreUniqueAndCarryThePid) {
  std::string a = unique_segment_name("x"), b = unique_segment_name("x");
  EXPECT_NE(a, b);
  EXPECT_EQ(a.rfind("troupe." + std::to_string(::getpid()) + ".", 0), 0u) << a;
}

TEST(SegmentTest, CreateRefusesAnExistingName) {
  const std::string name = unique_segment_name("excl");
  Segment first = make_ready(name);
  try {
    Segment::create(name, 4096, SegmentKind::kScratch);
    FAIL() << "second create succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
  }
  EXPECT_TRUE(exists_in_dev_shm(name));  // the first one's name survives the refusal
}

TEST(SegmentTest, CreateRefusesTooSmall) {
  EXPECT_THROW(Segment::create(unique_segment_name("tiny"), 16, SegmentKind::kScratch), Error);
}

TEST(SegmentTest, FullDevShmIsAClearErrorAndLeavesNothing) {
  const std::string name = unique_segment_name("huge");
  // Far beyond any tmpfs here: posix_fallocate fails with ENOSPC up front (no SIGBUS later).
  try {
    Segment::create(name, std::size_t{1} << 46, SegmentKind::kScratch);
    FAIL() << "a 64 TiB segment was created";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/dev/shm is full"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(exists_in_dev_shm(name));
}

TEST(SegmentTest, AttachMissingIsAnError) {
  EXPECT_THROW(Segment::attach(unique_segment_name("missing"), SegmentKind::kScratch), Error);
}

TEST(SegmentTest, AttachRefusesBadMagic) {
  const std::string name = unique_segment_name("magic");
  Segment s = make_ready(name);
  s.header().magic ^= 1;
  EXPECT_THROW(Segment::attach(name, SegmentKind::kScratch), ProtocolError);
}

TEST(SegmentTest, AttachRefusesOtherLayoutVersion) {
  const std::string name = unique_segment_name("version");
  Segment s = make_ready(name);
  s.header().layout_version = kLayoutVersion + 1;
  try {
    Segment::attach(name, SegmentKind::kScratch);
    FAIL();
  } catch (const ProtocolError& e) {
    EXPECT_NE(std::string(e.what()).find("layout version"), std::string::npos) << e.what();
  }
}

TEST(SegmentTest, AttachRefusesOtherKindAndSize) {
  const std::string name = unique_segment_name("kind");
  Segment s = make_ready(name);
  EXPECT_THROW(Segment::attach(name, SegmentKind::kChannel), ProtocolError);
  s.header().size = 8192;
  EXPECT_THROW(Segment::attach(name, SegmentKind::kScratch), ProtocolError);
}

TEST(SegmentTest, AttachRefusesUnfinishedSegment) {
  const std::string name = unique_segment_name("unready");
  Segment s = Segment::create(name, 4096, SegmentKind::kScratch);
  EXPECT_THROW(Segment::attach(name, SegmentKind::kScratch), ProtocolError);
}

TEST(SegmentTest, AttachRefusesForeignSegment) {
  const std::string name = unique_segment_name("foreign");
  int fd = ::shm_open(("/" + name).c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 100), 0);
  ::close(fd);
  EXPECT_THROW(Segment::attach(name, SegmentKind::kScratch), ProtocolError);
  ::shm_unlink(("/" + name).c_str());
}

TEST(SegmentTest, ProcessStartTicks) {
  EXPECT_GT(process_start_ticks(::getpid()), 0u);
  EXPECT_EQ(process_start_ticks(0x3fffffff), 0u);
}

TEST(SegmentTest, StaleSegmentsOfDeadRunsAreFoundAndRemoved) {
  // A child creates a segment and dies without removing it, as a crashed run would.
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  auto child = ChildProcess::fork([&] {
    std::string name = unique_segment_name("stale");
    Segment s = make_ready(name);
    s.disown();
    (void)!::write(fds[1], name.data(), name.size());
    ::pause();
    return 0;
  });
  char buffer[256] = {};
  ssize_t n = ::read(fds[0], buffer, sizeof buffer - 1);
  ::close(fds[0]);
  ::close(fds[1]);
  ASSERT_GT(n, 0);
  const std::string stale_name(buffer, static_cast<std::size_t>(n));
  const std::string live_name = unique_segment_name("live");
  Segment live = make_ready(live_name);

  auto find = [](const std::string& name) {
    auto all = list_segments();
    auto it = std::find_if(all.begin(), all.end(), [&](auto& s) { return s.name == name; });
    return it == all.end() ? std::optional<SegmentInfo>{} : std::optional(*it);
  };
  ASSERT_TRUE(find(stale_name));
  EXPECT_TRUE(find(stale_name)->creator_alive);  // not stale while its creator lives
  EXPECT_EQ(find(stale_name)->creator_pid, child.pid());

  child.kill(SIGKILL);
  // Killed and not reaped yet, a zombie: its creator is dead all the same (a killed run's
  // orphans stay zombies until pid 1 reaps them, which in some containers is never).
  for (int i = 0; i < 500 && process_state(child.pid()) != 'Z'; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(process_state(child.pid()), 'Z');
  EXPECT_EQ(process_start_ticks(child.pid()), 0u);
  // Stale from here: any Troupe program starting in parallel (ctest -j) may remove it first.
  if (auto info = find(stale_name)) {
    EXPECT_FALSE(info->creator_alive);
  }
  child.wait();
  if (auto info = find(stale_name)) {
    EXPECT_FALSE(info->creator_alive);
  }

  (void)remove_stale_segments();
  EXPECT_FALSE(exists_in_dev_shm(stale_name));
  EXPECT_TRUE(exists_in_dev_shm(live_name));  // a live run's segment is kept
}

// A process whose main thread ended while another thread runs reads as a zombie in its stat
// file, and is alive: its segments are not stale. Once it is killed whole, it is dead.
TEST(SegmentTest, AProcessWhoseMainThreadEndedLives) {
  auto child = ChildProcess::fork([] {
    std::thread([] { ::pause(); }).detach();
    // Ends this thread only: pthread_exit would unwind into the fork helper's catch-all.
    ::syscall(SYS_exit, 0);
    return 0;
  });
  for (int i = 0; i < 500 && process_state(child.pid()) != 'Z'; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(process_state(child.pid()), 'Z');
  EXPECT_GT(process_start_ticks(child.pid()), 0u);
  child.kill(SIGKILL);
  std::uint64_t ticks = 1;
  for (int i = 0; i < 500 && (ticks = process_start_ticks(child.pid())) != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(ticks, 0u);
  child.wait();
}

TEST(SegmentTest, MoveTransfersOwnership) {
  const std::string name = unique_segment_name("move");
  Segment a = make_ready(name);
  Segment b = std::move(a);
  EXPECT_TRUE(b.owns_name());
  EXPECT_FALSE(a.owns_name());  // NOLINT(bugprone-use-after-move): checking the moved-from state
  b = make_ready(unique_segment_name("move2"));
  EXPECT_FALSE(exists_in_dev_shm(name));  // assignment released the first one
}

}  // namespace
}  // namespace troupe::shm
