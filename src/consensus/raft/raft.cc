#include "consensus/raft/raft.h"

#include "base/assert.h"

namespace synod::consensus {

const char* RoleName(Role role) {
  switch (role) {
    case Role::kFollower:
      return "follower";
    case Role::kPreCandidate:
      return "pre-candidate";
    case Role::kCandidate:
      return "candidate";
    case Role::kLeader:
      return "leader";
  }
  return "?";
}

const char* PlantedBugName(PlantedBug bug) {
  switch (bug) {
    case PlantedBug::kNone:
      return "none";
    case PlantedBug::kCountVoteTwice:
      return "count-vote-twice";
    case PlantedBug::kCommitPreviousTerm:
      return "commit-previous-term";
    case PlantedBug::kReadWithoutReadIndex:
      return "read-without-read-index";
    case PlantedBug::kAckBeforeFsync:
      return "ack-before-fsync";
    case PlantedBug::kForgetPromiseOnRestart:
      return "forget-promise-on-restart";
    case PlantedBug::kSkipRecovery:
      return "skip-recovery";
  }
  return "?";
}

}  // namespace synod::consensus

namespace synod::consensus::raft {

Raft::Raft(const Config& config, const DurableState& durable)
    : cfg_(config), rng_(config.seed ^ (config.id * 0x9e3779b97f4a7c15ULL)), log_(durable) {
  SYNOD_ASSERT(cfg_.id != kNoNode, "a member needs a non-zero id");
  SYNOD_ASSERT(cfg_.heartbeat_ticks > 0 && cfg_.election_ticks > cfg_.heartbeat_ticks,
               "election timeout must exceed the heartbeat interval");
  SYNOD_ASSERT(!cfg_.lease_reads || cfg_.check_quorum, "lease reads need check-quorum");
  term_ = durable.hard_state.term();
  vote_ = durable.hard_state.vote();
  last_hard_state_ = CurrentHardState();
  latest_snapshot_ = durable.snapshot;
  if (!latest_snapshot_.data) latest_snapshot_.data = EmptySnapshotData();
  snapshot_conf_ = durable.snapshot.metadata.conf_state();
  TrackConfEntries(log_.FirstIndex());
  BecomeFollower(term_, kNoNode);
}

bool Raft::Bug([[maybe_unused]] PlantedBug bug) const {
#ifdef SYNOD_PLANTED_BUGS
  return cfg_.planted_bug == bug;
#else
  return false;
#endif
}

pb::HardState Raft::CurrentHardState() const {
  pb::HardState hs;
  hs.set_term(term_);
  hs.set_vote(vote_);
  hs.set_commit(log_.Committed());
  return hs;
}

void Raft::Send(pb::Message message) {
  message.set_from(cfg_.id);
  // Pre-vote messages carry the term they are about; every other message our term.
  if (message.term() == 0) message.set_term(term_);
  msgs_.push_back(std::move(message));
}

// ---------------------------------------------------------------------------------
// Step: the term rules first (§5.1, with pre-vote and check-quorum), then the role.

Status Raft::Step(const pb::Message& m) {
  if (m.to() != cfg_.id) {
    return Status(Code::kInvalidArgument, "message addressed to another member");
  }
  if (!StepByTerm(m)) return Status::Ok();
  switch (m.type()) {
    case pb::MSG_VOTE:
    case pb::MSG_PRE_VOTE:
      HandleVoteRequest(m);
      return Status::Ok();
    default:
      break;
  }
  switch (role_) {
    case Role::kLeader:
      StepLeader(m);
      break;
    case Role::kCandidate:
    case Role::kPreCandidate:
      StepCandidate(m);
      break;
    case Role::kFollower:
      StepFollower(m);
      break;
  }
  return Status::Ok();
}

bool Raft::StepByTerm(const pb::Message& m) {
  const bool vote_request = m.type() == pb::MSG_VOTE || m.type() == pb::MSG_PRE_VOTE;
  if (m.term() > term_) {
    // Leader stickiness (thesis §4.2.3): while we hear from a live leader, a vote
    // request cannot have come from a legitimate election; ignore it without raising
    // our term, so a member returning from a partition does not depose the leader.
    if (vote_request && !m.transfer() && HeardFromLeaderRecently()) return false;
    if (m.type() == pb::MSG_PRE_VOTE) return true;  // never changes our term
    if (m.type() == pb::MSG_PRE_VOTE_RESPONSE && !m.reject()) return true;
    const bool from_leader =
        m.type() == pb::MSG_APPEND || m.type() == pb::MSG_HEARTBEAT || m.type() == pb::MSG_SNAPSHOT;
    BecomeFollower(m.term(), from_leader ? m.from() : kNoNode);
    return true;
  }
  if (m.term() < term_) {
    if ((cfg_.check_quorum || cfg_.pre_vote) &&
        (m.type() == pb::MSG_APPEND || m.type() == pb::MSG_HEARTBEAT)) {
      // A deposed leader: tell it our term so it steps down. (Without this, a leader
      // cut off by check-quorum or pre-vote could go on believing it leads.)
      pb::Message resp;
      resp.set_type(pb::MSG_APPEND_RESPONSE);
      resp.set_to(m.from());
      Send(std::move(resp));
    } else if (vote_request) {
      // §5.1: a request with a stale term is rejected with our term, so the candidate
      // catches up. Without this a candidate whose term lags behind a member that keeps
      // campaigning on its own (e.g. one that missed a membership change) could stay
      // behind for ever, and the group without a leader (found by the simulator).
      pb::Message resp;
      resp.set_type(m.type() == pb::MSG_PRE_VOTE ? pb::MSG_PRE_VOTE_RESPONSE
                                                 : pb::MSG_VOTE_RESPONSE);
      resp.set_to(m.from());
      resp.set_reject(true);
      Send(std::move(resp));
    }
    return false;
  }
  return true;
}

void Raft::StepLeader(const pb::Message& m) {
  switch (m.type()) {
    case pb::MSG_APPEND_RESPONSE:
      HandleAppendResponse(m);
      break;
    case pb::MSG_HEARTBEAT_RESPONSE:
      HandleHeartbeatResponse(m);
      break;
    case pb::MSG_SNAPSHOT_RESPONSE:
      HandleSnapshotResponse(m);
      break;
    case pb::MSG_READ_INDEX:
      ServeRead(m.context(), m.from());
      break;
    default:
      break;  // e.g. late vote responses, or another leader's traffic (a bug
              // the simulator's one-leader-per-term checker reports)
  }
}

void Raft::StepCandidate(const pb::Message& m) {
  switch (m.type()) {
    case pb::MSG_VOTE_RESPONSE:
    case pb::MSG_PRE_VOTE_RESPONSE:
      HandleVoteResponse(m);
      break;
    case pb::MSG_APPEND:
    case pb::MSG_HEARTBEAT:
    case pb::MSG_SNAPSHOT:
      // A leader of our term exists: it won, we lost.
      BecomeFollower(term_, m.from());
      StepFollower(m);
      break;
    default:
      break;
  }
}

void Raft::StepFollower(const pb::Message& m) {
  switch (m.type()) {
    case pb::MSG_APPEND:
      election_elapsed_ = 0;
      leader_ = m.from();
      HandleAppend(m);
      break;
    case pb::MSG_HEARTBEAT:
      election_elapsed_ = 0;
      leader_ = m.from();
      HandleHeartbeat(m);
      break;
    case pb::MSG_SNAPSHOT:
      election_elapsed_ = 0;
      leader_ = m.from();
      HandleSnapshot(m);
      break;
    case pb::MSG_TIMEOUT_NOW:
      // Leadership transfer (thesis §3.10): campaign at once, skipping pre-vote.
      if (Promotable()) Campaign(/*pre_vote=*/false, /*transfer=*/true);
      break;
    case pb::MSG_READ_INDEX_RESPONSE:
      read_states_.push_back({m.context(), m.index()});
      break;
    default:
      break;
  }
}

// ---------------------------------------------------------------------------------
// Proposals.

Result<ProposalId> Raft::Propose(std::string data) {
  if (role_ != Role::kLeader) {
    return Status(Code::kNotLeader, "not the leader; leader is " + std::to_string(leader_));
  }
  if (lead_transferee_ != kNoNode) {
    return Status(Code::kProposalDropped, "leadership transfer in progress");
  }
  if (uncommitted_bytes_ > 0 && uncommitted_bytes_ + data.size() > cfg_.uncommitted_bytes_max) {
    return Status(Code::kProposalDropped, "too many uncommitted bytes");
  }
  uncommitted_bytes_ += data.size();
  pb::Entry e;
  e.set_term(term_);
  e.set_index(log_.LastIndex() + 1);
  e.set_type(pb::ENTRY_NORMAL);
  *e.mutable_data() = std::move(data);
  ProposalId id{e.index(), e.term()};
  log_.AppendOwn(std::move(e));
  broadcast_pending_ = true;
  return id;
}

// ---------------------------------------------------------------------------------
// Ready / Advance.

bool Raft::HasReady() const {
  return broadcast_pending_ || commit_broadcast_pending_ || read_heartbeat_pending_ ||
         !msgs_.empty() || snapshot_to_install_.has_value() || log_.HasUnstable() ||
         log_.HasCommittedToApply() || !read_states_.empty() || HardStateChanged();
}

bool Raft::HardStateChanged() const {
  return term_ != last_hard_state_.term() || vote_ != last_hard_state_.vote() ||
         log_.Committed() != last_hard_state_.commit();
}

Ready Raft::TakeReady() {
  SYNOD_ASSERT(!ready_outstanding_, "TakeReady called again before Advance");
  if (role_ == Role::kLeader && (broadcast_pending_ || commit_broadcast_pending_)) {
    // Batching: every proposal since the last Ready leaves in one append per follower.
    BroadcastAppend(/*allow_empty=*/commit_broadcast_pending_);
  }
  if (role_ == Role::kLeader && read_heartbeat_pending_) BroadcastHeartbeat();
  broadcast_pending_ = commit_broadcast_pending_ = read_heartbeat_pending_ = false;

  Ready rd;
  rd.snapshot = std::move(snapshot_to_install_);
  snapshot_to_install_.reset();
  rd.entries = log_.TakeUnstable();
  // Remembered here, not read back from `rd` at Advance: the caller may have moved the
  // entries out of the Ready while persisting them.
  if (!rd.entries.empty()) {
    handed_last_ = ProposalId{rd.entries.back().index(), rd.entries.back().term()};
  } else {
    handed_last_.reset();
  }
  if (HardStateChanged()) {
    rd.hard_state = CurrentHardState();
    last_hard_state_ = *rd.hard_state;
  }
  rd.messages = std::move(msgs_);
  msgs_.clear();
  rd.committed_entries = log_.NextCommittedToApply(cfg_.apply_bytes_max);
  rd.read_states = std::move(read_states_);
  read_states_.clear();
  rd.role = role_;
  rd.leader = leader_;
  ready_outstanding_ = true;
  return rd;
}

void Raft::Advance(const Ready&) {
  SYNOD_ASSERT(ready_outstanding_, "Advance without a Ready");
  ready_outstanding_ = false;
  if (handed_last_) log_.StableTo(handed_last_->index, handed_last_->term);
  log_.FreeSomeDropped();
  // The leader's own entries now count towards a quorum.
  if (role_ == Role::kLeader && MaybeCommit()) commit_broadcast_pending_ = true;
}

bool Raft::MaySendBeforeDurable(const pb::Message& message) const {
  return role_ == Role::kLeader &&
         (message.type() == pb::MSG_APPEND || message.type() == pb::MSG_HEARTBEAT);
}

EngineStatus Raft::GetStatus() const {
  EngineStatus s;
  s.id = cfg_.id;
  s.role = role_;
  s.term = term_;
  s.leader = leader_;
  s.commit = log_.Committed();
  s.applied = log_.Applied();
  s.first_index = log_.FirstIndex();
  s.last_index = log_.LastIndex();
  s.conf_state = Conf();
  if (role_ == Role::kLeader) {
    for (const auto& [id, pr] : progress_) {
      s.peers[id] = PeerStatus{pr.match, pr.next, quorum::ProgressStateName(pr.state), pr.learner,
                               pr.recently_active};
    }
  }
  return s;
}

Result<pb::SnapshotMetadata> Raft::Compact(Snapshot snapshot) {
  const LogIndex index = snapshot.metadata.index();
  const LogIndex held = latest_snapshot_.metadata.index();
  if (index == held) {
    return ReplaceSnapshotData(latest_snapshot_, latest_snapshot_sent_, std::move(snapshot));
  }
  if (index < held) {
    return Status(Code::kInvalidArgument,
                  "snapshot index " + std::to_string(index) + " is not past the current snapshot");
  }
  if (index > log_.Applied() || index > log_.StableIndex()) {
    return Status(Code::kInvalidArgument,
                  "snapshot index " + std::to_string(index) + " is beyond the applied index");
  }
  // The configuration in force at `index`: the last configuration entry at or below it.
  pb::ConfState conf = snapshot_conf_;
  for (const auto& [at, c] : conf_entries_) {
    if (at <= index) conf = c;
  }
  snapshot.metadata.set_term(*log_.TermAt(index));
  *snapshot.metadata.mutable_conf_state() = conf;
  // The log keeps its last catchup_entries before the snapshot for followers a little
  // behind; a follower further behind gets the snapshot (SendAppend finds no entry).
  log_.CompactTo(index - std::min(index, cfg_.catchup_entries));
  snapshot_conf_ = conf;
  std::erase_if(conf_entries_, [&](const auto& p) { return p.first <= index; });
  latest_snapshot_ = std::move(snapshot);
  latest_snapshot_sent_ = false;
  if (!latest_snapshot_.data) latest_snapshot_.data = EmptySnapshotData();
  return latest_snapshot_.metadata;
}

}  // namespace synod::consensus::raft
