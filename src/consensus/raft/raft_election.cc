// Roles, time, elections (§5.2, §5.4.1), pre-vote (thesis §9.6), check-quorum and
// leader stickiness (thesis §6.2, §4.2.3), and leadership transfer (thesis §3.10).
#include "base/assert.h"
#include "consensus/quorum/quorum.h"
#include "consensus/raft/raft.h"

namespace synod::consensus::raft {

void Raft::ResetElectionTimer() {
  election_elapsed_ = 0;
  // Randomized in [election_ticks, 2 * election_ticks) so that split votes are rare.
  randomized_election_ticks_ =
      static_cast<int>(rng_.Between(cfg_.election_ticks, 2 * cfg_.election_ticks - 1));
}

bool Raft::HeardFromLeaderRecently() const {
  if (!cfg_.check_quorum) return false;
  // Leader leases (raft_read.cc) rest on this promise: having acknowledged a leader's
  // heartbeat, a member helps elect no other for an election timeout. A member that
  // restarts has forgotten whom it heard from and when, so with lease reads on it
  // keeps the promise for its first election timeout as if it had just heard from a
  // leader; otherwise it could vote at once and a new leader could commit writes that
  // the old one, still within its lease, would not see. (Test: RaftRead.
  // AMemberThatRestartsDoesNotHelpElectAnotherLeaderWithinTheLease.)
  if (cfg_.lease_reads && ticks_ < static_cast<uint64_t>(cfg_.election_ticks)) return true;
  return leader_ != kNoNode && election_elapsed_ < cfg_.election_ticks;
}

void Raft::BecomeFollower(Term term, NodeId leader) {
  if (term > term_) {
    term_ = term;
    vote_ = kNoNode;
  }
  role_ = Role::kFollower;
  leader_ = leader;
  ResetElectionTimer();
  heartbeat_elapsed_ = 0;
  votes_.clear();
  progress_.clear();
  AbortLeaderTransfer();
  uncommitted_bytes_ = 0;
  broadcast_pending_ = commit_broadcast_pending_ = false;
  DropPendingReads();
}

void Raft::BecomePreCandidate() {
  // Pre-vote changes neither term nor vote: nothing here needs persisting.
  role_ = Role::kPreCandidate;
  leader_ = kNoNode;
  votes_.clear();
  bug_grant_messages_ = 0;
  votes_[cfg_.id] = true;
}

void Raft::BecomeCandidate() {
  role_ = Role::kCandidate;
  term_ += 1;
  vote_ = cfg_.id;
  leader_ = kNoNode;
  ResetElectionTimer();
  votes_.clear();
  bug_grant_messages_ = 0;
  votes_[cfg_.id] = true;
}

void Raft::BecomeLeader() {
  role_ = Role::kLeader;
  leader_ = cfg_.id;
  election_elapsed_ = heartbeat_elapsed_ = 0;
  votes_.clear();
  progress_.clear();
  SyncProgressWithConf();
  uncommitted_bytes_ = log_.BytesOf(log_.Committed() + 1, log_.LastIndex());
  // §5.4.2: a leader commits entries of earlier terms only by committing one of its
  // own; the empty entry makes that happen at once, and unblocks reads (§6.4) and
  // membership changes that wait for it.
  pb::Entry noop;
  noop.set_term(term_);
  noop.set_index(log_.LastIndex() + 1);
  noop.set_type(pb::ENTRY_NORMAL);
  log_.AppendOwn(std::move(noop));
  broadcast_pending_ = true;
}

void Raft::Campaign(bool pre_vote, bool transfer) {
  if (pre_vote) {
    BecomePreCandidate();
  } else {
    BecomeCandidate();
  }
  const Term term = pre_vote ? term_ + 1 : term_;
  if (quorum::Tally(Voters(), votes_) == quorum::VoteOutcome::kWon) {
    // A single-voter group wins at once.
    if (pre_vote) {
      Campaign(false, transfer);
    } else {
      BecomeLeader();
    }
    return;
  }
  for (NodeId v : Voters()) {
    if (v == cfg_.id) continue;
    pb::Message m;
    m.set_type(pre_vote ? pb::MSG_PRE_VOTE : pb::MSG_VOTE);
    m.set_to(v);
    m.set_term(term);
    m.set_index(log_.LastIndex());
    m.set_log_term(log_.LastTerm());
    m.set_transfer(transfer);
    Send(std::move(m));
  }
}

void Raft::HandleVoteRequest(const pb::Message& m) {
  const bool pre = m.type() == pb::MSG_PRE_VOTE;
  // §5.2: one vote per term, first come first served (a repeated request from the
  // candidate we voted for is answered again). A pre-vote is granted to any candidate
  // for a later term, since it promises nothing.
  const bool can_vote =
      vote_ == m.from() || (vote_ == kNoNode && leader_ == kNoNode) || (pre && m.term() > term_);
  pb::Message resp;
  resp.set_type(pre ? pb::MSG_PRE_VOTE_RESPONSE : pb::MSG_VOTE_RESPONSE);
  resp.set_to(m.from());
  if (can_vote && log_.IsUpToDate(m.index(), m.log_term())) {
    // A granted pre-vote answers in the term asked about, so the pre-candidate can
    // match it to its campaign; our own term does not change.
    resp.set_term(pre ? m.term() : term_);
    if (!pre) {
      vote_ = m.from();
      election_elapsed_ = 0;
    }
  } else {
    resp.set_reject(true);
  }
  Send(std::move(resp));
}

void Raft::HandleVoteResponse(const pb::Message& m) {
  const bool pre = m.type() == pb::MSG_PRE_VOTE_RESPONSE;
  if (pre != (role_ == Role::kPreCandidate)) return;        // an answer to another campaign
  if (pre && !m.reject() && m.term() != term_ + 1) return;  // stale pre-vote grant
  if (Bug(PlantedBug::kCountVoteTwice) && !m.reject()) {
    // Planted bug: counts grant messages, so a duplicated grant counts twice.
    bug_grant_messages_++;
    if (static_cast<size_t>(bug_grant_messages_ + 1) >= quorum::MajorityOf(Voters().size())) {
      pre ? Campaign(false, false) : BecomeLeader();
      return;
    }
  }
  votes_[m.from()] = !m.reject();
  switch (quorum::Tally(Voters(), votes_)) {
    case quorum::VoteOutcome::kWon:
      if (pre) {
        Campaign(/*pre_vote=*/false, /*transfer=*/false);
      } else {
        BecomeLeader();
      }
      break;
    case quorum::VoteOutcome::kLost:
      BecomeFollower(term_, kNoNode);
      break;
    case quorum::VoteOutcome::kPending:
      break;
  }
}

void Raft::Tick() {
  ticks_++;
  if (role_ == Role::kLeader) {
    TickLeader();
  } else {
    TickFollower();
  }
}

void Raft::TickFollower() {
  election_elapsed_++;
  if (!Promotable() || election_elapsed_ < randomized_election_ticks_) return;
  ResetElectionTimer();
  Campaign(/*pre_vote=*/cfg_.pre_vote, /*transfer=*/false);
}

void Raft::TickLeader() {
  heartbeat_elapsed_++;
  election_elapsed_++;
  if (lead_transferee_ != kNoNode && ++transfer_elapsed_ >= cfg_.election_ticks) {
    AbortLeaderTransfer();  // the target did not take over in time
  }
  if (election_elapsed_ >= cfg_.election_ticks) {
    election_elapsed_ = 0;
    if (cfg_.check_quorum) {
      // Check-quorum: step down if a quorum has not been heard from in a whole
      // election timeout; then a partitioned leader stops serving lease reads and
      // stops accepting proposals it could never commit.
      const bool quorum_active = quorum::HasQuorum(Voters(), [&](NodeId v) {
        return v == cfg_.id || (progress_.count(v) && progress_.at(v).recently_active);
      });
      for (auto& [id, pr] : progress_) pr.recently_active = false;
      if (!quorum_active) {
        BecomeFollower(term_, kNoNode);
        return;
      }
    }
  }
  if (heartbeat_elapsed_ >= cfg_.heartbeat_ticks) {
    heartbeat_elapsed_ = 0;
    BroadcastHeartbeat();
  }
}

Status Raft::TransferLeader(NodeId target) {
  if (role_ != Role::kLeader) {
    return Status(Code::kNotLeader, "not the leader; leader is " + std::to_string(leader_));
  }
  if (target == cfg_.id) return Status::Ok();
  if (!IsVoter(target)) {
    return Status(Code::kInvalidArgument,
                  "transfer target " + std::to_string(target) + " is not a voter");
  }
  lead_transferee_ = target;
  transfer_elapsed_ = 0;
  // The target must have the whole log first, or it could not win (§5.4.1).
  if (progress_.at(target).match == log_.LastIndex()) {
    pb::Message m;
    m.set_type(pb::MSG_TIMEOUT_NOW);
    m.set_to(target);
    Send(std::move(m));
  } else {
    SendAppend(target, /*allow_empty=*/false);
  }
  return Status::Ok();
}

}  // namespace synod::consensus::raft
