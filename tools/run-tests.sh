#!/usr/bin/env bash
# Builds Troupe and runs every test: the whole suite in the dev build, then the core and shm
# tests again under AddressSanitizer+UBSan and under ThreadSanitizer. Then checks that nothing
# is left behind (processes, /dev/shm segments), after failing tests too. Exits non-zero on
# any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

# Every process of this run carries the mark in its environment (forked servers inherit it),
# so that the check below finds this run's processes and no one else's.
export TROUPE_TEST_RUN="run-tests.$$.$RANDOM"

# run_preset PRESET [ctest args...]; $RUNNER (if set) prefixes the ctest command.
run_preset() {
  local preset=$1; shift
  echo "=== ${preset}: configure and build"
  # Each step returns on failure by hand: called as `run_preset ... || failed=1`, this
  # function runs with `set -e` off (bash ignores it in a `||` list), and a failed build would
  # otherwise go on to test the binaries an earlier build left.
  cmake --preset "$preset" -G Ninja >/dev/null || { echo "FAIL: ${preset}: configure"; return 1; }
  cmake --build --preset "$preset" -j "$jobs" || { echo "FAIL: ${preset}: build"; return 1; }
  echo "=== ${preset}: test $*"
  local rc=0
  ${RUNNER:-} ctest --preset "$preset" -j "$jobs" --no-tests=error "$@" || rc=$?
  # Which suite left a segment, if one is left at the end (a later suite's start may remove
  # it: only the check at the end fails the run).
  ls /dev/shm | grep '^troupe\.' | sed "s/^/    in \/dev\/shm after ${preset}: /" || true
  return "$rc"
}

failed=0
run_preset dev || failed=1
run_preset asan -L 'core|shm' || failed=1
# TSan needs the address-space layout it was built for: newer kernels randomise mmap more than
# g++ 12's TSan accepts, so its tests run with randomisation off (setarch -R).
TSAN_OPTIONS="halt_on_error=1 suppressions=$PWD/tests/tsan.supp ${TSAN_OPTIONS:-}" \
  RUNNER="setarch $(uname -m) -R" \
  run_preset tsan -L 'core|shm' || failed=1

# No process of the suite may outlive it. One that has exited but not yet been reaped (a
# zombie, whose parent is gone) is PID 1's to reap and is not counted; a live one gets a few
# seconds to finish ending.
survivors() {
  local pid
  for pid in $(pgrep -U "$(id -u)" . || true); do
    [ "$pid" = "$$" ] && continue
    if { tr '\0' '\n' < "/proc/$pid/environ"; } 2>/dev/null | grep -qx "TROUPE_TEST_RUN=$TROUPE_TEST_RUN" &&
       ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null; then
      ps -o pid=,comm=,args= -p "$pid" || true
    fi
  done
}
left=""
for _ in 1 2 3 4 5; do
  left=$(survivors)
  [ -z "$left" ] && break
  sleep 1
done
if [ -n "$left" ]; then
  echo "FAIL: processes of the test suite still running:"; echo "$left"; failed=1
fi

leftover=$(ls /dev/shm | grep '^troupe\.' || true)
if [ -n "$leftover" ]; then
  echo "FAIL: Troupe segments left in /dev/shm:"; failed=1
  # Who made them, and whether that process is still there (a zombie, a stopped one...).
  if build/dev/tools/troupe-shm list; then
    for pid in $(build/dev/tools/troupe-shm list | awk 'NR > 1 && $3 ~ /^[0-9]+$/ {print $3}' | sort -u); do
      ps -o pid=,ppid=,stat=,etime=,args= -p "$pid" || echo "$pid: gone"
    done
  else
    echo "$leftover"
  fi
fi
if [ "$failed" -ne 0 ]; then
  echo "=== FAILED"; exit 1
fi
echo "=== all tests passed"
