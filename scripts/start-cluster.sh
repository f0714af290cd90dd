#!/usr/bin/env bash
# Installs what is missing, builds, and runs a three-node synod cluster.
#
# The networked server is not built yet: for now this runs a *simulated* three-node
# Raft cluster (src/sim) in one process, with simulated clients, crashes and
# partitions, and prints what happens: elections, client operations as they commit,
# crashes and recoveries. Arguments are passed to synod-sim (try --seed 7, --nodes 5).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target synod-sim

echo "synod: a simulated three-node Raft cluster; simulated time on the left."
exec build/src/sim/synod-sim --nodes 3 --seed 4 --clients 2 --faults crash,partition,transfer \
  --fault-ms 4000 --liveness-ms 2000 --trace "$@"
