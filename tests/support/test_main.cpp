// The main() of every Troupe test binary: runs the tests, then fails the binary if it left a
// shared-memory segment of its own behind (and removes it), so that leaks show even when the
// test that leaked passed. Built twice: plain, and with the runtime started (troupe::init).
// Segments of crashed binaries are caught by the shm_no_leftovers test.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>

#include "troupe/shm/segment.hpp"
#ifdef TROUPE_TEST_WITH_RUNTIME
#include <troupe/troupe.hpp>
#endif

int main(int argc, char** argv) {
#ifdef TROUPE_TEST_WITH_RUNTIME
  troupe::init(argc, argv);  // first: forks the fork server before gtest or TBB start threads
#endif
  testing::InitGoogleTest(&argc, argv);
  int rc = RUN_ALL_TESTS();
#ifdef TROUPE_TEST_WITH_RUNTIME
  troupe::detail::Runtime::get()->shutdown();  // closes its channels: their segments go
#endif
  for (const auto& segment : troupe::shm::list_segments()) {
    if (segment.creator_pid == ::getpid()) {
      std::fprintf(stderr, "LEAK: test binary left shared-memory segment %s\n",
                   segment.name.c_str());
      ::shm_unlink(("/" + segment.name).c_str());
      rc = 1;
    }
  }
  return rc;
}
