// Learning what is chosen ("Paxos Made Simple" §2.3, §3), and catching up.
//
// The leader counts acceptances: slot s is chosen once a quorum of the configuration
// that governs s acknowledged it in the leader's ballot (every acknowledgement covers
// all slots up to a point, see paxos_acceptor.cc). The leader's chosen index only
// moves forward slot by slot, so a configuration entry is chosen before any slot it
// governs is counted.
//
// Followers learn the chosen index from the leader's accepts and heartbeats. A
// follower's chosen index rises only over slots it accepted in the leader's ballot: a
// value it holds from an earlier ballot may not be the chosen one, and must first be
// replaced by the leader's (which is what the probing below does). A follower that
// misses chosen values — it was down, or partitioned — is caught up by the same
// accepts, resent from where its acknowledgements stopped, or by a snapshot when the
// leader compacted those slots.
#include <algorithm>

#include "base/assert.h"
#include "consensus/paxos/paxos.h"
#include "consensus/quorum/quorum.h"

namespace synod::consensus::paxos {

using quorum::ProgressState;

LogIndex Paxos::MatchOf(NodeId id) const {
  if (id == cfg_.id) return log_.StableIndex();  // our own durable acceptances only
  auto it = progress_.find(id);
  return it == progress_.end() ? 0 : it->second.match;
}

void Paxos::SendAccept(NodeId to, bool allow_empty) {
  Progress& pr = progress_.at(to);
  if (pr.IsPaused(cfg_.inflight_msgs_max)) return;
  if (pr.next <= log_.SnapshotIndex()) {
    // The slots this acceptor lacks are compacted: send the snapshot instead.
    pr.BecomeSnapshot(latest_snapshot_.metadata.index());
    SendSnapshotChunk(to);
    return;
  }
  const LogIndex prev = pr.next - 1;
  std::vector<pb::Entry> entries;
  if (pr.next <= log_.LastIndex())
    entries = log_.Slice(pr.next, log_.LastIndex(), cfg_.msg_bytes_max);
  if (entries.empty() && !allow_empty && pr.state != ProgressState::kProbe) return;
  pb::Message m;
  m.set_type(pb::MSG_ACCEPT);
  m.set_to(to);
  m.set_term(ballot_);
  m.set_index(prev);
  m.set_commit(log_.Committed());
  const LogIndex last = entries.empty() ? prev : entries.back().index();
  const bool had_entries = !entries.empty();
  for (auto& e : entries) *m.add_entries() = std::move(e);
  pr.OnSent(last, had_entries);
  Send(std::move(m));
}

void Paxos::BroadcastAccept(bool allow_empty) {
  for (NodeId id : Peers()) {
    if (progress_.count(id)) SendAccept(id, allow_empty);
  }
}

void Paxos::HandleAccepted(const pb::Message& m) {
  if (role_ != Role::kLeader || m.term() != ballot_) return;
  auto it = progress_.find(m.from());
  if (it == progress_.end()) return;
  Progress& pr = it->second;
  pr.recently_active = true;
  if (m.reject()) {
    if (m.index() == 0) {
      // A joining member asks for the membership, which only a snapshot carries.
      if (pr.state != ProgressState::kSnapshot) {
        pr.BecomeSnapshot(latest_snapshot_.metadata.index());
        SendSnapshotChunk(m.from());
      }
      return;
    }
    if (pr.MaybeDecreaseTo(m.index(), m.reject_hint_index())) {
      if (pr.state == ProgressState::kReplicate) pr.BecomeProbe();
      SendAccept(m.from(), /*allow_empty=*/false);
    }
    return;
  }
  const bool was_paused = pr.IsPaused(cfg_.inflight_msgs_max);
  const bool updated = pr.MaybeUpdate(std::min(m.index(), log_.LastIndex()));
  if (pr.state == ProgressState::kProbe) {
    // The acknowledgement says where the acceptor stands, even if it is not news (an
    // empty probe to a member with nothing to accept): replicate from there.
    pr.BecomeReplicate();
  } else if (pr.state == ProgressState::kSnapshot && m.index() >= pr.pending_snapshot) {
    pr.BecomeProbe();
    pr.BecomeReplicate();
  } else if (!updated) {
    if (was_paused && !pr.IsPaused(cfg_.inflight_msgs_max)) SendAccept(m.from(), false);
    return;
  }
  if (MaybeCommit()) commit_broadcast_pending_ = true;
  if (role_ != Role::kLeader) return;  // committing our own removal made us step down
  // A newly chosen configuration may have removed the member (and its Progress).
  if (!progress_.count(m.from())) return;
  while (pr.state == ProgressState::kReplicate && pr.next <= log_.LastIndex() &&
         !pr.IsPaused(cfg_.inflight_msgs_max)) {
    const LogIndex before = pr.next;
    SendAccept(m.from(), false);
    if (pr.next == before) break;
  }
  if (m.from() == lead_transferee_ && pr.match == log_.LastIndex()) {
    pb::Message now;
    now.set_type(pb::MSG_TIMEOUT_NOW);
    now.set_to(m.from());
    now.set_term(ballot_);
    Send(std::move(now));
  }
}

void Paxos::SendHeartbeat(NodeId to) {
  const Progress& pr = progress_.at(to);
  pb::Message m;
  m.set_type(pb::MSG_HEARTBEAT);
  m.set_to(to);
  m.set_term(ballot_);
  m.set_commit(std::min(pr.match, log_.Committed()));
  m.set_context(read_seq_);  // confirms leadership for every read registered so far
  m.set_lease_stamp(ticks_);
  Send(std::move(m));
}

void Paxos::BroadcastHeartbeat() {
  for (auto& [id, pr] : progress_) {
    SendHeartbeat(id);
    // A snapshot chunk that went missing is sent again at each heartbeat.
    if (pr.state == ProgressState::kSnapshot) SendSnapshotChunk(id);
  }
}

void Paxos::HandleHeartbeatResponse(const pb::Message& m) {
  if (role_ != Role::kLeader || m.term() != ballot_) return;
  auto it = progress_.find(m.from());
  if (it == progress_.end()) return;
  Progress& pr = it->second;
  pr.recently_active = true;
  if (pr.state == ProgressState::kProbe) pr.probe_sent = false;  // probe again
  if (pr.match < log_.LastIndex()) {
    // Behind: the accepts in flight may have been lost, and without new proposals
    // nothing would be sent again. Free a slot of a full window and resend.
    if (pr.state == ProgressState::kReplicate && pr.IsPaused(cfg_.inflight_msgs_max)) {
      pr.inflight.pop_front();
    }
    SendAccept(m.from(), /*allow_empty=*/true);
  }
  OnReadAck(m.from(), m.context());
}

void Paxos::SendSnapshotChunk(NodeId to) {
  Progress& pr = progress_.at(to);
  const pb::SnapshotMetadata& meta = latest_snapshot_.metadata;
  if (pr.pending_snapshot != meta.index()) pr.BecomeSnapshot(meta.index());  // a newer one
  const SnapshotData& data = *latest_snapshot_.data;
  const uint64_t offset = std::min<uint64_t>(pr.snapshot_offset, data.size());
  const uint64_t len = std::min<uint64_t>(cfg_.snapshot_chunk_bytes, data.size() - offset);
  std::string chunk;
  // Unreadable now (e.g. its state not made yet): again at a heartbeat.
  if (!data.ReadAt(offset, len, &chunk).ok()) return;
  latest_snapshot_sent_ = true;
  pb::Message m;
  m.set_type(pb::MSG_SNAPSHOT);
  m.set_to(to);
  m.set_term(ballot_);
  *m.mutable_snapshot_metadata() = meta;
  m.set_snapshot_offset(offset);
  m.set_snapshot_chunk(std::move(chunk));
  m.set_snapshot_done(offset + len == data.size());
  Send(std::move(m));
}

void Paxos::HandleSnapshotResponse(const pb::Message& m) {
  if (role_ != Role::kLeader || m.term() != ballot_) return;
  auto it = progress_.find(m.from());
  if (it == progress_.end()) return;
  Progress& pr = it->second;
  pr.recently_active = true;
  if (pr.state != ProgressState::kSnapshot || m.snapshot_metadata().index() != pr.pending_snapshot)
    return;
  if (m.snapshot_offset() > pr.snapshot_offset || m.snapshot_offset() == 0) {
    pr.snapshot_offset = m.snapshot_offset();
    SendSnapshotChunk(m.from());
  }
}

bool Paxos::MaybeCommit() {
  LogIndex chosen = log_.Committed();
  while (chosen < log_.LastIndex()) {
    const LogIndex s = chosen + 1;
    const pb::ConfState conf = ConfAt(s);
    const std::vector<NodeId> voters(conf.voters().begin(), conf.voters().end());
    if (!quorum::HasQuorum(voters, [&](NodeId v) { return MatchOf(v) >= s; })) break;
    chosen = s;
  }
  if (chosen <= log_.Committed()) return false;
  const LogIndex old = log_.Committed();
  log_.CommitTo(chosen);
  OnCommitAdvanced(old);
  return true;
}

void Paxos::OnCommitAdvanced(LogIndex old_commit) {
  if (role_ != Role::kLeader) return;
  const uint64_t bytes = log_.BytesOf(old_commit + 1, log_.Committed());
  uncommitted_bytes_ = uncommitted_bytes_ > bytes ? uncommitted_bytes_ - bytes : 0;
  if (RecoveryDone()) ReleaseReadsWaitingForRecovery();
  SyncProgressWithConf();
  PadToConfiguration();
  if (RemovedFromConf()) {
    // No longer a voter of the slots to come: tell the others what is chosen, and go.
    commit_broadcast_pending_ = false;
    BroadcastAccept(/*allow_empty=*/true);
    BecomeFollower(kNoNode);
  }
}

void Paxos::LearnChosen(LogIndex leader_commit) {
  const LogIndex to = std::min(leader_commit, AcceptedThrough());
  if (to > log_.Committed()) log_.CommitTo(to);
}

}  // namespace synod::consensus::paxos
