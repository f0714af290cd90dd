// The Multi-Paxos engine: Lamport's "Paxos Made Simple" §3 (a distinguished proposer
// runs phase 1 once for every slot, then phase 2 per slot), with the engineering of
// "Paxos Made Live" (a stable leader, catch-up, snapshots), behind the replicated-log
// interface of consensus/api/engine.h. docs/paxos.md explains it at length.
//
// The class is split into units by role, each in its own file:
//   paxos.cc             construction, Step dispatch, Ready/Advance, proposals, compaction
//   paxos_acceptor.cc    promises and accepts: what an acceptor keeps and persists
//   paxos_proposer.cc    phase 1, recovery of possibly chosen values, phase 2, back-off,
//                        the leader's tick (heartbeats, stepping down), transfers
//   paxos_learner.cc     the chosen index: counting acceptances, telling followers,
//                        catch-up by accepts and by snapshot
//   paxos_membership.cc  configurations, alpha, single-server membership changes
//   paxos_read.cc        linearizable reads (ReadIndex)
//
// Ballots are totally ordered pairs (round, proposer) encoded as round << 8 | proposer,
// carried in every message's `term`. What is durable, and where (HardState and Entry
// reused):
//   HardState.term    the highest ballot this acceptor promised (never decreases)
//   HardState.vote    the proposer of that ballot (informational)
//   HardState.commit  the chosen index: every slot up to it holds its chosen value
//   Entry             the value accepted at slot Entry.index, in ballot Entry.ballot;
//                     Entry.term is the ballot of the value's first proposer, so that a
//                     ProposalId{slot, ballot} keeps Raft's meaning when a new leader
//                     re-proposes the value: applied with the same term, it is the
//                     proposal; with another, the proposal was lost.
// Every message is sent only after the Ready that produced it is durable: a promise
// after the promised ballot, an acceptance after the accepted value.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <set>
#include <vector>

#include "base/rng.h"
#include "consensus/api/engine.h"
#include "consensus/api/snapshot_assembler.h"
#include "consensus/paxos/config.h"
#include "consensus/paxos/paxos_log.h"
#include "consensus/quorum/progress.h"

namespace synod::consensus::paxos {

using Ballot = uint64_t;
constexpr int kBallotNodeBits = 8;
inline Ballot MakeBallot(uint64_t round, NodeId node) { return round << kBallotNodeBits | node; }
inline uint64_t RoundOf(Ballot b) { return b >> kBallotNodeBits; }
inline NodeId ProposerOf(Ballot b) { return b & ((1u << kBallotNodeBits) - 1); }

// The configuration after one single-server change (paxos_membership.cc).
pb::ConfState ApplyConfChange(pb::ConfState conf, const pb::ConfChange& cc);

class Paxos final : public Engine {
 public:
  Paxos(const Config& config, const DurableState& durable);

  void Tick() override;
  Status Step(const pb::Message& message) override;
  Result<ProposalId> Propose(std::string data) override;
  Result<ProposalId> ProposeConfChange(const pb::ConfChange& change) override;
  Status ReadIndex(uint64_t request_id) override;
  Status TransferLeader(NodeId target) override;
  Result<pb::SnapshotMetadata> Compact(Snapshot snapshot) override;
  Snapshot LatestSnapshot() const override { return latest_snapshot_; }

  bool HasReady() const override;
  Ready TakeReady() override;
  void Advance(const Ready& ready) override;

  EngineStatus GetStatus() const override;

 private:
  friend class PaxosTestPeer;
  using Progress = quorum::Progress;
  using VoterSet = std::vector<NodeId>;

  bool Bug(PlantedBug bug) const;

  // paxos.cc
  void Send(pb::Message message);
  pb::HardState CurrentHardState() const;
  bool HardStateChanged() const;
  Result<ProposalId> AppendProposal(pb::EntryType type, std::string data);

  // paxos_acceptor.cc
  void HandlePrepare(const pb::Message& m);
  bool FollowLeaderMessage(const pb::Message& m);  // false: refused (stale ballot)
  void HandleAccept(const pb::Message& m);
  void HandleHeartbeat(const pb::Message& m);
  void HandleSnapshot(const pb::Message& m);
  void RaisePromise(Ballot ballot);
  void SendNack(const pb::Message& m);
  void SendAccepted(NodeId to, Ballot ballot, LogIndex index, bool reject);
  void ExtendAcceptedThrough();
  LogIndex AcceptedThrough() const { return std::max(accepted_through_, log_.Committed()); }
  bool HeardFromLeaderRecently() const;
  bool Joining() const;

  // paxos_proposer.cc
  void ResetElectionTimer();
  void BecomeFollower(NodeId leader);
  void Campaign();
  void StartPrePrepare();
  void HandlePrePrepare(const pb::Message& m);
  void HandlePrePromise(const pb::Message& m);
  void StartPhase1(bool transfer);
  void SendPrepare(NodeId to);
  void HandlePromise(const pb::Message& m);
  void HandleNack(const pb::Message& m);
  void MaybeWinPhase1();
  void BecomeLeader(std::map<LogIndex, pb::Entry> recovered, LogIndex last);
  void HandleTimeoutNow(const pb::Message& m);
  void TickFollower();
  void TickLeader();
  void AbortLeaderTransfer() { lead_transferee_ = kNoNode; }

  // paxos_learner.cc
  void SendAccept(NodeId to, bool allow_empty);
  void BroadcastAccept(bool allow_empty);
  void HandleAccepted(const pb::Message& m);
  void SendHeartbeat(NodeId to);
  void BroadcastHeartbeat();
  void HandleHeartbeatResponse(const pb::Message& m);
  void SendSnapshotChunk(NodeId to);
  void HandleSnapshotResponse(const pb::Message& m);
  bool MaybeCommit();
  void OnCommitAdvanced(LogIndex old_commit);
  void LearnChosen(LogIndex leader_commit);
  LogIndex MatchOf(NodeId id) const;

  // paxos_membership.cc
  bool InForceAt(LogIndex change_slot, LogIndex slot) const;  // a change chosen at change_slot
  pb::ConfState ConfAt(LogIndex slot) const;  // the configuration that governs `slot`
  // The configuration a snapshot carries: at its index, and the changes pending there.
  void RestoreSnapshotConf(const pb::SnapshotMetadata& meta);
  pb::ConfState LatestConf() const;  // after every configuration entry in the log
  std::vector<VoterSet> VoterSetsOver(LogIndex lo, LogIndex hi) const;
  bool QuorumInEach(const std::vector<VoterSet>& sets,
                    const std::function<bool(NodeId)>& acked) const;
  bool IsVoterNow(NodeId id) const;
  bool Promotable() const { return IsVoterNow(cfg_.id); }
  std::vector<NodeId> Peers() const;  // every member of a configuration we know, but us
  void TrackConfEntry(const pb::Entry& e);
  void SyncProgressWithConf();
  Status ValidateConfChange(const pb::ConfChange& change) const;
  bool ConfChangePending() const;
  bool RemovedFromConf() const;
  void PadToConfiguration();

  // paxos_read.cc
  void ServeRead(uint64_t request_id, NodeId requester);
  void EmitRead(uint64_t request_id, NodeId requester, LogIndex index);
  void OnReadAck(NodeId from, uint64_t context);
  void ReleaseReadsWaitingForRecovery();
  void DropPendingReads();
  bool RecoveryDone() const { return log_.Committed() >= recovery_last_; }

  Config cfg_;
  Rng rng_;
  PaxosLog log_;

  // Acceptor (durable: the promise; the log).
  Ballot promised_ = 0;
  // Every slot in (chosen index, accepted_through_] was accepted in ballot promised_:
  // it holds the value of promised_'s leader there (volatile, recomputed on restart).
  LogIndex accepted_through_ = 0;
  pb::HardState last_hard_state_;

  Role role_ = Role::kFollower;
  NodeId leader_ = kNoNode;
  Ballot ballot_ = 0;        // our own ballot while a candidate or the leader
  uint64_t round_seen_ = 0;  // the highest round seen in any ballot

  // Time.
  uint64_t ticks_ = 0;
  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  int randomized_election_ticks_ = 0;
  int transfer_elapsed_ = 0;

  // Pre-candidate (pre-prepare).
  Ballot pre_ballot_ = 0;
  std::map<NodeId, bool> pre_votes_;

  // Candidate (phase 1).
  struct PromiseReceived {
    bool granted = false;
    LogIndex commit = 0;
    std::vector<pb::Entry> entries;
  };
  LogIndex phase1_start_ = 0;
  bool phase1_transfer_ = false;
  std::map<NodeId, PromiseReceived> promises_;
  std::set<NodeId> prepared_;  // sent a prepare in this campaign

  // Leader.
  std::map<NodeId, Progress> progress_;
  NodeId lead_transferee_ = kNoNode;
  LogIndex recovery_last_ = 0;  // last slot re-proposed by recovery
  uint64_t uncommitted_bytes_ = 0;
  bool broadcast_pending_ = false;
  bool commit_broadcast_pending_ = false;
  // Reads wait for a heartbeat round: one round at the next Ready serves every read
  // registered until then (not one round per read).
  bool read_heartbeat_pending_ = false;

  // Membership: the configuration that governs the slot after the snapshot, and each
  // configuration entry by slot — in the log (chosen or not; only chosen ones govern slots
  // a leader proposes), or covered by the snapshot but not yet in force after it.
  pb::ConfState snapshot_conf_;
  std::map<LogIndex, pb::ConfChange> conf_changes_;

  // Reads.
  struct PendingRead {
    uint64_t seq = 0;
    uint64_t request_id = 0;
    NodeId requester = kNoNode;
    LogIndex index = 0;
    std::set<NodeId> acks;
  };
  uint64_t read_seq_ = 0;
  std::deque<PendingRead> pending_reads_;
  std::vector<std::pair<uint64_t, NodeId>> reads_waiting_for_recovery_;
  std::vector<ReadState> read_states_;

  // Snapshots.
  Snapshot latest_snapshot_;
  // Some of latest_snapshot_'s data was sent: Compact may no longer replace it.
  bool latest_snapshot_sent_ = false;
  std::optional<Snapshot> snapshot_to_install_;
  SnapshotAssembler incoming_snapshot_{cfg_.snapshot_receiver};  // chunks being received

  std::vector<pb::Message> msgs_;
  bool ready_outstanding_ = false;
  std::optional<LogIndex> handed_last_;
};

}  // namespace synod::consensus::paxos
