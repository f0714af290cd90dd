#!/usr/bin/env bash
# synod's integration tests: real member processes driven by real clients (etcdctl and
# python3-etcd3). Runs every test module (or the modules / tests given as arguments)
# with /usr/bin/python3 -m unittest, prints a summary, exits non-zero on any failure.
#
#   tests/integration/run.sh                              # everything, against synod
#   tests/integration/run.sh test_faults                  # one module
#   tests/integration/run.sh test_etcdctl.WatchTest       # one class (or Class.test_name)
#   SYNOD_TEST_FLAGS=--consensus=multi-paxos tests/integration/run.sh
#   SYNOD_BIN=/usr/bin/etcd tests/integration/run.sh      # the same tests against etcd
#
# Environment: SYNOD_BIN (default build/src/server/synod), SYNOD_TEST_FLAGS (extra member
# flags), SYNOD_TEST_KEEP=1 (keep data dirs and logs), SYNOD_TEST_TIMEOUT (seconds per
# module, default 600). Missing clients are a failure, not a skip: scripts/install-deps.sh
# installs etcd-client and python3-etcd3.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
PYTHON=/usr/bin/python3
export PYTHONDONTWRITEBYTECODE=1
export SYNOD_BIN="${SYNOD_BIN:-$root/build/src/server/synod}"
timeout_s="${SYNOD_TEST_TIMEOUT:-600}"

missing=()
command -v etcdctl >/dev/null || missing+=("etcdctl (Debian package etcd-client)")
[ -x "$PYTHON" ] || missing+=("$PYTHON")
"$PYTHON" -c 'import etcd3' 2>/dev/null || missing+=("python module etcd3 (Debian package python3-etcd3)")
[ -x "$SYNOD_BIN" ] || missing+=("server binary $SYNOD_BIN (cmake --build build -j 1 --target synod)")
if [ ${#missing[@]} -gt 0 ]; then
  printf 'integration tests: FAILED, missing: %s\n' "${missing[@]}" >&2
  exit 1
fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in "$here"/test_*.py; do targets+=("$(basename "$f" .py)"); done
fi

logdir="$(mktemp -d "${TMPDIR:-/tmp}/synod-it-run-XXXXXX")"
echo "integration tests: server $SYNOD_BIN${SYNOD_TEST_FLAGS:+ ($SYNOD_TEST_FLAGS)}; output in $logdir"
status=0
summary=()
start_all=$(date +%s)
for target in "${targets[@]}"; do
  log="$logdir/$target.log"
  start=$(date +%s)
  echo
  echo "=== $target"
  (cd "$here" && timeout --signal=TERM --kill-after=30 "$timeout_s" \
     "$PYTHON" -m unittest -v "$target") 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  secs=$(( $(date +%s) - start ))
  # From unittest's own tail: "Ran N tests", "OK (skipped=S)" or "FAILED (failures=F,
  # errors=E, skipped=S)"; each failure also has a "FAIL: name (id)" header.
  ran=$(grep -oE '^Ran [0-9]+ test' "$log" | tail -1 | grep -oE '[0-9]+' || true)
  ran=${ran:-0}
  skipped=$(grep -E '^(OK|FAILED) \(' "$log" | tail -1 | grep -oE 'skipped=[0-9]+' | grep -oE '[0-9]+' || true)
  skipped=${skipped:-0}
  failed=$(grep -cE '^(FAIL|ERROR): ' "$log")
  passed=$(( ran - failed - skipped ))
  [ "$passed" -lt 0 ] && passed=0
  if [ "$rc" -ne 0 ]; then
    status=1
    [ "$rc" -eq 124 ] && summary+=("$target: TIMED OUT after ${timeout_s}s")
  fi
  summary+=("$(printf '%-40s %3d passed %3d failed %3d skipped  %4ds  exit %d' \
    "$target" "$passed" "$failed" "$skipped" "$secs" "$rc")")
  while IFS= read -r line; do
    summary+=("    $line")
  done < <(grep -E '^(FAIL|ERROR): ' "$log" | sed -E 's/^(FAIL|ERROR): ([^ ]+) \(([^)]*)\)/\1 \3/')
done

echo
echo "=== summary ($(( $(date +%s) - start_all ))s; logs in $logdir)"
printf '%s\n' "${summary[@]}"
if [ "$status" -ne 0 ]; then
  echo "integration tests: FAILED (output kept in $logdir)"
else
  echo "integration tests: passed"
  [ "${SYNOD_TEST_KEEP:-}" = 1 ] || rm -rf "$logdir"
fi
exit "$status"
