// Log replication (§5.3): appends pipelined per follower, fast back-tracking on
// conflict, heartbeats, chunked InstallSnapshot (§7), and the commit rule (§5.4.2).
#include <algorithm>

#include "base/assert.h"
#include "consensus/quorum/quorum.h"
#include "consensus/raft/raft.h"

namespace synod::consensus::raft {

using quorum::ProgressState;

// ---------------------------------------------------------------------------------
// Leader side.

void Raft::SendAppend(NodeId to, bool allow_empty) {
  Progress& pr = progress_.at(to);
  if (pr.IsPaused(cfg_.inflight_msgs_max)) return;
  const LogIndex prev = pr.next - 1;
  const std::optional<Term> prev_term = log_.TermAt(prev);
  if (!prev_term) {
    // The entries this follower needs are compacted: send the snapshot instead.
    pr.BecomeSnapshot(latest_snapshot_.metadata.index());
    SendSnapshotChunk(to);
    return;
  }
  std::vector<pb::Entry> entries;
  if (pr.next <= log_.LastIndex())
    entries = log_.Slice(pr.next, log_.LastIndex(), cfg_.msg_bytes_max);
  // A probe is sent even when empty: its answer tells us where the logs match.
  if (entries.empty() && !allow_empty && pr.state != ProgressState::kProbe) return;
  pb::Message m;
  m.set_type(pb::MSG_APPEND);
  m.set_to(to);
  m.set_index(prev);
  m.set_log_term(*prev_term);
  m.set_commit(log_.Committed());
  const LogIndex last = entries.empty() ? prev : entries.back().index();
  const bool had_entries = !entries.empty();
  for (auto& e : entries) *m.add_entries() = std::move(e);
  pr.OnSent(last, had_entries);
  Send(std::move(m));
}

void Raft::BroadcastAppend(bool allow_empty) {
  for (NodeId id : Peers()) SendAppend(id, allow_empty);
}

void Raft::SendHeartbeat(NodeId to) {
  const Progress& pr = progress_.at(to);
  pb::Message m;
  m.set_type(pb::MSG_HEARTBEAT);
  m.set_to(to);
  // Never tell a follower to commit beyond what it is known to hold.
  m.set_commit(std::min(pr.match, log_.Committed()));
  m.set_context(read_seq_);  // confirms leadership for every read registered so far
  m.set_lease_stamp(ticks_);
  Send(std::move(m));
}

void Raft::BroadcastHeartbeat() {
  for (NodeId id : Peers()) {
    SendHeartbeat(id);
    // A snapshot chunk that went missing is sent again at each heartbeat.
    if (progress_.at(id).state == ProgressState::kSnapshot) SendSnapshotChunk(id);
  }
}

void Raft::SendSnapshotChunk(NodeId to) {
  Progress& pr = progress_.at(to);
  const pb::SnapshotMetadata& meta = latest_snapshot_.metadata;
  if (pr.pending_snapshot != meta.index()) pr.BecomeSnapshot(meta.index());  // newer one
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
  *m.mutable_snapshot_metadata() = meta;
  m.set_snapshot_offset(offset);
  m.set_snapshot_chunk(std::move(chunk));
  m.set_snapshot_done(offset + len == data.size());
  Send(std::move(m));
}

void Raft::HandleAppendResponse(const pb::Message& m) {
  auto it = progress_.find(m.from());
  if (it == progress_.end()) return;  // no longer a member
  Progress& pr = it->second;
  pr.recently_active = true;
  if (m.reject()) {
    if (m.index() == 0) {
      // Only a member that joined with no configuration refuses the log from its very
      // beginning (see HandleAppend): it needs a snapshot to learn the membership, even
      // if ours is still the bootstrap one at index 0.
      if (pr.state != ProgressState::kSnapshot) {
        pr.BecomeSnapshot(latest_snapshot_.metadata.index());
        SendSnapshotChunk(m.from());
      }
      return;
    }
    // Fast back-tracking: skip every entry of the leader's log that cannot match the
    // follower's hint (thesis §3.5), instead of one index per round trip.
    LogIndex next_probe = m.reject_hint_index();
    if (m.reject_hint_term() > 0)
      next_probe = log_.FindConflictByTerm(next_probe, m.reject_hint_term());
    if (pr.MaybeDecreaseTo(m.index(), next_probe)) {
      if (pr.state == ProgressState::kReplicate) pr.BecomeProbe();
      SendAppend(m.from(), /*allow_empty=*/false);
    }
    return;
  }
  const bool was_paused = pr.IsPaused(cfg_.inflight_msgs_max);
  if (!pr.MaybeUpdate(m.index())) {
    if (pr.state == ProgressState::kSnapshot && m.index() >= pr.pending_snapshot) {
      // The member installed a snapshot that does not raise its match (the bootstrap
      // snapshot at index 0, sent to a joining member): resume appending.
      pr.BecomeProbe();
      SendAppend(m.from(), /*allow_empty=*/false);
      return;
    }
    if (was_paused && !pr.IsPaused(cfg_.inflight_msgs_max)) SendAppend(m.from(), false);
    return;
  }
  if (pr.state == ProgressState::kProbe) {
    pr.BecomeReplicate();
  } else if (pr.state == ProgressState::kSnapshot && pr.match >= pr.pending_snapshot) {
    pr.BecomeProbe();
    pr.BecomeReplicate();
  }
  if (MaybeCommit()) commit_broadcast_pending_ = true;
  // Committing our own removal makes us step down (and forget every Progress).
  if (role_ != Role::kLeader) return;
  // Keep the pipeline full.
  while (pr.state == ProgressState::kReplicate && pr.next <= log_.LastIndex() &&
         !pr.IsPaused(cfg_.inflight_msgs_max)) {
    const LogIndex before = pr.next;
    SendAppend(m.from(), false);
    if (pr.next == before) break;
  }
  if (m.from() == lead_transferee_ && pr.match == log_.LastIndex()) {
    pb::Message now;
    now.set_type(pb::MSG_TIMEOUT_NOW);
    now.set_to(m.from());
    Send(std::move(now));
  }
}

void Raft::HandleHeartbeatResponse(const pb::Message& m) {
  auto it = progress_.find(m.from());
  if (it == progress_.end()) return;
  Progress& pr = it->second;
  pr.recently_active = true;
  pr.lease_stamp = std::max(pr.lease_stamp, m.lease_stamp());
  if (pr.state == ProgressState::kProbe) pr.probe_sent = false;  // probe again
  if (pr.match < log_.LastIndex()) {
    // The follower is behind. In replicate state the appends in flight may have been
    // lost: without new proposals nothing would ever be sent again (next is already past
    // the last index, or the in-flight window is full of lost appends), and the follower
    // would stay behind for good. So free one slot of a full window, and send even an
    // empty append: if the follower lacks its predecessor, it rejects it and we fall
    // back to probing (tests: RaftReplication.*CatchesUp*, LostAppendsDoNotStall...).
    if (pr.state == ProgressState::kReplicate && pr.IsPaused(cfg_.inflight_msgs_max)) {
      pr.inflight.pop_front();
    }
    SendAppend(m.from(), /*allow_empty=*/true);
  }
  OnReadAck(m.from(), m.context());
}

void Raft::HandleSnapshotResponse(const pb::Message& m) {
  auto it = progress_.find(m.from());
  if (it == progress_.end()) return;
  Progress& pr = it->second;
  pr.recently_active = true;
  if (pr.state != ProgressState::kSnapshot ||
      m.snapshot_metadata().index() != pr.pending_snapshot) {
    return;  // an answer about another snapshot
  }
  // The follower names the next byte it expects; a restart asks for byte 0 again.
  if (m.snapshot_offset() > pr.snapshot_offset || m.snapshot_offset() == 0) {
    pr.snapshot_offset = m.snapshot_offset();
    SendSnapshotChunk(m.from());
  }
}

bool Raft::MaybeCommit() {
  const LogIndex index = quorum::CommittedIndex(Voters(), [&](NodeId v) -> LogIndex {
    if (v == cfg_.id) return log_.StableIndex();  // our own durable entries only
    auto it = progress_.find(v);
    return it == progress_.end() ? 0 : it->second.match;
  });
  if (index <= log_.Committed()) return false;
  // §5.4.2: only an entry of the current term is committed by counting replicas;
  // earlier entries are committed indirectly with it (Figure 8).
  if (log_.TermAt(index) != term_ && !Bug(PlantedBug::kCommitPreviousTerm)) return false;
  const LogIndex old = log_.Committed();
  log_.CommitTo(index);
  OnCommitAdvanced(old);
  return true;
}

void Raft::OnCommitAdvanced(LogIndex old_commit) {
  if (role_ != Role::kLeader) return;
  const uint64_t bytes = log_.BytesOf(old_commit + 1, log_.Committed());
  uncommitted_bytes_ = uncommitted_bytes_ > bytes ? uncommitted_bytes_ - bytes : 0;
  if (CommittedInCurrentTerm()) ReleaseReadsWaitingForCommit();
  // A leader that removed itself leads until that change commits, then steps down
  // (thesis §4.2.2).
  const LogIndex removed_at = RemovedSelfAt();
  if (removed_at != 0 && log_.Committed() >= removed_at) {
    commit_broadcast_pending_ = false;
    BroadcastAppend(/*allow_empty=*/true);  // tell the others the change committed
    BecomeFollower(term_, kNoNode);
  }
}

// ---------------------------------------------------------------------------------
// Follower side.

void Raft::SendAppendResponse(NodeId to, LogIndex index) {
  pb::Message resp;
  resp.set_type(pb::MSG_APPEND_RESPONSE);
  resp.set_to(to);
  resp.set_index(index);
  Send(std::move(resp));
}

void Raft::HandleAppend(const pb::Message& m) {
  if (Conf().voters().empty() && Conf().learners().empty()) {
    // A member that joined with no configuration (engine.h, DurableState) must learn
    // the membership before taking entries: the log carries only the changes since the
    // cluster began, and replayed over nothing they would make it believe, once made a
    // voter, that it is the only one (and elect itself alone). Only a snapshot's
    // metadata carries the whole membership: refuse the entries, down to index 0, where
    // the refusal asks the leader for a snapshot (HandleAppendResponse).
    pb::Message resp;
    resp.set_type(pb::MSG_APPEND_RESPONSE);
    resp.set_to(m.from());
    resp.set_index(m.index());
    resp.set_reject(true);
    Send(std::move(resp));
    return;
  }
  if (m.index() < log_.Committed()) {
    // Everything up to our commit index already matches the leader's log.
    SendAppendResponse(m.from(), log_.Committed());
    return;
  }
  if (!log_.Matches(m.index(), m.log_term())) {
    // §5.3 consistency check failed. Hint at the last entry that could match: the
    // largest index at or below the leader's whose term is not above the leader's.
    const LogIndex hint =
        log_.FindConflictByTerm(std::min(m.index(), log_.LastIndex()), m.log_term());
    pb::Message resp;
    resp.set_type(pb::MSG_APPEND_RESPONSE);
    resp.set_to(m.from());
    resp.set_index(m.index());
    resp.set_reject(true);
    resp.set_reject_hint_index(hint);
    resp.set_reject_hint_term(log_.TermAt(hint).value_or(0));
    Send(std::move(resp));
    return;
  }
  std::vector<const pb::Entry*> entries;
  entries.reserve(m.entries_size());
  for (int i = 0; i < m.entries_size(); ++i) {
    SYNOD_ASSERT(m.entries(i).index() == m.index() + 1 + i, "append entries must be contiguous");
    entries.push_back(&m.entries(i));
  }
  if (auto truncated = log_.AppendFromLeader(entries)) ForgetConfEntriesFrom(*truncated);
  TrackConfEntries(m.index() + 1);
  const LogIndex last_new = m.index() + m.entries_size();
  // Commit no further than what this append proved we share with the leader.
  log_.CommitTo(std::min(m.commit(), last_new));
  SendAppendResponse(m.from(), last_new);
}

void Raft::HandleHeartbeat(const pb::Message& m) {
  // The leader sends commit <= our match, so the entries are ours and durable.
  log_.CommitTo(std::min(m.commit(), log_.LastIndex()));
  pb::Message resp;
  resp.set_type(pb::MSG_HEARTBEAT_RESPONSE);
  resp.set_to(m.from());
  resp.set_context(m.context());
  resp.set_lease_stamp(m.lease_stamp());
  Send(std::move(resp));
}

void Raft::HandleSnapshot(const pb::Message& m) {
  const pb::SnapshotMetadata& meta = m.snapshot_metadata();
  // A joining member installs even a snapshot it is not behind (the bootstrap one at
  // index 0), for the membership in its metadata (see HandleAppend).
  const bool joining = Conf().voters().empty() && Conf().learners().empty();
  if (meta.index() <= log_.Committed() && !joining) {
    SendAppendResponse(m.from(), log_.Committed());  // we are already past it
    return;
  }
  SnapshotAssembler::Outcome got = incoming_snapshot_.Take(m);
  if (!got.snapshot) {
    if (got.reply) Send(std::move(*got.reply));
    return;
  }
  Snapshot snap = std::move(*got.snapshot);
  if (log_.Matches(meta.index(), meta.term()) && !joining) {
    // We hold the snapshot's last entry, hence (log matching) everything before it.
    log_.CommitTo(meta.index());
    SendAppendResponse(m.from(), log_.Committed());
    return;
  }
  log_.Restore(meta);
  snapshot_conf_ = meta.conf_state();
  conf_entries_.clear();
  latest_snapshot_ = snap;  // shares the data
  latest_snapshot_sent_ = false;
  snapshot_to_install_ = std::move(snap);
  SendAppendResponse(m.from(), meta.index());
}

}  // namespace synod::consensus::raft
