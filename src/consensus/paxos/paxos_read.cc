// Linearizable reads without writing to the log (ReadIndex, as the Raft engine does).
//
// The leader records its chosen index as the read index and confirms it still leads by
// a round of heartbeats that a quorum acknowledges in its ballot. An acceptor that
// acknowledges has promised no higher ballot, so no later leader had finished phase 1
// with it when the read began, and no value chosen after the read index can precede
// the read. A new leader first finishes recovery (every slot it re-proposed is chosen):
// until then it does not know the chosen index.
#include "base/assert.h"
#include "consensus/paxos/paxos.h"

namespace synod::consensus::paxos {

Status Paxos::ReadIndex(uint64_t request_id) {
  if (role_ == Role::kLeader) {
    ServeRead(request_id, cfg_.id);
    return Status::Ok();
  }
  if (leader_ == kNoNode) return Status(Code::kUnavailable, "no leader");
  pb::Message m;
  m.set_type(pb::MSG_READ_INDEX);
  m.set_to(leader_);
  m.set_term(promised_);
  m.set_context(request_id);
  Send(std::move(m));
  return Status::Ok();
}

void Paxos::ServeRead(uint64_t request_id, NodeId requester) {
  if (Bug(PlantedBug::kReadWithoutReadIndex)) {
    EmitRead(request_id, requester, log_.Committed());  // planted: no quorum round
    return;
  }
  if (!RecoveryDone()) {
    reads_waiting_for_recovery_.emplace_back(request_id, requester);
    return;
  }
  PendingRead read;
  read.seq = ++read_seq_;
  read.request_id = request_id;
  read.requester = requester;
  read.index = log_.Committed();
  read.acks.insert(cfg_.id);
  pending_reads_.push_back(std::move(read));
  OnReadAck(cfg_.id, read_seq_);  // a group of one confirms at once
  // TakeReady sends the round, for every read registered until then.
  if (!pending_reads_.empty()) read_heartbeat_pending_ = true;
}

void Paxos::EmitRead(uint64_t request_id, NodeId requester, LogIndex index) {
  if (requester == cfg_.id) {
    read_states_.push_back({request_id, index});
    return;
  }
  pb::Message m;
  m.set_type(pb::MSG_READ_INDEX_RESPONSE);
  m.set_to(requester);
  m.set_term(ballot_);
  m.set_index(index);
  m.set_context(request_id);
  Send(std::move(m));
}

void Paxos::OnReadAck(NodeId from, uint64_t context) {
  if (pending_reads_.empty() || context == 0) return;
  // A heartbeat carrying read sequence s left after every read numbered <= s was
  // registered, so its acknowledgement confirms leadership for all of them.
  for (PendingRead& r : pending_reads_) {
    if (r.seq > context) break;
    r.acks.insert(from);
  }
  const auto sets = VoterSetsOver(log_.Committed() + 1, log_.LastIndex() + 1);
  while (!pending_reads_.empty() &&
         QuorumInEach(sets, [&](NodeId v) { return pending_reads_.front().acks.count(v) > 0; })) {
    const PendingRead r = pending_reads_.front();
    pending_reads_.pop_front();
    EmitRead(r.request_id, r.requester, r.index);
  }
}

void Paxos::ReleaseReadsWaitingForRecovery() {
  auto waiting = std::move(reads_waiting_for_recovery_);
  reads_waiting_for_recovery_.clear();
  for (const auto& [request_id, requester] : waiting) ServeRead(request_id, requester);
}

void Paxos::DropPendingReads() {
  // Requests waiting here fail by timeout at the caller; they were never answered.
  pending_reads_.clear();
  reads_waiting_for_recovery_.clear();
  read_heartbeat_pending_ = false;
}

}  // namespace synod::consensus::paxos
