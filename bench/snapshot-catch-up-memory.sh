#!/usr/bin/env bash
# bench/snapshot-catch-up-memory.sh: the peak memory of a member that catches up by a
# large snapshot (BENCHMARKS.md, "How memory came down").
#
#   bench/snapshot-catch-up-memory.sh [SERVER_BINARY ...]   (default: build/src/server/synod)
#
# For each binary: a fresh three-member cluster on 127.0.0.1:54371-54382 with
# --snapshot-count 2000; member 3 is killed, 50,000 puts of 4 KiB values are written
# through the other two (synod-bench), member 3 is started again and catches up (by a
# snapshot of about 380 MiB); the script prints how long that took and the peak resident
# memory (VmHWM) of member 3 and of member 1. Data goes to a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=build/bench/synod-bench
[[ $# -gt 0 ]] || set -- build/src/server/synod
CLUSTER="m1=http://127.0.0.1:54380,m2=http://127.0.0.1:54381,m3=http://127.0.0.1:54382"

revision() {
  ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:$1" endpoint status -w json 2>/dev/null |
    /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)[0]['Status']['header']['revision'])" \
      2>/dev/null || true
}

for bin in "$@"; do
  data=$(mktemp -d /tmp/synod-catch-up-XXXXXX)
  pids=()
  start() {
    local i=$1
    "$bin" --name "m$i" --data-dir "$data/m$i" \
      --listen-client-urls "http://127.0.0.1:5437$i" --advertise-client-urls "http://127.0.0.1:5437$i" \
      --listen-peer-urls "http://127.0.0.1:5438$((i - 1))" \
      --initial-advertise-peer-urls "http://127.0.0.1:5438$((i - 1))" \
      --initial-cluster "$CLUSTER" --initial-cluster-token catch-up-memory \
      --initial-cluster-state new --snapshot-count 2000 >"$data/m$i.log" 2>&1 &
    pids[$i]=$!
  }
  start 1; start 2; start 3
  sleep 2
  kill -9 "${pids[3]}"; wait "${pids[3]}" 2>/dev/null || true
  "$BENCH" --endpoints 127.0.0.1:54371,127.0.0.1:54372 --conns 4 --clients 32 --total 50000 \
    --key-space 50000 --seq-keys --val-size 4096 put >/dev/null 2>&1
  started=$(date +%s%N)
  start 3
  for _ in $(seq 600); do
    sleep 0.2
    a=$(revision 54373); b=$(revision 54371)
    [[ -n $a && $a == "$b" ]] && break
  done
  took_ms=$((($(date +%s%N) - started) / 1000000))
  printf '%s: member 3 caught up in %d ms (revision %s); VmHWM member 3 %s, member 1 %s\n' \
    "$bin" "$took_ms" "$a" "$(awk '/VmHWM/ {print $2 " " $3}' "/proc/${pids[3]}/status")" \
    "$(awk '/VmHWM/ {print $2 " " $3}' "/proc/${pids[1]}/status")"
  kill "${pids[1]}" "${pids[2]}" "${pids[3]}"
  wait 2>/dev/null || true
  rm -rf "$data"
done
