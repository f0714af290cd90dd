#!/usr/bin/env bash
# Installs what is missing, builds synod, and runs a local three-node cluster in the
# foreground until Ctrl-C (which stops the three members cleanly).
#
#   member   client URL               peer URL
#   s1       http://127.0.0.1:2379    http://127.0.0.1:2380
#   s2       http://127.0.0.1:22379   http://127.0.0.1:22380
#   s3       http://127.0.0.1:32379   http://127.0.0.1:32380
#
# Data lives under .cluster/ in the working tree (DATA=dir to choose another; remove it
# to start afresh). Extra arguments go to every member (try --consensus=multi-paxos on a
# fresh data dir). Logs: .cluster/s1.log etc.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target synod

DATA="${DATA:-$PWD/.cluster}"
mkdir -p "$DATA"
CLUSTER="s1=http://127.0.0.1:2380,s2=http://127.0.0.1:22380,s3=http://127.0.0.1:32380"
pids=()
stop() {
  echo
  echo "stopping the cluster..."
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  echo "stopped; data kept in $DATA"
}
trap stop INT TERM

for i in 1 2 3; do
  port=$([ "$i" = 1 ] && echo 2379 || echo "${i}2379")
  peer=$([ "$i" = 1 ] && echo 2380 || echo "${i}2380")
  build/src/server/synod --name "s$i" --data-dir "$DATA/s$i" \
    --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "$CLUSTER" --initial-cluster-token synod-local --initial-cluster-state new \
    "$@" >"$DATA/s$i.log" 2>&1 &
  pids+=($!)
done

ENDPOINTS="127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379"
for _ in $(seq 50); do
  if ETCDCTL_API=3 etcdctl --endpoints="$ENDPOINTS" --command-timeout=1s endpoint health >/dev/null 2>&1; then
    break
  fi
  sleep 0.2
done
cat <<MSG
synod: a three-node cluster is running (logs in $DATA/s*.log). Try, in another shell:

  export ETCDCTL_API=3 ENDPOINTS=$ENDPOINTS
  etcdctl --endpoints=\$ENDPOINTS endpoint status -w table
  etcdctl --endpoints=\$ENDPOINTS put greeting hello
  etcdctl --endpoints=\$ENDPOINTS get greeting -w json
  etcdctl --endpoints=\$ENDPOINTS watch --prefix greet    # and put again elsewhere
  etcdctl --endpoints=\$ENDPOINTS lease grant 30
  etcdctl --endpoints=\$ENDPOINTS lock mylock             # holds it until Ctrl-C

Ctrl-C here stops the cluster.
MSG
wait "${pids[@]}"
