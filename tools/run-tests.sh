#!/usr/bin/env bash
# Builds Troupe and runs every test: the whole suite in the dev build, then the core and shm
# tests again under AddressSanitizer+UBSan and under ThreadSanitizer. Exits non-zero on any
# failure, and checks that nothing is left behind (processes, /dev/shm segments).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

# run_preset PRESET [ctest args...]; $RUNNER (if set) prefixes the ctest command.
run_preset() {
  local preset=$1; shift
  echo "=== ${preset}: configure and build"
  cmake --preset "$preset" -G Ninja >/dev/null
  cmake --build --preset "$preset" -j "$jobs"
  echo "=== ${preset}: test $*"
  ${RUNNER:-} ctest --preset "$preset" -j "$jobs" "$@"
}

run_preset dev
run_preset asan -L 'core|shm'
# TSan needs the address-space layout it was built for: newer kernels randomise mmap more than
# g++ 12's TSan accepts, so its tests run with randomisation off (setarch -R).
TSAN_OPTIONS="halt_on_error=1 suppressions=$PWD/tests/tsan.supp ${TSAN_OPTIONS:-}" \
  RUNNER="setarch $(uname -m) -R" \
  run_preset tsan -L 'core|shm'

# No process of the suite may outlive it: agent servers (troupe-server), fork servers
# (troupe-fork), or any other process of a binary in build/. A zombie is being reaped by PID 1
# and gets a few seconds to go.
survivors() {
  ps -eo pid=,stat=,comm=,args= |
    awk -v tree="$PWD/build/" '$2 !~ /^Z/ && ($3 == "troupe-server" || $3 == "troupe-fork" ||
                                             index($4, tree) == 1)' || true
}
for _ in 1 2 3 4 5; do
  left=$(survivors)
  [ -z "$left" ] && break
  sleep 1
done
if [ -n "$left" ]; then
  echo "FAIL: processes of the test suite still running:"; echo "$left"; exit 1
fi

leftover=$(ls /dev/shm | grep '^troupe\.' || true)
if [ -n "$leftover" ]; then
  echo "FAIL: Troupe segments left in /dev/shm:"; echo "$leftover"; exit 1
fi
echo "=== all tests passed"
