// Linearizable reads without writing to the log (thesis §6.4).
//
// ReadIndex: the leader records its commit index as the read index, then confirms it is
// still the leader by a round of heartbeats acknowledged by a quorum; a read served once
// the state machine has applied the read index is linearizable. A new leader first
// commits an entry of its own term (its no-op), since until then it may not know the
// latest commit index. The round is batched: every read registered before a Ready shares
// the one heartbeat per follower that Ready sends (its context is the newest read's
// sequence number, and an acknowledgement confirms every read up to it).
//
// Leader lease (§6.4.1, optional): members that heard from the leader do not vote for
// another for an election timeout, so a leader that a quorum acknowledged within
// (election_ticks - lease_drift_ticks) ticks of *sending* the heartbeat can skip the
// round. This relies on clocks drifting by less than lease_drift_ticks per timeout.
#include "base/assert.h"
#include "consensus/quorum/quorum.h"
#include "consensus/raft/raft.h"

namespace synod::consensus::raft {

Status Raft::ReadIndex(uint64_t request_id) {
  if (role_ == Role::kLeader) {
    ServeRead(request_id, cfg_.id);
    return Status::Ok();
  }
  if (leader_ == kNoNode) return Status(Code::kUnavailable, "no leader");
  pb::Message m;
  m.set_type(pb::MSG_READ_INDEX);
  m.set_to(leader_);
  m.set_context(request_id);
  Send(std::move(m));
  return Status::Ok();
}

void Raft::ServeRead(uint64_t request_id, NodeId requester) {
  if (Bug(PlantedBug::kReadWithoutReadIndex)) {
    EmitRead(request_id, requester, log_.Committed());  // planted: no quorum round
    return;
  }
  if (!CommittedInCurrentTerm()) {
    reads_waiting_for_commit_.emplace_back(request_id, requester);
    return;
  }
  if (Voters().size() == 1 && IsVoter(cfg_.id)) {
    EmitRead(request_id, requester, log_.Committed());
    return;
  }
  if (cfg_.lease_reads && LeaseHolds()) {
    EmitRead(request_id, requester, log_.Committed());
    return;
  }
  PendingRead read;
  read.seq = ++read_seq_;
  read.request_id = request_id;
  read.requester = requester;
  read.index = log_.Committed();
  read.acks.insert(cfg_.id);
  pending_reads_.push_back(std::move(read));
  read_heartbeat_pending_ = true;  // TakeReady sends the round, for every read until then
}

void Raft::EmitRead(uint64_t request_id, NodeId requester, LogIndex index) {
  if (requester == cfg_.id) {
    read_states_.push_back({request_id, index});
    return;
  }
  pb::Message m;
  m.set_type(pb::MSG_READ_INDEX_RESPONSE);
  m.set_to(requester);
  m.set_index(index);
  m.set_context(request_id);
  Send(std::move(m));
}

void Raft::OnReadAck(NodeId from, uint64_t context) {
  if (pending_reads_.empty() || context == 0) return;
  // A heartbeat carrying read sequence s was sent after every read numbered <= s was
  // registered, so its acknowledgement confirms leadership for all of them.
  for (PendingRead& r : pending_reads_) {
    if (r.seq > context) break;
    r.acks.insert(from);
  }
  const std::vector<NodeId> voters = Voters();
  while (!pending_reads_.empty() && quorum::HasQuorum(voters, [&](NodeId v) {
    return pending_reads_.front().acks.count(v) > 0;
  })) {
    const PendingRead& r = pending_reads_.front();
    EmitRead(r.request_id, r.requester, r.index);
    pending_reads_.pop_front();
  }
}

void Raft::ReleaseReadsWaitingForCommit() {
  auto waiting = std::move(reads_waiting_for_commit_);
  reads_waiting_for_commit_.clear();
  for (const auto& [request_id, requester] : waiting) ServeRead(request_id, requester);
}

bool Raft::LeaseHolds() const {
  if (lead_transferee_ != kNoNode) return false;  // the target may be elected any moment
  const uint64_t lease_ticks = static_cast<uint64_t>(cfg_.election_ticks - cfg_.lease_drift_ticks);
  return quorum::HasQuorum(Voters(), [&](NodeId v) {
    if (v == cfg_.id) return true;
    auto it = progress_.find(v);
    return it != progress_.end() && it->second.lease_stamp > 0 &&
           ticks_ - it->second.lease_stamp < lease_ticks;
  });
}

void Raft::DropPendingReads() {
  // Requests waiting here fail by timeout at the caller; they were never answered.
  pending_reads_.clear();
  reads_waiting_for_commit_.clear();
  read_heartbeat_pending_ = false;
}

}  // namespace synod::consensus::raft
