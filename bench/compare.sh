#!/usr/bin/env bash
# bench/compare.sh: synod and etcd measured side by side on this machine, with synod-bench.
#
# How long: the full comparison (the default) takes about 12 minutes on two cores, plus
# the build if one is due — per system about 6 minutes: 3 rounds of 13 runs of 8 s, 100k
# puts for the footprint (20-45 s), 10k preloaded keys, start and stop. More if a system
# misses its --rate. `--quick` (1 round of 2 s runs, 10k puts) takes about 1.5 minutes
# plus the build, and is for smoke-testing this script.
#
# What it does, for etcd (Debian's /usr/bin/etcd) and then synod (build/src/server/synod),
# ONE AFTER THE OTHER — never both at once:
#   1. starts a fresh three-member cluster under a temp dir (same disk as everything
#      else), with the same flags for both systems (ports PORT_BASE.., default 52000);
#   2. footprint: 100k puts of 256-byte values on 100k distinct keys, then `du -sb` of
#      each member's data dir and its VmHWM/VmRSS at that point;
#   3. preloads 10k keys for the read workloads, then runs every workload (below) in
#      rounds: round 1 runs them all, then round 2, then round 3 (machine noise spreads
#      over the workloads instead of hitting one);
#   4. reads each member's VmHWM (peak resident memory over the whole session), VmRSS and
#      CPU time from /proc, then stops the members by pid (SIGTERM, SIGKILL after 30 s)
#      and waits until they are gone and their ports are free.
# bench/compare_report.py then takes the medians over the rounds and writes
#   bench/results/compare-<date>.json   every run, the medians, the facts
#   bench/results/compare-<date>.md     the table: medians, ratio synod/etcd, direction
#   bench/results/compare-<date>-latency.png, compare-<date>-put-clients.png (gnuplot)
# (--quick writes compare-<date>-quick.*, which git ignores.)
#
# Anomalies (a member that dies, a run that fails or hangs past its deadline, errors, a
# stall — an operation slower than 1 s —, an open-loop run behind its rate) are listed in
# the report; then the temp dir, with every member's log and every run's output, is kept
# (the data dirs only with --keep) and its path printed, and the tail of each member log
# of the system concerned is copied next to the report.
#
#   bench/compare.sh [--quick] [--runs N] [--duration 8s] [--keep] [--out DIR]
#   PORT_BASE=52000 BUILD_JOBS=1 bench/compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

QUICK=0 KEEP=0 RUNS="" DURATION="" OUT="$ROOT/bench/results"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --keep) KEEP=1 ;;
    --runs) RUNS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --out) OUT=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "compare.sh: unknown argument \"$1\" (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [[ $QUICK == 1 ]]; then
  RUNS=${RUNS:-1} DURATION=${DURATION:-2s} FOOTPRINT_PUTS=10000 MODE=quick SUFFIX=-quick
else
  RUNS=${RUNS:-3} DURATION=${DURATION:-8s} FOOTPRINT_PUTS=100000 MODE=full SUFFIX=""
fi
PRELOAD_KEYS=10000      # the key space of the KV workloads
PORT_BASE=${PORT_BASE:-52000}
CONNS=12                # gRPC connections, 4 to each member
STOP_GRACE_S=30         # SIGTERM, then this long before SIGKILL
READY_TIMEOUT_S=60
DATE=$(date +%Y-%m-%d)
PY=/usr/bin/python3      # stdlib only

# name|synod-bench arguments. Every run also gets --endpoints (all three members)
# --conns 12 --val-size 256 --key-space 10000 --duration and --json.
WORKLOADS=(
  "put|put --clients 100"
  "put-rate|put --clients 100 --rate 1000"
  "range-l|range --clients 100 --consistency l --preload 0"
  "range-s|range --clients 100 --consistency s --preload 0"
  "mixed|mixed --clients 100 --read-ratio 0.9 --preload 0"
  "txn-put|txn-put --clients 100"
  "watch|watch --watchers 100 --clients 10 --rate 100"
  "lock|lock --clients 50 --locks 10"
  "lease|lease --clients 100 --keepalives 1"
  # Put throughput against clients; 100 clients is the "put" run above.
  "put-c1|put --clients 1"
  "put-c10|put --clients 10"
  "put-c50|put --clients 50"
  "put-c200|put --clients 200"
)

# --- build ------------------------------------------------------------------------------

scripts/install-deps.sh
if [[ ! -f build/build.ninja ]]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build build -j "${BUILD_JOBS:-1}" --target synod synod-bench

# Private copies: others rebuild build/ on this machine, and a binary replaced in the
# middle of the comparison would measure two different programs.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/synod-compare.XXXXXX")
mkdir -p "$WORK/bin" "$OUT"
cp build/src/server/synod build/bench/synod-bench "$WORK/bin/"
SYNOD="$WORK/bin/synod" BENCH="$WORK/bin/synod-bench" ETCD=/usr/bin/etcd
FACTS="$WORK/facts.tsv"      # system <TAB> key <TAB> value
MANIFEST="$WORK/runs.tsv"    # one line per synod-bench run
: >"$FACTS"
: >"$MANIFEST"

# etcd reads ETCD_* variables as flags: none of the caller's may reach it.
while read -r v; do unset "$v"; done < <(compgen -e | grep '^ETCD' || true)
export ETCDCTL_API=3

fact() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$FACTS"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
ANOMALIES=0
anomaly() {
  ANOMALIES=$((ANOMALIES + 1))
  fact "$1" anomaly "$2"
  echo "compare: ANOMALY ($1): $2" >&2
}

fact all mode "$MODE"
fact all runs "$RUNS"
fact all duration "$DURATION"
fact all footprint_puts "$FOOTPRINT_PUTS"
fact all conns "$CONNS"
fact all date "$(date -Is)"
fact all host_nproc "$(nproc)"
fact all host_cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
fact all host_mem_kb "$(awk '/MemTotal/{print $2}' /proc/meminfo)"
fact all host_disk "$(df -h --output=source,fstype "$WORK" | tail -1 | tr -s ' ')"
fact all load_start "$(loadavg)"
fact all git_commit "$(git rev-parse HEAD)"
# Changes that could make the binaries differ from the commit (earlier results do not).
fact all git_dirty "$(git status --porcelain --untracked-files=no -- . ':(exclude)bench/results' |
  awk '{print $2}' | paste -sd' ')"
fact all synod_sha256 "$(sha256sum "$SYNOD" | cut -c1-16)"
fact all etcd_version "$($ETCD --version | head -1)"
for w in "${WORKLOADS[@]}"; do fact all "workload.${w%%|*}" "${w#*|}"; done

# --- one cluster --------------------------------------------------------------------------

PIDS=() SYSTEM="" NAMES=(s1 s2 s3)
client_port() { echo $((PORT_BASE + 10 * $1)); }
peer_port() { echo $((PORT_BASE + 10 * $1 + 1)); }
ENDPOINTS="" CLUSTER=""
for i in 0 1 2; do
  ENDPOINTS+="${ENDPOINTS:+,}127.0.0.1:$(client_port $i)"
  CLUSTER+="${CLUSTER:+,}${NAMES[$i]}=http://127.0.0.1:$(peer_port $i)"
done
fact all endpoints "$ENDPOINTS"

ports_in_use() {
  local i p busy=""
  for i in 0 1 2; do
    for p in $(client_port $i) $(peer_port $i); do
      [[ -n $(ss -Htln "sport = :$p") ]] && busy+=" $p"
    done
  done
  echo "$busy"
}

start_cluster() {
  local sys=$1 bin i busy
  bin=$([[ $sys == etcd ]] && echo "$ETCD" || echo "$SYNOD")
  busy=$(ports_in_use)
  if [[ -n $busy ]]; then
    echo "compare: ports$busy are in use (someone else's?); choose PORT_BASE=..." >&2
    return 1
  fi
  mkdir -p "$WORK/$sys"
  SYSTEM=$sys PIDS=()
  for i in 0 1 2; do
    # The same flags for both systems (the defaults of both, spelled out).
    "$bin" --name "${NAMES[$i]}" --data-dir "$WORK/$sys/${NAMES[$i]}" \
      --listen-client-urls "http://127.0.0.1:$(client_port $i)" \
      --advertise-client-urls "http://127.0.0.1:$(client_port $i)" \
      --listen-peer-urls "http://127.0.0.1:$(peer_port $i)" \
      --initial-advertise-peer-urls "http://127.0.0.1:$(peer_port $i)" \
      --initial-cluster "$CLUSTER" --initial-cluster-token synod-compare \
      --initial-cluster-state new \
      --heartbeat-interval 100 --election-timeout 1000 --snapshot-count 100000 \
      >"$WORK/$sys/${NAMES[$i]}.log" 2>&1 &
    PIDS+=($!)
    fact "$sys" "member.${NAMES[$i]}.pid" "${PIDS[$i]}"
  done
  local deadline=$((SECONDS + READY_TIMEOUT_S))
  while ((SECONDS < deadline)); do
    members_alive "$sys" || return 1
    if etcdctl --endpoints="$ENDPOINTS" --dial-timeout=1s --command-timeout=2s \
      endpoint health >/dev/null 2>&1; then
      fact "$sys" started "$(date -Is)"
      return 0
    fi
    sleep 0.3
  done
  anomaly "$sys" "the cluster was not healthy ${READY_TIMEOUT_S}s after start"
  return 1
}

# Returns 1 (and records it) when a member has exited.
members_alive() {
  local sys=$1 i ok=0
  for i in 0 1 2; do
    if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
      if [[ ! -e "$WORK/$sys/${NAMES[$i]}.dead" ]]; then
        touch "$WORK/$sys/${NAMES[$i]}.dead"
        local rc=0
        wait "${PIDS[$i]}" 2>/dev/null || rc=$?
        anomaly "$sys" "member ${NAMES[$i]} (pid ${PIDS[$i]}) exited early, status $rc; last log line: $(tail -n1 "$WORK/$sys/${NAMES[$i]}.log")"
      fi
      ok=1
    fi
  done
  return $ok
}

# key prefix: VmHWM, VmRSS (kB) and CPU seconds of each live member.
snapshot_members() {
  local sys=$1 prefix=$2 i pid hz
  hz=$(getconf CLK_TCK)
  for i in 0 1 2; do
    pid=${PIDS[$i]}
    [[ -r /proc/$pid/status ]] || continue
    fact "$sys" "$prefix.${NAMES[$i]}.vmhwm_kb" "$(awk '/^VmHWM/{print $2}' "/proc/$pid/status")"
    fact "$sys" "$prefix.${NAMES[$i]}.vmrss_kb" "$(awk '/^VmRSS/{print $2}' "/proc/$pid/status")"
    fact "$sys" "$prefix.${NAMES[$i]}.threads" "$(awk '/^Threads/{print $2}' "/proc/$pid/status")"
    fact "$sys" "$prefix.${NAMES[$i]}.cpu_s" \
      "$(awk -v hz="$hz" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$pid/stat")"
  done
}

# key prefix: apparent (du -sb) and allocated sizes of each data dir and of its sub-dirs.
snapshot_disk() {
  local sys=$1 prefix=$2 i dir sub
  sync
  for i in 0 1 2; do
    dir="$WORK/$sys/${NAMES[$i]}"
    fact "$sys" "$prefix.${NAMES[$i]}.du_bytes" "$(du -sb "$dir" | cut -f1)"
    fact "$sys" "$prefix.${NAMES[$i]}.alloc_bytes" "$(du -s --block-size=1 "$dir" | cut -f1)"
    while read -r sub; do
      fact "$sys" "$prefix.${NAMES[$i]}.sub.${sub#"$dir"/}" \
        "$(du -sb "$sub" | cut -f1) $(du -s --block-size=1 "$sub" | cut -f1)"
    done < <(find "$dir" -mindepth 1 -maxdepth 2 -type d | sort)
  done
  etcdctl --endpoints="$ENDPOINTS" --command-timeout=5s endpoint status -w json \
    >"$WORK/$sys/$prefix-status.json" 2>"$WORK/$sys/$prefix-status.err" ||
    anomaly "$sys" "etcdctl endpoint status failed (so the leader is unknown): $(tail -n1 "$WORK/$sys/$prefix-status.err")"
}

# Whether Watch and Maintenance answer at all (the report says why a row is n/a): a watch
# that stays open, a Maintenance.Status. (etcdctl's lock is a client-side recipe, not the
# v3lock service: synod-bench's errors tell about that one.)
probe_services() {
  local sys=$1 one=${ENDPOINTS%%,*} rc out
  rc=0
  out=$(timeout 3 etcdctl --endpoints="$one" watch compare-probe 2>&1) || rc=$?
  fact "$sys" service.watch "$([[ $rc == 124 ]] && echo ok || echo "fails: $(tail -n1 <<<"$out")")"
  rc=0
  out=$(timeout 10 etcdctl --endpoints="$one" endpoint status 2>&1) || rc=$?
  fact "$sys" service.maintenance "$([[ $rc == 0 ]] && echo ok || echo "fails: $(tail -n1 <<<"$out")")"
}

stop_cluster() {
  local sys=$SYSTEM i pid rc deadline
  [[ ${#PIDS[@]} -eq 0 ]] && return 0
  for i in 0 1 2; do kill -TERM "${PIDS[$i]}" 2>/dev/null || true; done
  for i in 0 1 2; do
    pid=${PIDS[$i]}
    deadline=$((SECONDS + STOP_GRACE_S))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      anomaly "$sys" "member ${NAMES[$i]} (pid $pid) still running ${STOP_GRACE_S}s after SIGTERM: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rc=0
    wait "$pid" 2>/dev/null || rc=$?
    [[ -e "$WORK/$sys/${NAMES[$i]}.dead" ]] || fact "$sys" "member.${NAMES[$i]}.exit_status" "$rc"
  done
  PIDS=()
  deadline=$((SECONDS + 30))
  while [[ -n $(ports_in_use) ]] && ((SECONDS < deadline)); do sleep 0.5; done
  fact "$sys" stopped "$(date -Is)"
}

on_exit() {
  local rc=$?
  stop_cluster || true
  if [[ $KEEP == 1 ]]; then
    echo "compare: member logs, data dirs and run outputs kept in $WORK" >&2
  elif [[ $rc -ne 0 || $ANOMALIES -gt 0 ]]; then
    rm -rf "$WORK"/*/s[123]/   # the data dirs (hundreds of MB); --keep keeps them
    echo "compare: member logs and run outputs kept in $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# --- one synod-bench run -------------------------------------------------------------------

duration_s() { # 8s, 500ms, 1m -> whole seconds, rounded up
  awk -v d="$1" 'BEGIN { n = d + 0; u = d; sub(/^[0-9.]+/, "", u);
    s = (u == "ms") ? n / 1000 : (u == "m") ? n * 60 : n; printf "%d", s + 0.999 }'
}

# name run args...: runs synod-bench, records a manifest line, checks the members.
bench() {
  local sys=$1 name=$2 run=$3
  shift 3
  local out="$WORK/$sys/runs/$name.r$run.json" err="$WORK/$sys/runs/$name.r$run.err"
  local limit=$(($(duration_s "$DURATION") + 180)) rc=0 load_before started snapshots
  local mark="$WORK/$sys/runs/$name.r$run.start"
  mkdir -p "$WORK/$sys/runs"
  touch "$mark"  # snapshot files newer than this were written during the run
  load_before=$(loadavg)
  started=$(date +%s%N)
  timeout --kill-after=15 "$limit" "$BENCH" "$@" --endpoints "$ENDPOINTS" --conns "$CONNS" \
    --val-size 256 --json --quiet >"$out" 2>"$err" || rc=$?
  # (A member may rename or remove a file while find walks: never fatal.)
  snapshots=$({ find "$WORK/$sys" -path '*/member/snap/*.snap' -type f -newer "$mark" \
    2>/dev/null || true; } | wc -l)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%.1f\t%s\t%s\n' "$sys" "$name" "$run" "$rc" "$load_before" \
    "$(loadavg)" "$((($(date +%s%N) - started) / 1000000))e-3" "$out" "$snapshots" >>"$MANIFEST"
  local summary
  summary=$("$PY" -c 'import json,sys
try:
  r = json.load(open(sys.argv[1]))
  print("%.0f %s/s  p50 %.2f  p99 %.2f ms  errors %d" % (r["throughput_ops_s"], r["unit"],
        r["latency_ms"]["p50"], r["latency_ms"]["p99"], r["errors_total"]))
except Exception:
  print("no result")' "$out")
  local snapshot_note=""
  ((snapshots == 0)) || snapshot_note=", snapshot files written: $snapshots"
  printf 'compare: %-5s %-9s run %s: %s (load %s)%s\n' "$sys" "$name" "$run" "$summary" \
    "$(loadavg)" "$snapshot_note"
  # Exit 0 with errors, or any other exit status: one line saying what went wrong.
  local problem
  problem=$("$PY" -c 'import json,sys
try:
  r = json.load(open(sys.argv[1]))
except Exception:
  sys.exit(0)
parts = []
if r["errors_total"]: parts.append("%d errors %s" % (r["errors_total"], r["errors"]))
if r["problem"]: parts.append("problem: " + r["problem"])
print("; ".join(parts))' "$out")
  case $rc in
    0) [[ -z $problem ]] || anomaly "$sys" "$name run $run: $problem" ;;
    124 | 137) anomaly "$sys" "$name run $run did not finish within ${limit}s (hang?): $problem $(tail -c 400 "$err")" ;;
    *) anomaly "$sys" "$name run $run: synod-bench exit status $rc${problem:+: $problem}$(tail -c 400 "$err" | sed 's/^/: /')" ;;
  esac
  members_alive "$sys"
}

session() {
  local sys=$1 run w name
  echo "compare: === $sys: starting a fresh three-member cluster (load $(loadavg))"
  fact "$sys" load_start "$(loadavg)"
  if ! start_cluster "$sys"; then
    anomaly "$sys" "the cluster did not start"
    stop_cluster
    return 0
  fi
  probe_services "$sys"
  echo "compare: $sys: footprint, $FOOTPRINT_PUTS puts on distinct keys"
  bench "$sys" footprint 1 put --clients 100 --total "$FOOTPRINT_PUTS" --seq-keys \
    --key-space "$FOOTPRINT_PUTS" --prefix footprint/ || true
  snapshot_disk "$sys" footprint
  snapshot_members "$sys" footprint
  bench "$sys" preload 1 put --clients 100 --total "$PRELOAD_KEYS" --seq-keys \
    --key-space "$PRELOAD_KEYS" || true
  for ((run = 1; run <= RUNS; run++)); do
    for w in "${WORKLOADS[@]}"; do
      name=${w%%|*}
      # shellcheck disable=SC2086  # the arguments are words
      if ! bench "$sys" "$name" "$run" ${w#*|} --key-space "$PRELOAD_KEYS" \
        --duration "$DURATION"; then
        anomaly "$sys" "a member is down: the rest of the $sys session is skipped"
        break 2
      fi
    done
  done
  snapshot_members "$sys" final
  snapshot_disk "$sys" final
  fact "$sys" load_end "$(loadavg)"
  stop_cluster
  echo "compare: === $sys: stopped (load $(loadavg))"
}

session etcd
session synod
fact all load_end "$(loadavg)"

# --- report ----------------------------------------------------------------------------------

PREFIX="$OUT/compare-$DATE$SUFFIX"
"$PY" bench/compare_report.py --facts "$FACTS" --manifest "$MANIFEST" --work "$WORK" \
  --out "$PREFIX"
troubled=$("$PY" -c 'import json,sys
print(" ".join(sorted({a["system"] for a in json.load(open(sys.argv[1]))["anomalies"]})))' \
  "$PREFIX.json")
for sys in etcd synod; do
  if [[ " $troubled " == *" $sys "* ]]; then
    for n in "${NAMES[@]}"; do
      [[ -f "$WORK/$sys/$n.log" ]] || continue
      echo "=== $WORK/$sys/$n.log (last 300 lines)"
      tail -n 300 "$WORK/$sys/$n.log"
    done >"$PREFIX-$sys-logs.txt"
    echo "compare: $sys member log tails in $PREFIX-$sys-logs.txt"
  fi
done
[[ -z $troubled ]] || ANOMALIES=$((ANOMALIES + 1))  # keep the outputs (see on_exit)
echo "compare: report in $PREFIX.md (anomalies: ${troubled:-none})"
