// Membership: configurations chosen in the log, with a pipeline window alpha
// (Lamport, "Reconfiguring a State Machine"; "Paxos Made Simple" §3, last paragraph).
//
// The configuration chosen at slot i governs the slots after i + alpha. A leader never
// proposes beyond its chosen index + alpha, so the configuration of every slot it
// proposes is already known, and counting acceptances for slot s uses a quorum of the
// configuration of s. Changes add, promote or remove one server at a time, and a new
// change is proposed only once the previous one is in force, so the configurations
// that can govern the slots in flight at any moment differ by at most one server and
// any two of their majorities intersect.
//
// Phase 1 covers every slot from the proposer's first unchosen one, whose
// configurations it may not all know yet: the configuration entries near and after
// that slot are among the values the promises report. The proposer therefore needs a
// quorum of every configuration its log and the promises imply (MaybeWinPhase1).
#include <algorithm>

#include "base/assert.h"
#include "consensus/paxos/paxos.h"
#include "consensus/quorum/quorum.h"

namespace synod::consensus::paxos {

namespace {

bool Contains(const google::protobuf::RepeatedField<uint64_t>& ids, NodeId id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

void Erase(google::protobuf::RepeatedField<uint64_t>* ids, NodeId id) {
  auto it = std::find(ids->begin(), ids->end(), id);
  if (it != ids->end()) ids->erase(it);
}

void InsertSorted(google::protobuf::RepeatedField<uint64_t>* ids, NodeId id) {
  ids->Add(id);
  std::sort(ids->begin(), ids->end());
}

}  // namespace

pb::ConfState ApplyConfChange(pb::ConfState conf, const pb::ConfChange& cc) {
  const NodeId id = cc.node_id();
  Erase(conf.mutable_voters(), id);
  Erase(conf.mutable_learners(), id);
  switch (cc.type()) {
    case pb::CONF_ADD_VOTER:
      InsertSorted(conf.mutable_voters(), id);
      break;
    case pb::CONF_ADD_LEARNER:
      InsertSorted(conf.mutable_learners(), id);
      break;
    default:
      break;
  }
  return conf;
}

bool Paxos::InForceAt(LogIndex change_slot, LogIndex slot) const {
  return change_slot + cfg_.window_slots_max < slot;
}

pb::ConfState Paxos::ConfAt(LogIndex slot) const {
  pb::ConfState conf = snapshot_conf_;
  for (const auto& [at, cc] : conf_changes_) {
    if (!InForceAt(at, slot)) break;
    conf = ApplyConfChange(std::move(conf), cc);
  }
  return conf;
}

void Paxos::RestoreSnapshotConf(const pb::SnapshotMetadata& meta) {
  snapshot_conf_ = meta.conf_state();
  std::erase_if(conf_changes_, [&](const auto& p) { return p.first <= meta.index(); });
  for (const pb::PendingConfChange& p : meta.pending_conf_changes()) {
    conf_changes_[p.index()] = p.change();
  }
}

pb::ConfState Paxos::LatestConf() const {
  pb::ConfState conf = snapshot_conf_;
  for (const auto& [at, cc] : conf_changes_) conf = ApplyConfChange(std::move(conf), cc);
  return conf;
}

std::vector<Paxos::VoterSet> Paxos::VoterSetsOver(LogIndex lo, LogIndex hi) const {
  std::vector<VoterSet> sets;
  pb::ConfState conf = ConfAt(lo);
  sets.emplace_back(conf.voters().begin(), conf.voters().end());
  for (const auto& [at, cc] : conf_changes_) {
    const LogIndex effective = at + cfg_.window_slots_max + 1;
    if (effective <= lo) continue;
    if (effective > hi) break;
    conf = ApplyConfChange(std::move(conf), cc);
    VoterSet v(conf.voters().begin(), conf.voters().end());
    if (std::find(sets.begin(), sets.end(), v) == sets.end()) sets.push_back(std::move(v));
  }
  return sets;
}

bool Paxos::QuorumInEach(const std::vector<VoterSet>& sets,
                         const std::function<bool(NodeId)>& acked) const {
  for (const VoterSet& set : sets) {
    if (!quorum::HasQuorum(set, acked)) return false;
  }
  return !sets.empty();
}

bool Paxos::IsVoterNow(NodeId id) const {
  return Contains(ConfAt(log_.Committed() + 1).voters(), id);
}

bool Paxos::RemovedFromConf() const { return !IsVoterNow(cfg_.id); }

std::vector<NodeId> Paxos::Peers() const {
  std::set<NodeId> ids;
  for (const pb::ConfState& conf : {ConfAt(log_.Committed() + 1), LatestConf()}) {
    ids.insert(conf.voters().begin(), conf.voters().end());
    ids.insert(conf.learners().begin(), conf.learners().end());
  }
  ids.erase(cfg_.id);
  return {ids.begin(), ids.end()};  // sorted: a stable order wherever output depends on it
}

void Paxos::TrackConfEntry(const pb::Entry& e) {
  if (e.type() != pb::ENTRY_CONF_CHANGE) {
    conf_changes_.erase(e.index());
    return;
  }
  pb::ConfChange cc;
  if (!cc.ParseFromString(e.data())) {
    conf_changes_.erase(e.index());
    return;
  }
  conf_changes_[e.index()] = std::move(cc);
}

void Paxos::SyncProgressWithConf() {
  if (role_ != Role::kLeader) return;
  const std::vector<NodeId> peers = Peers();
  std::erase_if(progress_, [&](const auto& p) {
    return std::find(peers.begin(), peers.end(), p.first) == peers.end();
  });
  const pb::ConfState next = ConfAt(log_.LastIndex() + 1);
  for (NodeId id : peers) {
    auto [it, added] = progress_.try_emplace(id);
    if (added) {
      it->second.next = log_.LastIndex() + 1;
      it->second.recently_active = true;  // give a new member one round to answer
    }
    it->second.learner = !Contains(next.voters(), id);
  }
}

bool Paxos::ConfChangePending() const {
  if (conf_changes_.empty()) return false;
  const LogIndex at = conf_changes_.rbegin()->first;
  // In force for the next slot we would propose, and chosen.
  return at > log_.Committed() || at + cfg_.window_slots_max >= log_.LastIndex() + 1;
}

// A chosen configuration takes effect alpha slots later; without client traffic those
// slots might never be used, and the change (a removed leader stepping down, the next
// change waiting for this one) would wait for ever. So once it is chosen the leader
// fills the window with no-ops, in one batch.
void Paxos::PadToConfiguration() {
  if (role_ != Role::kLeader || conf_changes_.empty()) return;
  const LogIndex at = conf_changes_.rbegin()->first;
  if (at > log_.Committed()) return;
  while (log_.LastIndex() < at + cfg_.window_slots_max) {
    if (!AppendProposal(pb::ENTRY_NORMAL, "").ok()) return;
  }
}

Status Paxos::ValidateConfChange(const pb::ConfChange& cc) const {
  const NodeId id = cc.node_id();
  const pb::ConfState conf = LatestConf();
  const bool voter = Contains(conf.voters(), id);
  const bool learner = Contains(conf.learners(), id);
  if (id == kNoNode) return Status(Code::kInvalidArgument, "member id 0 is reserved");
  if (id >= (1u << kBallotNodeBits))
    return Status(Code::kInvalidArgument, "member id too large for a ballot");
  switch (cc.type()) {
    case pb::CONF_ADD_VOTER:
      if (voter) return Status(Code::kInvalidArgument, "member is already a voter");
      // In sync: it has acknowledged at least once, and is close to the leader's log.
      if (learner &&
          (!progress_.count(id) || progress_.at(id).match == 0 ||
           progress_.at(id).match + cfg_.learner_catchup_entries_max < log_.LastIndex())) {
        return Status(Code::kProposalDropped,
                      "can only promote a learner member which is in sync with leader");
      }
      return Status::Ok();
    case pb::CONF_ADD_LEARNER:
      if (voter || learner) return Status(Code::kInvalidArgument, "member already exists");
      return Status::Ok();
    case pb::CONF_REMOVE:
      if (!voter && !learner) return Status(Code::kNotFound, "member not found");
      if (voter && conf.voters_size() == 1)
        return Status(Code::kInvalidArgument, "cannot remove the last voter");
      return Status::Ok();
    default:
      return Status(Code::kInvalidArgument, "unknown membership change type");
  }
}

Result<ProposalId> Paxos::ProposeConfChange(const pb::ConfChange& cc) {
  if (role_ != Role::kLeader) {
    return Status(Code::kNotLeader, "not the leader; leader is " + std::to_string(leader_));
  }
  if (!RecoveryDone()) {
    return Status(Code::kProposalDropped,
                  "leader has not yet recovered the slots of earlier ballots");
  }
  if (ConfChangePending()) {
    return Status(Code::kProposalDropped, "another membership change is in progress");
  }
  if (Status s = ValidateConfChange(cc); !s.ok()) return s;
  return AppendProposal(pb::ENTRY_CONF_CHANGE, cc.SerializeAsString());
}

}  // namespace synod::consensus::paxos
