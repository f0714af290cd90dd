// The proposer: phase 1 once for every slot, recovery, and leadership
// ("Paxos Made Simple" §3; "Paxos Made Live" §5.2 on the stable leader).
//
// A member that hears from no leader for its randomized election timeout picks a
// ballot above every ballot it has seen and prepares every slot from its first
// unchosen one. Its own promise is persisted before the prepares leave. A quorum of
// promises (in every configuration that can govern those slots, see
// paxos_membership.cc) makes it leader; it then re-proposes, in its own ballot, the
// value accepted in the highest ballot at each slot any promise reported, and fills
// the gaps below the highest such slot with no-ops. Only then are the slots it
// proposes new values for free of any value that may already have been chosen.
//
// Duelling proposers (each preempting the other's phase 1 for ever) are damped the way
// Raft damps split votes: a proposer that is refused goes back to following and waits a
// fresh random timeout before trying again with a higher ballot.
#include <algorithm>

#include "base/assert.h"
#include "consensus/paxos/paxos.h"
#include "consensus/quorum/quorum.h"

namespace synod::consensus::paxos {

void Paxos::ResetElectionTimer() {
  election_elapsed_ = 0;
  randomized_election_ticks_ =
      static_cast<int>(rng_.Between(cfg_.election_ticks, 2 * cfg_.election_ticks - 1));
}

void Paxos::BecomeFollower(NodeId leader) {
  role_ = Role::kFollower;
  leader_ = leader;
  ResetElectionTimer();
  heartbeat_elapsed_ = 0;
  promises_.clear();
  prepared_.clear();
  progress_.clear();
  AbortLeaderTransfer();
  uncommitted_bytes_ = 0;
  broadcast_pending_ = commit_broadcast_pending_ = false;
  DropPendingReads();
}

void Paxos::Campaign() {
  if (cfg_.pre_prepare) {
    StartPrePrepare();
  } else {
    StartPhase1(/*transfer=*/false);
  }
}

void Paxos::StartPrePrepare() {
  role_ = Role::kPreCandidate;
  leader_ = kNoNode;
  ResetElectionTimer();
  progress_.clear();
  DropPendingReads();
  pre_ballot_ = MakeBallot(std::max(RoundOf(promised_), round_seen_) + 1, cfg_.id);
  pre_votes_.clear();
  pre_votes_[cfg_.id] = true;
  for (NodeId p : Peers()) {
    pb::Message m;
    m.set_type(pb::MSG_PRE_PREPARE);
    m.set_to(p);
    m.set_term(pre_ballot_);
    m.set_index(log_.Committed() + 1);
    Send(std::move(m));
  }
  HandlePrePromise(pb::Message{});  // a group of one goes on at once
}

void Paxos::HandlePrePromise(const pb::Message& m) {
  if (role_ != Role::kPreCandidate) return;
  if (m.type() == pb::MSG_PRE_PROMISE) {
    if (m.term() != pre_ballot_) return;  // an answer to another campaign
    pre_votes_[m.from()] = !m.reject();
  }
  const pb::ConfState conf = ConfAt(log_.Committed() + 1);
  const std::vector<NodeId> voters(conf.voters().begin(), conf.voters().end());
  switch (quorum::Tally(voters, pre_votes_)) {
    case quorum::VoteOutcome::kWon:
      StartPhase1(/*transfer=*/false);
      break;
    case quorum::VoteOutcome::kLost:
      BecomeFollower(kNoNode);
      break;
    case quorum::VoteOutcome::kPending:
      break;
  }
}

void Paxos::StartPhase1(bool transfer) {
  role_ = Role::kCandidate;
  leader_ = kNoNode;
  ResetElectionTimer();
  progress_.clear();
  DropPendingReads();
  const uint64_t round = std::max(RoundOf(promised_), round_seen_) + 1;
  round_seen_ = round;
  ballot_ = MakeBallot(round, cfg_.id);
  // Our own promise: durable before any prepare leaves (same Ready).
  promised_ = ballot_;
  accepted_through_ = log_.Committed();
  phase1_start_ = log_.Committed() + 1;
  phase1_transfer_ = transfer;
  promises_.clear();
  prepared_.clear();
  promises_[cfg_.id] = PromiseReceived{true, log_.Committed(), {}};
  for (NodeId p : Peers()) SendPrepare(p);
  MaybeWinPhase1();  // a group of one wins at once
}

void Paxos::SendPrepare(NodeId to) {
  prepared_.insert(to);
  pb::Message m;
  m.set_type(pb::MSG_PREPARE);
  m.set_to(to);
  m.set_term(ballot_);
  m.set_index(phase1_start_);
  m.set_transfer(phase1_transfer_);
  Send(std::move(m));
}

void Paxos::HandlePromise(const pb::Message& m) {
  if (role_ != Role::kCandidate || m.term() != ballot_ || m.index() != phase1_start_) return;
  PromiseReceived& p = promises_[m.from()];
  p.granted = true;
  p.commit = m.commit();
  p.entries.assign(m.entries().begin(), m.entries().end());
  MaybeWinPhase1();
}

void Paxos::HandleNack(const pb::Message& m) {
  if (m.term() != ballot_ || role_ == Role::kFollower) return;  // about another ballot
  if (m.promised() > ballot_) {
    // Preempted by a higher ballot: back off for a random timeout (BecomeFollower
    // draws one), then try again above it if nobody has taken over by then.
    BecomeFollower(kNoNode);
    return;
  }
  if (role_ != Role::kCandidate) return;
  // Refused without a higher promise: the acceptor follows a live leader, or we lag
  // behind its snapshot. Give up once a quorum of our configuration has refused.
  auto [it, fresh] = promises_.try_emplace(m.from());
  if (it->second.granted) return;
  std::map<NodeId, bool> votes;
  for (const auto& [id, p] : promises_) votes[id] = p.granted;
  const pb::ConfState conf = ConfAt(phase1_start_);
  const std::vector<NodeId> voters(conf.voters().begin(), conf.voters().end());
  if (quorum::Tally(voters, votes) == quorum::VoteOutcome::kLost) BecomeFollower(kNoNode);
}

// Phase 1 is won when a quorum of every configuration that may govern a slot from our
// first unchosen one on has promised; which configurations those are depends on the
// configuration entries the promises report, so this is evaluated at every promise.
void Paxos::MaybeWinPhase1() {
  // For each slot, the value accepted in the highest ballot ("Paxos Made Simple", P2c).
  std::map<LogIndex, pb::Entry> highest;
  LogIndex last = phase1_start_ - 1;
  auto consider = [&](const pb::Entry& e) {
    if (e.index() < phase1_start_) return;
    auto [it, fresh] = highest.try_emplace(e.index(), e);
    if (!fresh && e.ballot() > it->second.ballot()) it->second = e;
    last = std::max(last, e.index());
  };
  for (LogIndex i = phase1_start_; i <= log_.LastIndex(); ++i) consider(log_.At(i));
  for (const auto& [id, p] : promises_) {
    if (id == cfg_.id || !p.granted) continue;
    for (const auto& e : p.entries) consider(e);
  }

  // The configurations of every slot from phase1_start_ on: the one in force there, and
  // the one after each configuration entry at or after phase1_start_ - alpha (chosen
  // ones from our log, possibly chosen ones from the promises).
  std::vector<VoterSet> sets;
  pb::ConfState conf = ConfAt(phase1_start_);
  auto add = [&](const pb::ConfState& c) {
    VoterSet v(c.voters().begin(), c.voters().end());
    if (std::find(sets.begin(), sets.end(), v) == sets.end()) sets.push_back(std::move(v));
  };
  add(conf);
  const LogIndex lo =
      phase1_start_ > cfg_.window_slots_max ? phase1_start_ - cfg_.window_slots_max : 0;
  for (auto it = conf_changes_.lower_bound(lo);
       it != conf_changes_.end() && it->first < phase1_start_; ++it) {
    conf = ApplyConfChange(conf, it->second);
    add(conf);
  }
  for (const auto& [slot, e] : highest) {
    if (e.type() != pb::ENTRY_CONF_CHANGE) continue;
    pb::ConfChange cc;
    if (!cc.ParseFromString(e.data())) continue;
    conf = ApplyConfChange(conf, cc);
    add(conf);
  }
  // Members of configurations we only just learned of must be asked too.
  for (const VoterSet& set : sets) {
    for (NodeId v : set) {
      if (v != cfg_.id && !prepared_.count(v)) SendPrepare(v);
    }
  }
  const bool won = QuorumInEach(sets, [&](NodeId v) {
    auto it = promises_.find(v);
    return it != promises_.end() && it->second.granted;
  });
  if (!won) return;
  if (Bug(PlantedBug::kSkipRecovery)) {
    // Planted bug: the new leader ignores every accepted value (its own included) and
    // proposes afresh from its first unchosen slot, overwriting what may be chosen.
    highest.clear();
    last = phase1_start_ - 1;
    log_.TruncateFrom(phase1_start_);
    std::erase_if(conf_changes_, [&](const auto& p) { return p.first >= phase1_start_; });
  }
  BecomeLeader(std::move(highest), last);
}

void Paxos::BecomeLeader(std::map<LogIndex, pb::Entry> recovered, LogIndex last) {
  role_ = Role::kLeader;
  leader_ = cfg_.id;
  election_elapsed_ = heartbeat_elapsed_ = 0;
  // Recovery: re-propose every possibly chosen value in our ballot, keeping its
  // identity (Entry.term), and fill the gaps with no-ops, so that the slots up to
  // `last` hold exactly one value each in our ballot.
  for (LogIndex s = phase1_start_; s <= last; ++s) {
    pb::Entry e;
    auto it = recovered.find(s);
    if (it != recovered.end()) {
      e = std::move(it->second);
    } else {
      e.set_term(ballot_);
      e.set_index(s);
      e.set_type(pb::ENTRY_NORMAL);
    }
    e.set_ballot(ballot_);
    const pb::Entry* have = log_.Find(s);
    if (have != nullptr && have->ballot() == ballot_) continue;
    TrackConfEntry(e);
    log_.Write(std::move(e));
  }
  ExtendAcceptedThrough();
  recovery_last_ = last;
  uncommitted_bytes_ = log_.BytesOf(log_.Committed() + 1, log_.LastIndex());
  progress_.clear();
  SyncProgressWithConf();
  for (auto& [id, pr] : progress_) {
    // An acceptor's promise told us its chosen index: it holds every slot up to there.
    auto it = promises_.find(id);
    if (it != promises_.end() && it->second.granted) {
      pr.match = std::min(it->second.commit, log_.LastIndex());
      pr.next = pr.match + 1;
    } else {
      pr.next = phase1_start_;
    }
  }
  promises_.clear();
  prepared_.clear();
  broadcast_pending_ = true;
  if (RecoveryDone()) ReleaseReadsWaitingForRecovery();
  PadToConfiguration();
}

void Paxos::HandleTimeoutNow(const pb::Message& m) {
  // Leadership transfer: the leader asks us to run phase 1 at once; our prepares say
  // so, which lets them past acceptors that still hear from that leader.
  if (role_ == Role::kFollower && m.from() == leader_ && m.term() == promised_ && Promotable()) {
    StartPhase1(/*transfer=*/true);
  }
}

void Paxos::Tick() {
  ticks_++;
  if (role_ == Role::kLeader) {
    TickLeader();
  } else {
    TickFollower();
  }
}

void Paxos::TickFollower() {
  election_elapsed_++;
  if (election_elapsed_ < randomized_election_ticks_) return;
  if (!Promotable()) {
    if (role_ != Role::kFollower) BecomeFollower(kNoNode);
    ResetElectionTimer();
    return;
  }
  // A follower that heard nothing, or a candidate whose phase 1 did not finish in
  // time: a new ballot.
  Campaign();
}

void Paxos::TickLeader() {
  heartbeat_elapsed_++;
  election_elapsed_++;
  if (lead_transferee_ != kNoNode && ++transfer_elapsed_ >= cfg_.election_ticks) {
    AbortLeaderTransfer();  // the target did not take over in time
  }
  if (election_elapsed_ >= cfg_.election_ticks) {
    election_elapsed_ = 0;
    if (cfg_.stable_leader) {
      // A leader that has not heard from a quorum in an election timeout steps down:
      // it could choose nothing, and acceptors that hear from no leader will follow
      // another proposer.
      const bool quorum_active =
          QuorumInEach(VoterSetsOver(log_.Committed() + 1, log_.LastIndex() + 1), [&](NodeId v) {
            return v == cfg_.id || (progress_.count(v) && progress_.at(v).recently_active);
          });
      for (auto& [id, pr] : progress_) pr.recently_active = false;
      if (!quorum_active) {
        BecomeFollower(kNoNode);
        return;
      }
    }
  }
  if (heartbeat_elapsed_ >= cfg_.heartbeat_ticks) {
    heartbeat_elapsed_ = 0;
    BroadcastHeartbeat();
  }
}

Status Paxos::TransferLeader(NodeId target) {
  if (role_ != Role::kLeader) {
    return Status(Code::kNotLeader, "not the leader; leader is " + std::to_string(leader_));
  }
  if (target == cfg_.id) return Status::Ok();
  if (!IsVoterNow(target) || !progress_.count(target)) {
    return Status(Code::kInvalidArgument,
                  "transfer target " + std::to_string(target) + " is not a voter");
  }
  lead_transferee_ = target;
  transfer_elapsed_ = 0;
  // The target catches up first, so its phase 1 has little to recover.
  if (progress_.at(target).match == log_.LastIndex()) {
    pb::Message m;
    m.set_type(pb::MSG_TIMEOUT_NOW);
    m.set_to(target);
    m.set_term(ballot_);
    Send(std::move(m));
  } else {
    SendAccept(target, /*allow_empty=*/false);
  }
  return Status::Ok();
}

}  // namespace synod::consensus::paxos
