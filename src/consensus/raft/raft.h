// The Raft engine: Raft as the extended paper and Ongaro's thesis describe it, behind
// the replicated-log interface of consensus/api/engine.h.
//
// The class is split into units by concern, each in its own file:
//   raft.cc             construction, Step dispatch and the term rules, Ready/Advance
//   raft_election.cc    roles, ticks, pre-vote, voting, check-quorum, leadership transfer
//   raft_replication.cc leader → follower appends, heartbeats, snapshots; commit
//   raft_membership.cc  configuration tracking and single-server membership changes
//   raft_read.cc        linearizable reads: ReadIndex and leader leases
//
// Persistence: this engine sends every message only after the Ready that produced it is
// durable, including the leader's own appends (the conservative choice; the thesis
// §10.2.1 allows a leader to send before its own fsync). A leader counts itself towards
// a commit quorum only for entries its caller confirmed durable (Advance).
#pragma once

#include <deque>
#include <map>
#include <set>
#include <vector>

#include "base/rng.h"
#include "consensus/api/engine.h"
#include "consensus/api/snapshot_assembler.h"
#include "consensus/quorum/progress.h"
#include "consensus/raft/config.h"
#include "consensus/raft/raft_log.h"

namespace synod::consensus::raft {

class Raft final : public Engine {
 public:
  Raft(const Config& config, const DurableState& durable);

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
  bool MaySendBeforeDurable(const pb::Message& message) const override;

 private:
  friend class RaftTestPeer;
  using Progress = quorum::Progress;

  bool Bug(PlantedBug bug) const;

  // raft.cc
  void Send(pb::Message message);
  bool StepByTerm(const pb::Message& m);  // false: message dropped by the term rules
  void StepLeader(const pb::Message& m);
  void StepCandidate(const pb::Message& m);
  void StepFollower(const pb::Message& m);
  pb::HardState CurrentHardState() const;
  bool HardStateChanged() const;

  // raft_election.cc
  void BecomeFollower(Term term, NodeId leader);
  void BecomePreCandidate();
  void BecomeCandidate();
  void BecomeLeader();
  void Campaign(bool pre_vote, bool transfer);
  void HandleVoteRequest(const pb::Message& m);
  void HandleVoteResponse(const pb::Message& m);
  void TickFollower();
  void TickLeader();
  bool Promotable() const { return IsVoter(cfg_.id); }
  bool HeardFromLeaderRecently() const;
  void ResetElectionTimer();
  void AbortLeaderTransfer() { lead_transferee_ = kNoNode; }

  // raft_replication.cc
  void SendAppend(NodeId to, bool allow_empty);
  void BroadcastAppend(bool allow_empty);
  void SendHeartbeat(NodeId to);
  void BroadcastHeartbeat();
  void SendSnapshotChunk(NodeId to);
  void HandleAppend(const pb::Message& m);
  void HandleAppendResponse(const pb::Message& m);
  void HandleHeartbeat(const pb::Message& m);
  void HandleHeartbeatResponse(const pb::Message& m);
  void HandleSnapshot(const pb::Message& m);
  void HandleSnapshotResponse(const pb::Message& m);
  void SendAppendResponse(NodeId to, LogIndex index);
  bool MaybeCommit();
  void OnCommitAdvanced(LogIndex old_commit);
  bool CommittedInCurrentTerm() const { return log_.TermAt(log_.Committed()) == term_; }

  // raft_membership.cc
  const pb::ConfState& Conf() const;
  bool IsVoter(NodeId id) const;
  bool IsLearner(NodeId id) const;
  std::vector<NodeId> Voters() const;
  std::vector<NodeId> Peers() const;  // every member but this one, voters and learners
  void TrackConfEntries(LogIndex from);
  void ForgetConfEntriesFrom(LogIndex index);
  void SyncProgressWithConf();
  bool ConfChangePending() const;
  Status ValidateConfChange(const pb::ConfChange& change) const;
  LogIndex RemovedSelfAt() const;

  // raft_read.cc
  void ServeRead(uint64_t request_id, NodeId requester);
  void EmitRead(uint64_t request_id, NodeId requester, LogIndex index);
  void OnReadAck(NodeId from, uint64_t context);
  void ReleaseReadsWaitingForCommit();
  bool LeaseHolds() const;
  void DropPendingReads();

  Config cfg_;
  Rng rng_;
  RaftLog log_;

  Role role_ = Role::kFollower;
  Term term_ = 0;
  NodeId vote_ = kNoNode;
  NodeId leader_ = kNoNode;
  pb::HardState last_hard_state_;  // as last handed out in a Ready

  // Time.
  uint64_t ticks_ = 0;        // ticks since start (dates leases)
  int election_elapsed_ = 0;  // ticks since last heard from a leader (or since the
                              // last check-quorum round, on a leader)
  int heartbeat_elapsed_ = 0;
  int randomized_election_ticks_ = 0;
  int transfer_elapsed_ = 0;

  // Candidate.
  std::map<NodeId, bool> votes_;
  int bug_grant_messages_ = 0;  // PlantedBug::kCountVoteTwice only

  // Leader.
  std::map<NodeId, Progress> progress_;  // every other member
  NodeId lead_transferee_ = kNoNode;
  uint64_t uncommitted_bytes_ = 0;
  bool broadcast_pending_ = false;         // new entries to send at the next Ready
  bool commit_broadcast_pending_ = false;  // the commit index rose: tell followers
  // Reads wait for a heartbeat round: one round at the next Ready serves every read
  // registered until then (not one round per read).
  bool read_heartbeat_pending_ = false;

  // Membership: the configuration at the snapshot, and after each configuration entry
  // in the log (Raft uses the latest one in its log, committed or not: thesis §4.1).
  pb::ConfState snapshot_conf_;
  std::vector<std::pair<LogIndex, pb::ConfState>> conf_entries_;

  // Reads (raft_read.cc).
  struct PendingRead {
    uint64_t seq = 0;
    uint64_t request_id = 0;
    NodeId requester = kNoNode;
    LogIndex index = 0;
    std::set<NodeId> acks;
  };
  uint64_t read_seq_ = 0;
  std::deque<PendingRead> pending_reads_;
  std::vector<std::pair<uint64_t, NodeId>> reads_waiting_for_commit_;
  std::vector<ReadState> read_states_;

  // Snapshots: the latest one (sent to lagging followers), and one received from the
  // leader that the caller must still persist and install.
  Snapshot latest_snapshot_;
  // Some of latest_snapshot_'s data was sent: Compact may no longer replace it.
  bool latest_snapshot_sent_ = false;
  std::optional<Snapshot> snapshot_to_install_;
  SnapshotAssembler incoming_snapshot_{cfg_.snapshot_receiver};  // chunks being received

  std::vector<pb::Message> msgs_;
  bool ready_outstanding_ = false;
  std::optional<ProposalId> handed_last_;  // last entry of the outstanding Ready
};

}  // namespace synod::consensus::raft
