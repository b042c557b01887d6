// Troupe where futex_waitv cannot be used (a kernel before Linux 5.16, or a seccomp filter
// that does not know the call): this binary forbids it with a seccomp filter of its own before
// main() runs, so that the program, its fork server and every server it launches take the
// paths that nap instead of sleeping on several doorbells at once. The program waiting on
// several servers, a server with one client and one with several must still answer, in order
// and without hanging.
#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "support/foreign_server.hpp"
#include "support/test_agents.hpp"
#include "troupe/core/wake_word.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;

#if defined(__x86_64__)
constexpr std::uint32_t kAuditArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr std::uint32_t kAuditArch = AUDIT_ARCH_AARCH64;
#else
#error "no seccomp architecture for this target"
#endif

// Every futex_waitv fails with ENOSYS, as on a kernel without it; inherited by every child.
// Installed before main(), before any thread starts (the filter covers the calling thread and
// what it creates). Holds the error if the filter could not be installed.
const std::string g_filter_error = [] {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kAuditArch, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_futex_waitv, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program{static_cast<unsigned short>(std::size(filter)), filter};
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
    return std::string("installing the seccomp filter: ") + std::strerror(errno);
  }
  return std::string();
}();

class NoFutexWaitvTest : public testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(g_filter_error, "") << "the test's premise failed"; }
};

using test::end_of;
using test::start_of;

// In this process, in a server it launches, and in a server another program launched.
TEST_F(NoFutexWaitvTest, NoProcessMayUseTheCall) {
  EXPECT_FALSE(can_wait_on_several());
  auto launched = test::FutexProbe("P").to_dist({.lazy_launch = false});
  EXPECT_EQ(launched(Msg("u", "?")).content(), "no");
  test::ForeignServer server(TROUPE_FOREIGN_SERVER_PROGRAM);
  auto foreign = test::FutexProbe("P").to_dist({.port = server.port, .launch_server = false});
  EXPECT_EQ(foreign(Msg("u", "?")).content(), "no");
}

// The seed's graph on six servers: the program waits on several at once (napping between
// looks), and the parallelism and the results are those of the usual path.
TEST_F(NoFutexWaitvTest, AProgramWaitingOnSeveralServersGetsEveryResult) {
  // Untimed first calls that wait, with one pending input and with two: under
  // ThreadSanitizer (the tsan preset) each first takes ~60 ms, while it symbolises the stacks
  // of the oneTBB races it suppresses; elsewhere this changes nothing.
  auto warm = test::Counter("W").to_dist({.lazy_launch = false});
  Msg one = warm(warm(Msg("u", "w")));
  ASSERT_TRUE(warm({one, warm(one)}).wait_for(30s)) << "the untimed warm-up calls";
  const auto [x, y, z, w, e, f, agents] = test::run_seed_graph({{"sleep_ms", 100}});
  ASSERT_TRUE(f.wait_for(30s));
  EXPECT_EQ(f.content(), "F(D(B(A()))(C(A())))(E())");
  EXPECT_LT(start_of(y), end_of(z));
  EXPECT_LT(start_of(z), end_of(y));
  EXPECT_LT(start_of(e), end_of(x));
}

// A server with one client sleeps on that ring's doorbell alone; after idling it still takes
// calls, and many in flight keep their order.
TEST_F(NoFutexWaitvTest, AServerWithOneClientAnswersAfterIdling) {
  auto a = test::Counter("A").to_dist({.lazy_launch = false});
  EXPECT_EQ(a(Msg("u", "1")).content(), "A:1:1");
  std::this_thread::sleep_for(200ms);  // the server goes to sleep
  Msg after_idle = a(Msg("u", "2"));
  ASSERT_TRUE(after_idle.wait_for(10s));
  EXPECT_EQ(after_idle.content(), "A:2:2");
  std::vector<Msg> results;
  for (int i = 0; i < 5000; ++i) results.push_back(a(Msg("u", std::to_string(i))));
  ASSERT_TRUE(wait_all(results, 30s));
  for (int i = 0; i < 5000; ++i) {
    ASSERT_EQ(results[i].content(), "A:" + std::to_string(i + 3) + ":" + std::to_string(i));
  }
}

// A server with several clients (the launcher's link of the program that started it, and
// this program's) naps between looks at their rings, and answers after idling.
TEST_F(NoFutexWaitvTest, AServerWithSeveralClientsAnswersAfterIdling) {
  test::ForeignServer server(TROUPE_FOREIGN_SERVER_PROGRAM);
  auto a = test::Counter("A").to_dist({.port = server.port, .launch_server = false});
  EXPECT_EQ(a(Msg("u", "1")).content(), "A:1:1");
  EXPECT_EQ(a.server().info().clients, 2u);
  std::this_thread::sleep_for(200ms);  // the server naps
  std::vector<Msg> results;
  for (int i = 0; i < 1000; ++i) results.push_back(a(Msg("u", std::to_string(i))));
  ASSERT_TRUE(wait_all(results, 30s));
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(results[i].content(), "A:" + std::to_string(i + 2) + ":" + std::to_string(i));
  }
}

}  // namespace
}  // namespace troupe
