// Membership (thesis chapter 4): one server at a time, added as a voter or a learner,
// promoted, or removed.
//
// Each member uses the latest configuration in its log, committed or not (§4.1), so a
// truncated configuration entry is forgotten with it. Any two majorities of
// configurations that differ by one server overlap, which is what makes single-server
// changes safe, with two more rules:
//   - one change at a time: a change is proposed only after the previous one commits;
//   - a new leader proposes a change only after committing an entry of its own term
//     (the fix for the single-server change bug, Ongaro, raft-dev 2015): otherwise a
//     change from a deposed leader's term and one from ours could both take effect.
#include <algorithm>

#include "base/assert.h"
#include "consensus/raft/raft.h"

namespace synod::consensus::raft {

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

pb::ConfState ApplyChange(pb::ConfState conf, const pb::ConfChange& cc) {
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
    case pb::CONF_REMOVE:
      break;
    default:
      break;
  }
  return conf;
}

}  // namespace

const pb::ConfState& Raft::Conf() const {
  return conf_entries_.empty() ? snapshot_conf_ : conf_entries_.back().second;
}

bool Raft::IsVoter(NodeId id) const { return Contains(Conf().voters(), id); }
bool Raft::IsLearner(NodeId id) const { return Contains(Conf().learners(), id); }

std::vector<NodeId> Raft::Voters() const {
  return {Conf().voters().begin(), Conf().voters().end()};
}

std::vector<NodeId> Raft::Peers() const {
  std::vector<NodeId> peers;
  for (NodeId v : Conf().voters()) {
    if (v != cfg_.id) peers.push_back(v);
  }
  for (NodeId l : Conf().learners()) {
    if (l != cfg_.id) peers.push_back(l);
  }
  std::sort(peers.begin(), peers.end());  // a stable order wherever output depends on it
  return peers;
}

void Raft::TrackConfEntries(LogIndex from) {
  // From after the snapshot: entries at or below it (the catch-up entries Compact keeps)
  // are in snapshot_conf_ already. (The log never starts after the snapshot.)
  const LogIndex start = std::max({from, latest_snapshot_.metadata.index() + 1,
                                   conf_entries_.empty() ? 0 : conf_entries_.back().first + 1});
  bool changed = false;
  for (LogIndex i = start; i <= log_.LastIndex(); ++i) {
    const pb::Entry& e = log_.At(i);
    if (e.type() != pb::ENTRY_CONF_CHANGE) continue;
    pb::ConfChange cc;
    SYNOD_ASSERT(cc.ParseFromString(e.data()), "a configuration entry must parse");
    conf_entries_.emplace_back(i, ApplyChange(Conf(), cc));
    changed = true;
  }
  if (changed) SyncProgressWithConf();
}

void Raft::ForgetConfEntriesFrom(LogIndex index) {
  const size_t before = conf_entries_.size();
  std::erase_if(conf_entries_, [&](const auto& p) { return p.first >= index; });
  if (conf_entries_.size() != before) SyncProgressWithConf();
}

void Raft::SyncProgressWithConf() {
  if (role_ != Role::kLeader) return;
  std::vector<NodeId> peers = Peers();
  std::erase_if(progress_, [&](const auto& p) {
    return std::find(peers.begin(), peers.end(), p.first) == peers.end();
  });
  for (NodeId id : peers) {
    auto [it, added] = progress_.try_emplace(id);
    if (added) {
      it->second.next = log_.LastIndex() + 1;
      it->second.recently_active = true;  // give a new member one round to answer
    }
    it->second.learner = IsLearner(id);
  }
}

bool Raft::ConfChangePending() const {
  return !conf_entries_.empty() && conf_entries_.back().first > log_.Committed();
}

LogIndex Raft::RemovedSelfAt() const {
  if (IsVoter(cfg_.id) || conf_entries_.empty()) return 0;
  return conf_entries_.back().first;
}

Status Raft::ValidateConfChange(const pb::ConfChange& cc) const {
  const NodeId id = cc.node_id();
  if (id == kNoNode) return Status(Code::kInvalidArgument, "member id 0 is reserved");
  switch (cc.type()) {
    case pb::CONF_ADD_VOTER:
      if (IsVoter(id)) return Status(Code::kInvalidArgument, "member is already a voter");
      // In sync: it has acknowledged the log at least once (a learner that never started
      // is not promoted however short the log) and is close to the leader's last index.
      if (IsLearner(id) &&
          (progress_.at(id).match == 0 ||
           progress_.at(id).match + cfg_.learner_catchup_entries_max < log_.LastIndex())) {
        return Status(Code::kProposalDropped,
                      "can only promote a learner member which is in sync with leader");
      }
      return Status::Ok();
    case pb::CONF_ADD_LEARNER:
      if (IsVoter(id) || IsLearner(id)) {
        return Status(Code::kInvalidArgument, "member already exists");
      }
      return Status::Ok();
    case pb::CONF_REMOVE:
      if (!IsVoter(id) && !IsLearner(id)) return Status(Code::kNotFound, "member not found");
      if (IsVoter(id) && Conf().voters_size() == 1) {
        return Status(Code::kInvalidArgument, "cannot remove the last voter");
      }
      return Status::Ok();
    default:
      return Status(Code::kInvalidArgument, "unknown membership change type");
  }
}

Result<ProposalId> Raft::ProposeConfChange(const pb::ConfChange& cc) {
  if (role_ != Role::kLeader) {
    return Status(Code::kNotLeader, "not the leader; leader is " + std::to_string(leader_));
  }
  if (lead_transferee_ != kNoNode) {
    return Status(Code::kProposalDropped, "leadership transfer in progress");
  }
  if (!CommittedInCurrentTerm()) {
    return Status(Code::kProposalDropped, "leader has not yet committed an entry of its term");
  }
  if (ConfChangePending()) {
    return Status(Code::kProposalDropped, "another membership change is in progress");
  }
  if (Status s = ValidateConfChange(cc); !s.ok()) return s;
  pb::Entry e;
  e.set_term(term_);
  e.set_index(log_.LastIndex() + 1);
  e.set_type(pb::ENTRY_CONF_CHANGE);
  e.set_data(cc.SerializeAsString());
  ProposalId id{e.index(), e.term()};
  log_.AppendOwn(std::move(e));
  TrackConfEntries(id.index);  // takes effect now, on append (§4.1)
  broadcast_pending_ = true;
  return id;
}

}  // namespace synod::consensus::raft
