// The acceptor ("Paxos Made Simple" §2.2, P1a and phase 2b).
//
// An acceptor promises never to accept a value in a ballot below the highest ballot it
// has promised, and it persists the promise and every value it accepts before saying
// so: the PROMISE and ACCEPTED messages leave only after the Ready that holds the new
// HardState.term (the promise) and entries (the accepted values) is durable. A
// restarted acceptor resumes from exactly that, which is why it never forgets a
// promise (planted bug kForgetPromiseOnRestart does).
//
// Accepting is per slot, but an acceptor tracks one more thing to make counting cheap:
// `accepted_through_`, the highest slot such that every slot between its chosen index
// and there holds a value accepted in the ballot it promised. The leader's ACCEPT names
// the slot before its entries (like Raft's prevLogIndex) and is refused if that slot
// is beyond accepted_through_: then an acknowledgement "through slot s" always means
// every slot up to s, and the leader counts acceptances with one number per acceptor.
#include <algorithm>

#include "base/assert.h"
#include "consensus/paxos/paxos.h"

namespace synod::consensus::paxos {

bool Paxos::HeardFromLeaderRecently() const {
  if (!cfg_.stable_leader) return false;
  return leader_ != kNoNode && election_elapsed_ < cfg_.election_ticks;
}

bool Paxos::Joining() const {
  const pb::ConfState conf = LatestConf();
  return conf.voters().empty() && conf.learners().empty();
}

void Paxos::RaisePromise(Ballot ballot) {
  promised_ = ballot;
  // Nothing is accepted in the new ballot yet: slots after the chosen index hold values
  // of earlier ballots, which the new leader may replace.
  accepted_through_ = log_.Committed();
  if (role_ != Role::kFollower) BecomeFollower(kNoNode);
}

void Paxos::ExtendAcceptedThrough() {
  accepted_through_ = std::max(accepted_through_, log_.Committed());
  while (accepted_through_ < log_.LastIndex()) {
    const pb::Entry* e = log_.Find(accepted_through_ + 1);
    if (e == nullptr || e->ballot() != promised_) break;
    ++accepted_through_;
  }
}

void Paxos::SendNack(const pb::Message& m) {
  pb::Message nack;
  nack.set_type(pb::MSG_NACK);
  nack.set_to(m.from());
  nack.set_term(m.term());
  nack.set_promised(promised_);
  nack.set_commit(log_.Committed());
  Send(std::move(nack));
}

void Paxos::SendAccepted(NodeId to, Ballot ballot, LogIndex index, bool reject) {
  pb::Message resp;
  resp.set_type(pb::MSG_ACCEPTED);
  resp.set_to(to);
  resp.set_term(ballot);
  resp.set_index(index);
  if (reject) {
    resp.set_reject(true);
    resp.set_reject_hint_index(AcceptedThrough());
  }
  Send(std::move(resp));
}

// Phase 1b. The promise covers every slot from the proposer's first unchosen slot on,
// and reports every value accepted there (with the ballot it was accepted in), chosen
// or not: the proposer must re-propose whichever may have been chosen.
void Paxos::HandlePrepare(const pb::Message& m) {
  const Ballot b = m.term();
  const bool repeat = b == promised_ && ProposerOf(b) == m.from() && role_ == Role::kFollower;
  if (!repeat) {
    if (b <= promised_) {
      SendNack(m);
      return;
    }
    // Stable leader: while a live leader is heard, a prepare cannot come from a
    // legitimate election (only a transfer the leader asked for bypasses this), and
    // granting it would depose a working leader.
    if (!m.transfer() && HeardFromLeaderRecently()) {
      SendNack(m);
      return;
    }
    // A proposer whose first unchosen slot we compacted away cannot learn the chosen
    // values there from us; it must catch up from a leader first.
    if (m.index() <= log_.SnapshotIndex()) {
      SendNack(m);
      return;
    }
    RaisePromise(b);
    leader_ = kNoNode;
    election_elapsed_ = 0;  // give the proposer time to finish phase 1
  } else if (m.index() <= log_.SnapshotIndex()) {
    SendNack(m);
    return;
  }
  pb::Message resp;
  resp.set_type(pb::MSG_PROMISE);
  resp.set_to(m.from());
  resp.set_term(b);
  resp.set_index(m.index());
  resp.set_commit(log_.Committed());
  for (LogIndex i = std::max(m.index(), log_.FirstIndex()); i <= log_.LastIndex(); ++i) {
    *resp.add_entries() = log_.At(i);
  }
  Send(std::move(resp));
}

// Pre-prepare: would we promise? The same tests as for a prepare, and no change at all.
void Paxos::HandlePrePrepare(const pb::Message& m) {
  const bool grant = m.term() > promised_ && (m.transfer() || !HeardFromLeaderRecently()) &&
                     m.index() > log_.SnapshotIndex();
  pb::Message resp;
  resp.set_type(pb::MSG_PRE_PROMISE);
  resp.set_to(m.from());
  resp.set_term(m.term());
  resp.set_reject(!grant);
  resp.set_promised(promised_);
  Send(std::move(resp));
}

// The ballot rules for a message from a leader (accept, heartbeat, snapshot): below our
// promise it is refused, with a NACK that deposes the stale leader; at or above it, its
// sender leads (accepting in a ballot is promising it).
bool Paxos::FollowLeaderMessage(const pb::Message& m) {
  const Ballot b = m.term();
  if (b < promised_) {
    SendNack(m);
    return false;
  }
  if (b > promised_) RaisePromise(b);
  if (role_ == Role::kPreCandidate) BecomeFollower(m.from());  // a live leader after all
  if (role_ != Role::kFollower || ProposerOf(b) != m.from()) return false;
  leader_ = m.from();
  election_elapsed_ = 0;
  return true;
}

// Phase 2b, for a run of slots.
void Paxos::HandleAccept(const pb::Message& m) {
  if (!FollowLeaderMessage(m)) return;
  const Ballot b = m.term();
  if (Joining()) {
    // A member that joined with no configuration learns it from a snapshot first (the
    // log holds only the changes since the cluster began); index 0 asks for one.
    SendAccepted(m.from(), b, 0, /*reject=*/true);
    return;
  }
  if (m.index() > AcceptedThrough()) {
    // We have not accepted the slots before these in this ballot (an accept was lost or
    // overtaken): refuse, and say from where the leader must resend.
    SendAccepted(m.from(), b, m.index(), /*reject=*/true);
    return;
  }
  for (const pb::Entry& e : m.entries()) {
    if (e.index() <= log_.Committed()) continue;  // chosen: we hold that value already
    const pb::Entry* have = log_.Find(e.index());
    if (have != nullptr && have->ballot() == b) continue;  // a duplicate
    pb::Entry accepted = e;
    accepted.set_ballot(b);
    TrackConfEntry(accepted);
    log_.Write(std::move(accepted));
  }
  ExtendAcceptedThrough();
  LearnChosen(m.commit());
  SendAccepted(m.from(), b, AcceptedThrough(), /*reject=*/false);
}

void Paxos::HandleHeartbeat(const pb::Message& m) {
  if (!FollowLeaderMessage(m)) return;
  LearnChosen(m.commit());
  pb::Message resp;
  resp.set_type(pb::MSG_HEARTBEAT_RESPONSE);
  resp.set_to(m.from());
  resp.set_term(m.term());
  resp.set_index(AcceptedThrough());
  resp.set_context(m.context());
  resp.set_lease_stamp(m.lease_stamp());
  Send(std::move(resp));
}

// A snapshot from the leader, in chunks. Installing it marks every slot it covers as
// chosen; unlike Raft, the accepted values after it are kept (an acceptor never drops
// an accepted value that may be part of a chosen quorum) and persisted again after it.
void Paxos::HandleSnapshot(const pb::Message& m) {
  if (!FollowLeaderMessage(m)) return;
  const Ballot b = m.term();
  const pb::SnapshotMetadata& meta = m.snapshot_metadata();
  const bool joining = Joining();
  if (meta.index() <= log_.Committed() && !joining) {
    SendAccepted(m.from(), b, AcceptedThrough(), /*reject=*/false);  // already past it
    return;
  }
  SnapshotAssembler::Outcome got = incoming_snapshot_.Take(m);
  if (!got.snapshot) {
    if (got.reply) Send(std::move(*got.reply));
    return;
  }
  Snapshot snap = std::move(*got.snapshot);
  if (meta.index() > log_.SnapshotIndex()) log_.Restore(meta);
  RestoreSnapshotConf(meta);
  latest_snapshot_ = snap;  // shares the data
  latest_snapshot_sent_ = false;
  snapshot_to_install_ = std::move(snap);
  ExtendAcceptedThrough();
  SendAccepted(m.from(), b, AcceptedThrough(), /*reject=*/false);
}

}  // namespace synod::consensus::paxos
