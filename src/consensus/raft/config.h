// Configuration of a Raft member. Time is counted in ticks; the caller decides how long
// a tick is (the server: --heartbeat-interval).
#pragma once

#include <cstdint>

#include "consensus/api/engine.h"
#include "consensus/api/planted_bugs.h"

namespace synod::consensus::raft {

struct Config {
  NodeId id = kNoNode;

  // A follower campaigns after a random timeout in [election_ticks, 2 * election_ticks).
  int election_ticks = 10;
  int heartbeat_ticks = 1;

  // Pre-vote (thesis §9.6): a would-be candidate first asks whether it could win,
  // without raising its term, so a partitioned member cannot disrupt the cluster.
  bool pre_vote = true;
  // Check-quorum: a leader that has not heard from a quorum in an election timeout
  // steps down, and members that hear from a live leader ignore vote requests.
  bool check_quorum = true;
  // Leader-lease reads (thesis §6.4.1): serve reads without a quorum round while the
  // lease a quorum granted holds. Relies on bounded clock drift; off by default.
  // The lease is election_ticks - lease_drift_ticks ticks from the acknowledged
  // heartbeat's send time. Requires check_quorum.
  bool lease_reads = false;
  int lease_drift_ticks = 2;

  // Bounds.
  uint64_t msg_bytes_max = 1 << 20;           // entry bytes per append message
  uint64_t inflight_msgs_max = 256;           // pipelined appends per follower
  uint64_t uncommitted_bytes_max = 64 << 20;  // leader refuses proposals beyond this
  uint64_t snapshot_chunk_bytes = 1 << 20;    // InstallSnapshot chunk size
  uint64_t apply_bytes_max = 64 << 20;        // committed entry bytes per Ready
  // A learner is promoted only once it is within this many entries of the leader.
  uint64_t learner_catchup_entries_max = 1000;

  // Snapshots. Compact keeps this many entries before the snapshot's index in the log, so that a
  // follower only a little behind (restarted, or briefly cut off, just as the leader
  // compacted) catches up from the log instead of receiving the whole snapshot. The
  // entries are kept in memory only: after a restart the log starts at the snapshot.
  // (etcd keeps 5000.)
  uint64_t catchup_entries = 0;
  // Where a snapshot received from the leader is assembled (empty: in memory).
  SnapshotReceiverFactory snapshot_receiver;

  // Seed of the election-jitter generator: randomness only from here.
  uint64_t seed = 1;

#ifdef SYNOD_PLANTED_BUGS
  PlantedBug planted_bug = PlantedBug::kNone;
#endif
};

}  // namespace synod::consensus::raft
