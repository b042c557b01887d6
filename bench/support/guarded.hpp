#pragma once
// A benchmark case that fails with the text of what it throws, instead of ending the program.
#include <benchmark/benchmark.h>

#include <exception>

namespace troupe::bench {

/// Runs one case; an exception (a failed check, a stall, a system call) fails it with its text.
/// The case's RAII objects kill and reap its children and remove its segments on the way out.
template <class Body>
void guarded(benchmark::State& state, Body&& body) {
  try {
    body();
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

}  // namespace troupe::bench
