#!/usr/bin/env bash
# synod's whole test suite, from a fresh Debian 12 machine:
#   1. installs what is missing (scripts/install-deps.sh),
#   2. builds with sanitizers (ASan + UBSan) and runs the core tests under them,
#   3. runs a random batch of simulator seeds (the first seed is printed: replayable), with
#      whole-state snapshots and with deferred ones (the store's flush, as the server),
#   4. builds the release configuration and runs every test with CTest.
# Environment: JOBS (parallel jobs, default: cores), SIM_SEEDS (random batch size).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
JOBS="${JOBS:-$(nproc)}"
SIM_SEEDS="${SIM_SEEDS:-200}"

step() { printf '\n=== %s\n' "$*"; }

step "sanitizer build (ASan + UBSan)"
# Optimised (-O2), so the simulator runs enough seeds in reasonable time.
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSYNOD_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$JOBS" --target core_tests
step "core tests under ASan + UBSan"
# The planted-bug hunts run many seeds; they run in the release build below.
ctest --test-dir build-asan -L core -E 'PlantedBugs' -j "$JOBS" --output-on-failure

step "release build"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$JOBS"

FIRST_SEED=$(( ( $(date +%s) % 1000000 ) * 1000 + 100000 ))
for engine in $(build/src/sim/synod-sim --list-engines); do
  for nodes in 3 5; do
    step "simulator: $engine, $nodes nodes, $SIM_SEEDS random seeds from $FIRST_SEED"
    build/src/sim/synod-sim --engine "$engine" --nodes "$nodes" --seeds "$SIM_SEEDS" \
      --first-seed "$FIRST_SEED" --faults all --jobs "$JOBS"
    # Snapshots as the server takes them: the store's flush, the state made on demand.
    step "simulator: $engine, $nodes nodes, deferred snapshots, $(( SIM_SEEDS / 2 )) random seeds from $FIRST_SEED"
    build/src/sim/synod-sim --engine "$engine" --nodes "$nodes" --seeds "$(( SIM_SEEDS / 2 ))" \
      --first-seed "$FIRST_SEED" --faults all --jobs "$JOBS" --deferred-snapshots
  done
done

step "all tests (release)"
ctest --test-dir build -j "$JOBS" --output-on-failure
