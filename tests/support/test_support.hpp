#pragma once
// Helpers shared by the tests.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace troupe::test {

using namespace std::chrono_literals;

/// Keeps this thread on its core for `duration` (a computing agent, a pacing that must not
/// sleep).
inline void busy_for(std::chrono::nanoseconds duration) {
  for (const auto until = std::chrono::steady_clock::now() + duration;
       std::chrono::steady_clock::now() < until;) {
  }
}

/// FNV-1a over bytes: the checksum stress tests carry in each message.
inline std::uint64_t checksum(std::span<const std::byte> bytes) {
  std::uint64_t h = 1469598103934665603ULL;
  for (std::byte b : bytes) {
    h ^= static_cast<std::uint8_t>(b);
    h *= 1099511628211ULL;
  }
  return h;
}

/// A test message: [u64 sequence][u64 checksum of the rest][random bytes], at least 16 bytes.
inline std::vector<std::byte> make_message(std::uint64_t sequence, std::size_t size,
                                           std::mt19937_64& rng) {
  std::vector<std::byte> m(std::max<std::size_t>(size, 16));
  for (std::size_t i = 16; i < m.size(); ++i) m[i] = static_cast<std::byte>(rng());
  const std::uint64_t sum = checksum(std::span(m).subspan(16));
  std::memcpy(m.data(), &sequence, 8);
  std::memcpy(m.data() + 8, &sum, 8);
  return m;
}

/// Checks a message made by make_message; returns its sequence number, or ~0 if corrupt.
inline std::uint64_t check_message(std::span<const std::byte> m) {
  if (m.size() < 16) return ~std::uint64_t{0};
  std::uint64_t sequence = 0, sum = 0;
  std::memcpy(&sequence, m.data(), 8);
  std::memcpy(&sum, m.data() + 8, 8);
  return checksum(m.subspan(16)) == sum ? sequence : ~std::uint64_t{0};
}

/// The state letter of a process (/proc/<pid>/stat field 3: 'R', 'S', 'Z'...), or 0 if there
/// is no such process.
inline char process_state(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return 0;
  const auto paren = line.rfind(')');  // the command name may hold spaces and parentheses
  return paren != std::string::npos && paren + 2 < line.size() ? line[paren + 2] : 0;
}

}  // namespace troupe::test
