#include "consensus/paxos/paxos.h"

#include <algorithm>

#include "base/assert.h"

namespace synod::consensus::paxos {

Paxos::Paxos(const Config& config, const DurableState& durable)
    : cfg_(config), rng_(config.seed ^ (config.id * 0x9e3779b97f4a7c15ULL)), log_(durable) {
  SYNOD_ASSERT(cfg_.id != kNoNode && cfg_.id < (1u << kBallotNodeBits),
               "a member id must fit in the node bits of a ballot");
  SYNOD_ASSERT(cfg_.heartbeat_ticks > 0 && cfg_.election_ticks > cfg_.heartbeat_ticks,
               "election timeout must exceed the heartbeat interval");
  SYNOD_ASSERT(cfg_.window_slots_max > 0, "alpha must be at least one slot");
  promised_ = durable.hard_state.term();
  if (Bug(PlantedBug::kForgetPromiseOnRestart)) {
    // Planted bug: the acceptor comes back believing it promised nothing, so it may
    // accept values of ballots it promised to ignore, and reuse its own ballots.
    promised_ = 0;
  }
  round_seen_ = RoundOf(promised_);
  latest_snapshot_ = durable.snapshot;
  if (!latest_snapshot_.data) latest_snapshot_.data = EmptySnapshotData();
  RestoreSnapshotConf(durable.snapshot.metadata);
  for (LogIndex i = log_.FirstIndex(); i <= log_.LastIndex(); ++i) TrackConfEntry(log_.At(i));
  accepted_through_ = log_.Committed();
  ExtendAcceptedThrough();
  last_hard_state_ =
      Bug(PlantedBug::kForgetPromiseOnRestart) ? CurrentHardState() : durable.hard_state;
  BecomeFollower(kNoNode);
}

bool Paxos::Bug([[maybe_unused]] PlantedBug bug) const {
#ifdef SYNOD_PLANTED_BUGS
  return cfg_.planted_bug == bug;
#else
  return false;
#endif
}

pb::HardState Paxos::CurrentHardState() const {
  pb::HardState hs;
  hs.set_term(promised_);
  hs.set_vote(ProposerOf(promised_));
  hs.set_commit(log_.Committed());
  return hs;
}

bool Paxos::HardStateChanged() const {
  return promised_ != last_hard_state_.term() || log_.Committed() != last_hard_state_.commit();
}

void Paxos::Send(pb::Message message) {
  message.set_from(cfg_.id);
  msgs_.push_back(std::move(message));
}

// ---------------------------------------------------------------------------------
// Step: each message goes to the role that handles it. The ballot rules (refuse what
// is below our promise, follow a leader whose ballot is at least our promise) live with
// the acceptor, since they are the acceptor's promise.

Status Paxos::Step(const pb::Message& m) {
  if (m.to() != cfg_.id) {
    return Status(Code::kInvalidArgument, "message addressed to another member");
  }
  round_seen_ = std::max(round_seen_, RoundOf(std::max(m.term(), m.promised())));
  switch (m.type()) {
    case pb::MSG_PRE_PREPARE:
      HandlePrePrepare(m);
      break;
    case pb::MSG_PRE_PROMISE:
      HandlePrePromise(m);
      break;
    case pb::MSG_PREPARE:
      HandlePrepare(m);
      break;
    case pb::MSG_PROMISE:
      HandlePromise(m);
      break;
    case pb::MSG_NACK:
      HandleNack(m);
      break;
    case pb::MSG_ACCEPT:
      HandleAccept(m);
      break;
    case pb::MSG_ACCEPTED:
      HandleAccepted(m);
      break;
    case pb::MSG_HEARTBEAT:
      HandleHeartbeat(m);
      break;
    case pb::MSG_HEARTBEAT_RESPONSE:
      HandleHeartbeatResponse(m);
      break;
    case pb::MSG_SNAPSHOT:
      HandleSnapshot(m);
      break;
    case pb::MSG_SNAPSHOT_RESPONSE:
      HandleSnapshotResponse(m);
      break;
    case pb::MSG_TIMEOUT_NOW:
      HandleTimeoutNow(m);
      break;
    case pb::MSG_READ_INDEX:
      if (role_ == Role::kLeader) ServeRead(m.context(), m.from());
      break;
    case pb::MSG_READ_INDEX_RESPONSE:
      if (role_ == Role::kFollower) read_states_.push_back({m.context(), m.index()});
      break;
    default:
      break;  // Raft's messages, or a type from a newer version: not ours
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------
// Proposals: a new value at the next free slot, in our ballot. The leader accepts it
// itself (durably, through the Ready) and sends it to every acceptor at the next Ready,
// batched with every other proposal made since.

Result<ProposalId> Paxos::Propose(std::string data) {
  return AppendProposal(pb::ENTRY_NORMAL, std::move(data));
}

Result<ProposalId> Paxos::AppendProposal(pb::EntryType type, std::string data) {
  if (role_ != Role::kLeader) {
    return Status(Code::kNotLeader, "not the leader; leader is " + std::to_string(leader_));
  }
  if (lead_transferee_ != kNoNode) {
    return Status(Code::kProposalDropped, "leadership transfer in progress");
  }
  // Alpha: the configuration of slot s is fixed by the slots before s - alpha, which
  // must be chosen (and so known) when s is proposed.
  if (log_.LastIndex() + 1 > log_.Committed() + cfg_.window_slots_max) {
    return Status(Code::kProposalDropped, "the pipeline window (alpha) is full");
  }
  if (uncommitted_bytes_ > 0 && uncommitted_bytes_ + data.size() > cfg_.uncommitted_bytes_max) {
    return Status(Code::kProposalDropped, "too many uncommitted bytes");
  }
  uncommitted_bytes_ += data.size();
  pb::Entry e;
  e.set_term(ballot_);
  e.set_index(log_.LastIndex() + 1);
  e.set_type(type);
  e.set_data(std::move(data));
  e.set_ballot(ballot_);
  const ProposalId id{e.index(), e.term()};
  TrackConfEntry(e);
  log_.Write(std::move(e));
  ExtendAcceptedThrough();
  broadcast_pending_ = true;
  return id;
}

// ---------------------------------------------------------------------------------
// Ready / Advance.

bool Paxos::HasReady() const {
  return broadcast_pending_ || commit_broadcast_pending_ || read_heartbeat_pending_ ||
         !msgs_.empty() || snapshot_to_install_.has_value() || log_.HasUnstable() ||
         log_.HasCommittedToApply() || !read_states_.empty() || HardStateChanged();
}

Ready Paxos::TakeReady() {
  SYNOD_ASSERT(!ready_outstanding_, "TakeReady called again before Advance");
  if (role_ == Role::kLeader && (broadcast_pending_ || commit_broadcast_pending_)) {
    // Batching: every proposal since the last Ready leaves in one accept per acceptor.
    BroadcastAccept(/*allow_empty=*/commit_broadcast_pending_);
  }
  if (role_ == Role::kLeader && read_heartbeat_pending_) BroadcastHeartbeat();
  broadcast_pending_ = commit_broadcast_pending_ = read_heartbeat_pending_ = false;

  Ready rd;
  rd.snapshot = std::move(snapshot_to_install_);
  snapshot_to_install_.reset();
  rd.entries = log_.TakeUnstable();
  if (!rd.entries.empty()) {
    handed_last_ = rd.entries.back().index();
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

void Paxos::Advance(const Ready&) {
  SYNOD_ASSERT(ready_outstanding_, "Advance without a Ready");
  ready_outstanding_ = false;
  if (handed_last_) log_.StableTo(*handed_last_);
  log_.FreeSomeDropped();
  // The leader's own acceptances now count.
  if (role_ == Role::kLeader && MaybeCommit()) commit_broadcast_pending_ = true;
}

EngineStatus Paxos::GetStatus() const {
  EngineStatus s;
  s.id = cfg_.id;
  s.role = role_;
  s.term = promised_;
  s.leader = leader_;
  s.commit = log_.Committed();
  s.applied = log_.Applied();
  s.first_index = log_.FirstIndex();
  s.last_index = log_.LastIndex();
  s.conf_state = LatestConf();
  if (role_ == Role::kLeader) {
    for (const auto& [id, pr] : progress_) {
      s.peers[id] = PeerStatus{pr.match, pr.next, quorum::ProgressStateName(pr.state), pr.learner,
                               pr.recently_active};
    }
  }
  return s;
}

// ---------------------------------------------------------------------------------
// Compaction. A snapshot at slot i stands for every chosen value up to i. Its metadata
// carries the configuration that governs slot i + 1 and, since a configuration entry
// takes effect only alpha slots after it, every configuration entry up to i not yet in
// force at i + 1, with its slot: with them, the configuration of every later slot is
// known without the log. (A snapshot cannot wait for those changes to be in force: after
// a restart the state can be made only at the store's index, and a member that needs a
// snapshot may be the one whose acceptances would take the log past the window.)

Result<pb::SnapshotMetadata> Paxos::Compact(Snapshot snapshot) {
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
  const pb::ConfState conf = ConfAt(index + 1);
  pb::SnapshotMetadata& meta = snapshot.metadata;
  meta.set_term(*log_.TermAt(index));
  *meta.mutable_conf_state() = conf;
  meta.clear_pending_conf_changes();
  for (const auto& [slot, cc] : conf_changes_) {
    if (slot > index) break;
    if (InForceAt(slot, index + 1)) continue;
    pb::PendingConfChange* pending = meta.add_pending_conf_changes();
    pending->set_index(slot);
    *pending->mutable_change() = cc;
  }
  // The log keeps its last catchup_entries chosen values before the snapshot for
  // acceptors a little behind (and for prepares from them: their first unchosen slot is
  // still in the log); one further behind gets the snapshot.
  log_.CompactTo(index - std::min(index, cfg_.catchup_entries));
  snapshot_conf_ = conf;
  // The changes folded into snapshot_conf_ are forgotten; the pending ones stay.
  std::erase_if(conf_changes_, [&](const auto& p) { return InForceAt(p.first, index + 1); });
  latest_snapshot_ = std::move(snapshot);
  latest_snapshot_sent_ = false;
  if (!latest_snapshot_.data) latest_snapshot_.data = EmptySnapshotData();
  return latest_snapshot_.metadata;
}

}  // namespace synod::consensus::paxos
