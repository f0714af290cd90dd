// Configuration of a Multi-Paxos member. Time is counted in ticks, as for Raft; the
// bounds carry the same names as raft/config.h wherever they mean the same thing.
#pragma once

#include <cstdint>

#include "consensus/api/engine.h"
#include "consensus/api/planted_bugs.h"

namespace synod::consensus::paxos {

struct Config {
  NodeId id = kNoNode;  // 1..255: the low 8 bits of every ballot this member owns

  // A follower that hears no leader for a random timeout in
  // [election_ticks, 2 * election_ticks) runs phase 1; a proposer that fails backs off
  // for another random timeout, so duelling proposers do not livelock.
  int election_ticks = 10;
  int heartbeat_ticks = 1;

  // Stable leader (the Paxos counterpart of Raft's check-quorum and pre-vote): an
  // acceptor that heard from a live leader within an election timeout refuses prepares
  // from others (except for a leadership transfer), and a leader that has not heard
  // from a quorum in an election timeout steps down.
  bool stable_leader = true;
  // Pre-prepare (the counterpart of Raft's pre-vote): a would-be proposer first asks
  // whether a quorum would promise, without anyone raising a promise, so that a member
  // cut off from the others does not come back with a ballot that deposes the leader.
  bool pre_prepare = true;

  // Alpha (Lamport, "Reconfiguring a State Machine"): the configuration chosen at slot
  // i governs slots > i + window_slots_max, and a leader never proposes beyond its
  // chosen index + window_slots_max, so every slot's configuration is known when the
  // slot is proposed. Also the bound on slots in flight.
  uint64_t window_slots_max = 256;

  // Bounds.
  uint64_t msg_bytes_max = 1 << 20;           // entry bytes per accept message
  uint64_t inflight_msgs_max = 256;           // pipelined accepts per acceptor
  uint64_t uncommitted_bytes_max = 64 << 20;  // leader refuses proposals beyond this
  uint64_t snapshot_chunk_bytes = 1 << 20;    // snapshot chunk size
  uint64_t apply_bytes_max = 64 << 20;        // committed entry bytes per Ready
  // A learner is promoted only once it is within this many entries of the leader.
  uint64_t learner_catchup_entries_max = 1000;

  // Snapshots. Compact keeps this many chosen values before the snapshot's slot in the
  // log, so that an acceptor only a little behind catches up from them instead of
  // receiving the whole snapshot (as raft::Config::catchup_entries; in memory only: after
  // a restart the log starts at the snapshot).
  uint64_t catchup_entries = 0;
  // Where a snapshot received from the leader is assembled (empty: in memory).
  SnapshotReceiverFactory snapshot_receiver;

  // Seed of the back-off generator: randomness only from here.
  uint64_t seed = 1;

#ifdef SYNOD_PLANTED_BUGS
  PlantedBug planted_bug = PlantedBug::kNone;
#endif
};

}  // namespace synod::consensus::paxos
