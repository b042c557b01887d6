// troupe-shm: lists Troupe's shared-memory segments in /dev/shm and removes those of dead runs.
//
//   troupe-shm list     name, size, creator pid, and whether the creator still lives
//   troupe-shm clean    remove the segments whose creator is dead (live runs are untouched)
#include <cstdio>
#include <cstring>
#include <exception>

#include "troupe/shm/segment.hpp"

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: troupe-shm list | clean\n"
               "  list   show Troupe segments in /dev/shm and whether their creator lives\n"
               "  clean  remove the segments of dead runs (by creator pid)\n");
  return 2;
}

int list() {
  const auto segments = troupe::shm::list_segments();
  std::printf("%-48s %12s %8s %s\n", "NAME", "BYTES", "PID", "STATE");
  for (const auto& s : segments) {
    std::printf("%-48s %12zu %8d %s%s\n", s.name.c_str(), s.size, s.creator_pid,
                s.creator_alive ? "live" : "stale", s.header_valid ? "" : " (no valid header)");
  }
  std::printf("%zu segment(s)\n", segments.size());
  return 0;
}

int clean() {
  const auto removed = troupe::shm::remove_stale_segments();
  for (const auto& name : removed) std::printf("removed %s\n", name.c_str());
  std::printf("%zu stale segment(s) removed\n", removed.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return usage();
  try {
    if (std::strcmp(argv[1], "list") == 0) return list();
    if (std::strcmp(argv[1], "clean") == 0) return clean();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "troupe-shm: %s\n", e.what());
    return 1;
  }
  return usage();
}
