// The deterministic simulator: a whole cluster, its network, its disks and its clients,
// in one thread, from one seed. Same seed, same options: same run, byte for byte.
//
// A run has two phases (after TigerBeetle's VOPR):
//   safety    for `fault_ms`, clients work while faults strike: crashes that lose what
//             was not yet fsynced, restarts, partitions (full and one-way), message
//             loss, duplication and reordering, membership changes, leader transfers;
//   liveness  then the network heals and every member restarts; within `liveness_ms`
//             the cluster must elect a leader and complete client writes again.
// Invariants (invariants.h) are checked as the run goes; the client history is checked
// for linearizability at the end.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/result.h"
#include "consensus/api/engine.h"
#include "consensus/api/planted_bugs.h"

namespace synod::sim {

struct FaultSet {
  bool crash = false;
  bool partition = false;
  bool loss = false;
  bool duplicate = false;
  bool reorder = false;
  bool membership = false;
  bool transfer = false;

  static FaultSet All();
  static FaultSet None() { return {}; }
  // "all", "none", or a comma-separated list of: crash, partition, loss, duplicate,
  // reorder, membership, transfer.
  static Result<FaultSet> Parse(const std::string& text);
  std::string ToString() const;
};

struct SimOptions {
  std::string engine = "raft";
  int nodes = 3;
  uint64_t seed = 1;
  FaultSet faults = FaultSet::All();
  int64_t fault_ms = 10'000;    // simulated time of the safety phase
  int64_t liveness_ms = 5'000;  // simulated time allowed to recover afterwards
  int clients = 4;
  int keys = 3;
  int64_t tick_ms = 10;  // one engine tick
  // The fault scheduler acts every [fault_interval_ms_min, fault_interval_ms_max] ms.
  int64_t fault_interval_ms_min = 50;
  int64_t fault_interval_ms_max = 500;
  int snapshot_every = 40;  // entries applied between snapshots
  // What the members apply their logs to: "kv", the real key-value store (kv::Store on
  // RocksDB in memory), or "toy", a fast map answering the same requests (state_machine.h).
  std::string state_machine = "kv";
  // kv: let members snapshot while physical compaction is under way, so that two members'
  // snapshots at one index can differ (docs/simulator.md says why that is off by default).
  bool snapshot_mid_compaction = false;
  // kv: snapshots taken as the node runtime takes them with the server's store: the store
  // flushes what it applied and the snapshot is its metadata alone (DeferredSnapshotData);
  // its state is made, at that index or a later one, when the engine reads it for a member
  // far behind. A store behind such a snapshot after a restart is a violation.
  bool deferred_snapshots = false;
  // Entries each engine keeps before its snapshots (Config::catchup_entries); unset: drawn
  // from the seed (1–20 in half the seeds, else none). Seeds found before the engines kept
  // any replay their schedules with 0.
  std::optional<uint64_t> catchup_entries;
  consensus::PlantedBug planted_bug = consensus::PlantedBug::kNone;
  bool trace = false;  // print every trace line as it happens
};

struct SimStats {
  int64_t simulated_ms = 0;
  uint64_t events = 0;
  uint64_t messages_sent = 0;
  uint64_t messages_dropped = 0;
  uint64_t leaders_elected = 0;
  uint64_t crashes = 0;
  uint64_t partitions = 0;
  uint64_t conf_changes = 0;
  uint64_t transfers = 0;
  uint64_t snapshots_sent = 0;
  uint64_t compactions = 0;              // compactions of the key-value history proposed
  uint64_t fingerprints = 0;             // state machine fingerprints taken for replica agreement
  uint64_t ops_ok = 0;                   // client operations answered
  uint64_t ops_timed_out = 0;            // client operations with an unknown outcome
  uint64_t committed = 0;                // highest committed index
  bool linearizability_unknown = false;  // the checker ran out of budget
};

struct SimResult {
  bool ok = true;
  std::string violation;   // what went wrong (empty when ok)
  std::string trace_tail;  // the last trace lines before the violation
  std::string replay_command;
  SimStats stats;
};

// Runs one simulation. Requesting a planted bug from a build without them is an error.
SimResult RunSimulation(const SimOptions& options);

// Whether this build carries the planted bugs (test builds only).
bool PlantedBugsCompiledIn();

}  // namespace synod::sim
