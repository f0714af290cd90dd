// Multi-Paxos scenarios, named after the sentences of "Paxos Made Simple" (PMS) and
// "Paxos Made Live" (PML) they check, driven through the engine interface by the
// harness in paxos_test_harness.h (which also checks the persistence contract).
#include <set>

#include "consensus/paxos/paxos_test_harness.h"

namespace synod::consensus::paxos {
namespace {

using test::Cluster;
using test::Is;

pb::Message Msg(pb::MessageType type, NodeId from, NodeId to, Ballot ballot) {
  pb::Message m;
  m.set_type(type);
  m.set_from(from);
  m.set_to(to);
  m.set_term(ballot);
  return m;
}

pb::Entry Value(LogIndex slot, Ballot proposer, Ballot accepted_in, std::string data) {
  pb::Entry e;
  e.set_index(slot);
  e.set_term(proposer);
  e.set_ballot(accepted_in);
  e.set_type(pb::ENTRY_NORMAL);
  e.set_data(std::move(data));
  return e;
}

// The messages of `type` that `id` sends in its next Ready (which is processed).
std::vector<pb::Message> Next(Cluster& c, NodeId id, pb::MessageType type) {
  c.ClearSent();
  c.Process(id);
  c.InFlight().clear();
  return c.Sent(type, id);
}

std::vector<std::string> AppliedData(const test::Node& n) {
  std::vector<std::string> out;
  std::string cur;
  for (char ch : n.state) {
    if (ch == ';') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += ch;
    }
  }
  return out;
}

void NoStableLeader(Config& c) { c.stable_leader = false; }
void NoPrePrepare(Config& c) { c.pre_prepare = false; }

// ---------------------------------------------------------------------------------
// Ballots and promises (PMS §2.2, phase 1).

TEST(Paxos, BallotsAreTotallyOrderedAndOwnedByOneProposer) {
  EXPECT_LT(MakeBallot(1, 9), MakeBallot(2, 1));
  EXPECT_LT(MakeBallot(2, 1), MakeBallot(2, 2));
  EXPECT_EQ(RoundOf(MakeBallot(7, 3)), 7u);
  EXPECT_EQ(ProposerOf(MakeBallot(7, 3)), 3u);
}

// PMS: "a proposer chooses a new proposal number n and sends a request to each member
// of some set of acceptors" — and its own promise is durable before the requests leave.
TEST(Paxos, AProposerThatHearsNoLeaderPreparesEverySlotFromItsFirstUnchosenOne) {
  Cluster c(3, NoPrePrepare);
  const int timeout = PaxosTestPeer::RandomizedElectionTicks(c.raft(1));
  c.Tick(1, timeout - 1);
  EXPECT_EQ(c.RoleOf(1), Role::kFollower);
  c.Tick(1);
  EXPECT_EQ(c.RoleOf(1), Role::kCandidate);
  auto prepares = Next(c, 1, pb::MSG_PREPARE);
  ASSERT_EQ(prepares.size(), 2u);
  const Ballot b = PaxosTestPeer::BallotOf(c.raft(1));
  EXPECT_EQ(ProposerOf(b), 1u);
  EXPECT_EQ(prepares[0].term(), b);
  EXPECT_EQ(prepares[0].index(), 1u);
  EXPECT_EQ(c.node(1).hard_state.term(), b) << "the proposer's own promise is durable first";
}

// PMS P1a: "An acceptor can accept a proposal numbered n iff it has not responded to a
// prepare request having a number greater than n."
TEST(Paxos, AnAcceptorNeverAcceptsBelowItsPromise) {
  Cluster c(3);
  c.ElectLeader(1);
  const Ballot low = PaxosTestPeer::BallotOf(c.raft(1));
  const Ballot high = MakeBallot(RoundOf(low) + 5, 2);
  c.Isolate(3);
  c.raft(3).Step(Msg(pb::MSG_PREPARE, 2, 3, high));
  pb::Message prepare = Msg(pb::MSG_PREPARE, 2, 3, high);
  prepare.set_index(1);
  prepare.set_transfer(true);  // past the stable-leader rule
  ASSERT_TRUE(c.raft(3).Step(prepare).ok());
  auto promises = Next(c, 3, pb::MSG_PROMISE);
  ASSERT_EQ(promises.size(), 1u);
  EXPECT_EQ(c.node(3).hard_state.term(), high);

  const LogIndex last = c.LastIndexOf(3);
  pb::Message accept = Msg(pb::MSG_ACCEPT, 1, 3, low);
  accept.set_index(last);
  *accept.add_entries() = Value(last + 1, low, low, "late");
  ASSERT_TRUE(c.raft(3).Step(accept).ok());
  auto nacks = Next(c, 3, pb::MSG_NACK);
  ASSERT_EQ(nacks.size(), 1u);
  EXPECT_EQ(nacks[0].promised(), high);
  EXPECT_EQ(c.LastIndexOf(3), last) << "the value was accepted below the promise";
}

// PMS: the promise reports "the proposal with the highest number less than n that it
// has accepted, if any" — for Multi-Paxos, for every slot from the proposer's first
// unchosen one.
TEST(Paxos, APromiseReportsEveryAcceptedValueFromTheFirstUnchosenSlot) {
  Cluster c(3);
  c.ElectLeader(1);
  ASSERT_TRUE(c.Propose(1, "a").ok());
  c.Stabilize();
  c.Isolate(1);
  ASSERT_TRUE(c.Propose(1, "b").ok());
  c.Stabilize();  // "b" accepted by the leader alone
  pb::Message prepare = Msg(pb::MSG_PREPARE, 2, 1, MakeBallot(50, 2));
  prepare.set_index(1);
  prepare.set_transfer(true);
  ASSERT_TRUE(c.raft(1).Step(prepare).ok());
  auto promises = Next(c, 1, pb::MSG_PROMISE);
  ASSERT_EQ(promises.size(), 1u);
  const pb::Message& p = promises[0];
  ASSERT_EQ(p.entries_size(), static_cast<int>(c.LastIndexOf(1)));
  EXPECT_EQ(p.entries(p.entries_size() - 1).data(), "b");
  EXPECT_EQ(p.entries(p.entries_size() - 1).ballot(), PaxosTestPeer::BallotOf(c.raft(1)))
      << "each value comes with the ballot it was accepted in";
  EXPECT_GE(p.commit(), 1u);
}

// PML §5.1: a restarted acceptor must remember its promise; otherwise it could accept a
// value that a later ballot already ruled out.
TEST(Paxos, ARestartedAcceptorKeepsItsPromise) {
  Cluster c(3);
  c.ElectLeader(1);
  const Ballot low = PaxosTestPeer::BallotOf(c.raft(1));
  const Ballot high = MakeBallot(RoundOf(low) + 1, 2);
  pb::Message prepare = Msg(pb::MSG_PREPARE, 2, 3, high);
  prepare.set_index(1);
  prepare.set_transfer(true);
  ASSERT_TRUE(c.raft(3).Step(prepare).ok());
  c.Process(3);
  c.InFlight().clear();
  c.Crash(3);
  c.Restart(3);
  EXPECT_EQ(PaxosTestPeer::Promised(c.raft(3)), high);
  pb::Message accept = Msg(pb::MSG_ACCEPT, 1, 3, low);
  accept.set_index(c.LastIndexOf(3));
  *accept.add_entries() = Value(c.LastIndexOf(3) + 1, low, low, "x");
  ASSERT_TRUE(c.raft(3).Step(accept).ok());
  EXPECT_EQ(Next(c, 3, pb::MSG_NACK).size(), 1u);
}

// ---------------------------------------------------------------------------------
// Recovery (PMS §3: "the new leader ... executes phase 1 for infinitely many instances").

// PMS P2c: the new leader proposes, at each slot, the value accepted in the highest
// ballot by the acceptors that promised; a value chosen there is among them.
TEST(Paxos, ANewLeaderRecoversEveryPossiblyChosenValue) {
  Cluster c(3, NoStableLeader);  // member 2 does not tick: it would wait for member 1
  c.ElectLeader(1);
  c.Stabilize();
  // "x" reaches member 2 only; member 1 crashes before anyone learns it is chosen.
  c.DropIf(Is(pb::MSG_ACCEPT, 1, 3));
  c.DropIf(Is(pb::MSG_HEARTBEAT, 1));
  auto x = c.Propose(1, "x");
  ASSERT_TRUE(x.ok());
  c.Process(1);
  c.Deliver(Is(pb::MSG_ACCEPT, 1, 2));
  c.Process(2);
  c.InFlight().clear();  // member 2's acknowledgement never arrives
  c.Crash(1);
  c.Heal();
  // Member 3 had not seen "x"; it leads with member 2's promise and re-proposes "x".
  c.ElectLeader(3);
  c.Stabilize();
  const pb::Entry* e = PaxosTestPeer::EntryAt(c.raft(3), x.value().index);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->data(), "x");
  // The proposal keeps its identity: the client's ProposalId still names it.
  EXPECT_EQ(e->term(), x.value().term);
  EXPECT_EQ(e->ballot(), PaxosTestPeer::BallotOf(c.raft(3)));
  EXPECT_GE(c.CommitOf(3), x.value().index);
  EXPECT_EQ(AppliedData(c.node(3)).back(), "x");
}

// PMS §3: "the leader ... fills in the gaps ... by proposing a special no-op command".
TEST(Paxos, GapsAreFilledWithNoOps) {
  Cluster c(3, NoPrePrepare);
  c.Isolate(1);
  const int timeout = PaxosTestPeer::RandomizedElectionTicks(c.raft(1));
  c.Tick(1, timeout);
  c.Process(1);
  c.InFlight().clear();
  const Ballot b = PaxosTestPeer::BallotOf(c.raft(1));
  // Member 2 reports values at slots 1 and 3 (accepted in an old ballot) and none at 2.
  const Ballot old = MakeBallot(0, 3);
  pb::Message promise = Msg(pb::MSG_PROMISE, 2, 1, b);
  promise.set_index(1);
  *promise.add_entries() = Value(1, old, old, "one");
  *promise.add_entries() = Value(3, old, old, "three");
  ASSERT_TRUE(c.raft(1).Step(promise).ok());
  ASSERT_EQ(c.RoleOf(1), Role::kLeader);
  const pb::Entry* gap = PaxosTestPeer::EntryAt(c.raft(1), 2);
  ASSERT_NE(gap, nullptr);
  EXPECT_TRUE(gap->data().empty());
  EXPECT_EQ(gap->term(), b) << "a no-op is a new proposal of the new leader";
  EXPECT_EQ(PaxosTestPeer::EntryAt(c.raft(1), 1)->data(), "one");
  EXPECT_EQ(PaxosTestPeer::EntryAt(c.raft(1), 3)->data(), "three");
  EXPECT_EQ(PaxosTestPeer::EntryAt(c.raft(1), 3)->term(), old);
  EXPECT_EQ(PaxosTestPeer::RecoveryLast(c.raft(1)), 3u);
}

// PMS P2c, with two conflicting reports: the higher ballot wins.
TEST(Paxos, TheValueAcceptedInTheHighestBallotIsRecovered) {
  Cluster c(5, NoPrePrepare);
  c.Isolate(1);
  c.Tick(1, PaxosTestPeer::RandomizedElectionTicks(c.raft(1)));
  c.Process(1);
  c.InFlight().clear();
  const Ballot b = PaxosTestPeer::BallotOf(c.raft(1));
  const Ballot older = MakeBallot(0, 2), newer = MakeBallot(0, 4);
  pb::Message p2 = Msg(pb::MSG_PROMISE, 2, 1, b);
  p2.set_index(1);
  *p2.add_entries() = Value(1, older, older, "old");
  pb::Message p4 = Msg(pb::MSG_PROMISE, 4, 1, b);
  p4.set_index(1);
  *p4.add_entries() = Value(1, newer, newer, "new");
  ASSERT_TRUE(c.raft(1).Step(p2).ok());
  ASSERT_TRUE(c.raft(1).Step(p4).ok());
  ASSERT_EQ(c.RoleOf(1), Role::kLeader);
  EXPECT_EQ(PaxosTestPeer::EntryAt(c.raft(1), 1)->data(), "new");
}

// ---------------------------------------------------------------------------------
// Leadership: duelling proposers and a stable leader (PMS §3, PML §5.2).

// PMS §3: "if two proposers keep issuing a sequence of proposals with increasing
// numbers, none of which are ever chosen" — a refused proposer backs off for a random
// timeout, so the duel ends.
TEST(Paxos, DuellingProposersBackOff) {
  Cluster c(3, NoStableLeader);
  // Members 1 and 2 campaign at the same moment, over and over, until one leads.
  int rounds = 0;
  for (; rounds < 50 && c.Leader() == kNoNode; ++rounds) {
    for (NodeId id : {1, 2}) {
      c.Tick(id, PaxosTestPeer::RandomizedElectionTicks(c.raft(id)) -
                     PaxosTestPeer::ElectionElapsed(c.raft(id)));
    }
    c.Stabilize();
  }
  ASSERT_NE(c.Leader(), kNoNode);
  EXPECT_LT(rounds, 10);
  // The loser followed, with a fresh randomized timeout.
  const NodeId loser = c.Leader() == 1 ? 2 : 1;
  EXPECT_EQ(c.RoleOf(loser), Role::kFollower);
  EXPECT_EQ(c.GetStatus(loser).leader, c.Leader());
}

TEST(Paxos, ARefusedProposerWaitsARandomTimeoutBeforeTryingAgain) {
  Cluster c(3);
  c.ElectLeader(1);
  c.Isolate(1);
  c.Tick(2, PaxosTestPeer::RandomizedElectionTicks(c.raft(2)));  // 2 campaigns
  c.Tick(3, PaxosTestPeer::RandomizedElectionTicks(c.raft(3)));  // and 3 too, at once
  c.Stabilize();
  // One of them leads; no proposer is left campaigning.
  const NodeId leader = c.Leader() == 1 ? kNoNode : c.Leader();
  std::set<Role> roles{c.RoleOf(2), c.RoleOf(3)};
  if (leader == kNoNode) {
    EXPECT_EQ(roles, std::set<Role>{Role::kFollower});
  } else {
    EXPECT_TRUE(roles.count(Role::kLeader));
  }
}

// PML §5.2 (master leases), and Raft's check-quorum: a follower that hears from a live
// leader refuses prepares, so a member back from a partition does not depose it.
TEST(Paxos, AStableLeaderIsNotDeposedByAMemberReturningFromAPartition) {
  Cluster c(3);
  c.ElectLeader(1);
  c.Isolate(3);
  for (int i = 0; i < 5; ++i) {
    c.Tick(3, 2 * 10);
    c.Stabilize();
  }
  // Pre-prepare: cut off, it never raised its promise, so it has nothing to depose with.
  EXPECT_EQ(c.RoleOf(3), Role::kPreCandidate);
  EXPECT_EQ(PaxosTestPeer::Promised(c.raft(3)), PaxosTestPeer::BallotOf(c.raft(1)));
  c.Heal();
  c.Tick(3, 2 * 10);  // its next prepare reaches members that hear from member 1
  for (int i = 0; i < 3; ++i) {
    c.Stabilize();
    c.Tick(1);
  }
  EXPECT_EQ(c.RoleOf(1), Role::kLeader);
  EXPECT_EQ(c.Leader(), 1u);
}

// Without pre-prepare, the stable-leader rule still keeps a live leader: the others
// refuse the prepares of a member that comes back with a higher ballot (only its own
// promise stays raised, until a new leader's ballot passes it).
TEST(Paxos, AcceptorsThatHearALiveLeaderRefusePrepares) {
  Cluster c(3, NoPrePrepare);
  c.ElectLeader(1);
  c.Stabilize();
  c.Tick(3, 2 * 10);
  ASSERT_EQ(c.RoleOf(3), Role::kCandidate);
  auto prepares = Next(c, 3, pb::MSG_PREPARE);
  ASSERT_EQ(prepares.size(), 2u);
  for (const auto& p : prepares) ASSERT_TRUE(c.raft(p.to()).Step(p).ok());
  EXPECT_EQ(Next(c, 2, pb::MSG_NACK).size(), 1u);
  EXPECT_EQ(Next(c, 1, pb::MSG_NACK).size(), 1u);
  EXPECT_EQ(c.RoleOf(1), Role::kLeader);
}

TEST(Paxos, ALeaderThatLosesItsQuorumStepsDown) {
  Cluster c(3);
  c.ElectLeader(1);
  c.Isolate(1);
  c.Tick(1, 2 * 10);
  EXPECT_EQ(c.RoleOf(1), Role::kFollower);
}

TEST(Paxos, ProposeOnAFollowerNamesTheLeader) {
  Cluster c(3);
  c.ElectLeader(2);
  auto r = c.Propose(1, "x");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotLeader);
  EXPECT_NE(r.status().message().find("leader is 2"), std::string::npos);
}

// ---------------------------------------------------------------------------------
// Phase 2: pipelining, batching, learning (PMS §3, PML §5).

TEST(Paxos, ProposalsBetweenReadysLeaveInOneAcceptPerAcceptor) {
  Cluster c(3);
  c.ElectLeader(1);
  c.Stabilize();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(c.Propose(1, "v" + std::to_string(i)).ok());
  auto accepts = Next(c, 1, pb::MSG_ACCEPT);
  ASSERT_EQ(accepts.size(), 2u);
  EXPECT_EQ(accepts[0].entries_size(), 5);
  EXPECT_EQ(accepts[1].entries_size(), 5);
}

TEST(Paxos, AcceptsAreSplitByMsgBytesMax) {
  Cluster c(3, [](Config& cfg) { cfg.msg_bytes_max = 4; });
  c.ElectLeader(1);
  c.Stabilize();
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(c.Propose(1, "abcd").ok());
  c.Stabilize();
  for (const auto& m : c.Sent(pb::MSG_ACCEPT, 1)) EXPECT_LE(m.entries_size(), 1);
  EXPECT_EQ(c.CommitOf(2), c.LastIndexOf(1));
}

// Alpha bounds the slots in flight.
TEST(Paxos, TheLeaderNeverHasMoreThanAlphaSlotsInFlight) {
  Cluster c(3, [](Config& cfg) { cfg.window_slots_max = 3; });
  c.ElectLeader(1);
  c.Stabilize();
  c.Isolate(1);
  int accepted = 0;
  for (int i = 0; i < 10; ++i) accepted += c.Propose(1, "v").ok() ? 1 : 0;
  EXPECT_EQ(accepted, 3);
  auto r = c.Propose(1, "v");
  EXPECT_EQ(r.status().code(), Code::kProposalDropped);
  c.Heal();
  c.Stabilize();
  EXPECT_TRUE(c.Propose(1, "v").ok());
}

// PMS §2.3: "a learner ... learns that a value has been chosen" — here from the leader,
// which counts acceptances and tells the chosen index.
TEST(Paxos, EveryMemberLearnsTheChosenValuesInOrder) {
  Cluster c(5);
  c.ElectLeader(1);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(c.Propose(1, "v" + std::to_string(i)).ok());
    if (i % 3 == 0) c.Stabilize();
  }
  c.Stabilize();
  c.TickAll(2);
  for (NodeId id = 1; id <= 5; ++id) {
    EXPECT_EQ(c.CommitOf(id), c.LastIndexOf(1)) << id;
    auto data = AppliedData(c.node(id));
    ASSERT_EQ(data.size(), 20u) << id;
    EXPECT_EQ(data.front(), "v0");
    EXPECT_EQ(data.back(), "v19");
  }
}

// A value is chosen by a majority of acceptances in one ballot: the leader alone is not
// enough, and a minority cannot make it chosen.
TEST(Paxos, AValueIsChosenOnlyByAMajorityOfAcceptors) {
  Cluster c(5);
  c.ElectLeader(1);
  c.Stabilize();
  const LogIndex before = c.CommitOf(1);
  c.Isolate(3);
  c.Isolate(4);
  c.Isolate(5);
  ASSERT_TRUE(c.Propose(1, "x").ok());
  c.Stabilize();
  EXPECT_EQ(c.CommitOf(1), before);
  c.Heal();
  c.Cut(1, 4);
  c.Cut(1, 5);
  c.TickAll(1);
  EXPECT_EQ(c.CommitOf(1), before + 1);
}

// A follower's chosen index never covers a value it holds from an older ballot.
TEST(Paxos, AFollowerOnlyLearnsSlotsItAcceptedInTheLeadersBallot) {
  Cluster c(3);
  c.ElectLeader(1);
  c.Stabilize();
  c.Isolate(3);
  // Member 3 holds a stale value at the next slot (as if from a deposed leader).
  const LogIndex slot = c.LastIndexOf(3) + 1;
  const Ballot stale = MakeBallot(0, 2);
  c.node(3).entries.push_back(Value(slot, stale, stale, "stale"));
  c.Restart(3);
  ASSERT_TRUE(c.Propose(1, "real").ok());
  c.Stabilize();
  c.Heal();
  pb::Message hb = Msg(pb::MSG_HEARTBEAT, 1, 3, PaxosTestPeer::BallotOf(c.raft(1)));
  hb.set_commit(slot);
  ASSERT_TRUE(c.raft(3).Step(hb).ok());
  EXPECT_LT(c.CommitOf(3), slot) << "learned a stale value as chosen";
  c.TickAll(3);
  EXPECT_EQ(c.CommitOf(3), slot);
  EXPECT_EQ(PaxosTestPeer::EntryAt(c.raft(3), slot)->data(), "real");
}

// PML §5.3 (catch-up): a member that missed chosen values gets them from the leader.
TEST(Paxos, ALaggingAcceptorCatchesUp) {
  Cluster c(3);
  c.ElectLeader(1);
  c.Isolate(3);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(c.Propose(1, "v" + std::to_string(i)).ok());
    c.Stabilize();
  }
  c.Heal();
  c.TickAll(3);
  EXPECT_EQ(c.CommitOf(3), c.CommitOf(1));
  EXPECT_EQ(AppliedData(c.node(3)).size(), 10u);
}

// PML §5.5 (snapshots): a member behind the leader's compacted log gets a snapshot,
// in chunks, and keeps the values it accepted after it.
TEST(Paxos, ALaggingAcceptorCatchesUpBySnapshot) {
  int receivers = 0;  // the chunks go where the caller says (the node runtime: a file)
  Cluster c(3, [&](Config& cfg) {
    cfg.snapshot_chunk_bytes = 8;
    cfg.snapshot_receiver = [&] {
      ++receivers;
      return std::make_unique<InMemorySnapshotReceiver>();
    };
  });
  c.ElectLeader(1);
  c.Isolate(3);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(c.Propose(1, "v" + std::to_string(i)).ok());
    c.Stabilize();
  }
  ASSERT_TRUE(c.Compact(1).ok());
  ASSERT_TRUE(c.Propose(1, "after").ok());
  c.Stabilize();
  c.Heal();
  c.TickAll(3);
  EXPECT_GT(c.Sent(pb::MSG_SNAPSHOT, 1, 3).size(), 1u) << "sent in chunks";
  EXPECT_EQ(c.node(3).snapshot.metadata.index(), c.node(1).snapshot.metadata.index());
  EXPECT_EQ(receivers, 1);
  EXPECT_EQ(c.CommitOf(3), c.CommitOf(1));
  EXPECT_EQ(AppliedData(c.node(3)).back(), "after");
}

// As the Raft engine (and etcd), the leader keeps its last chosen values before its
// snapshot (Config::catchup_entries): an acceptor a little behind when the leader
// compacted catches up from them, without the whole snapshot; one further behind still
// gets the snapshot.
void KeepTen(Config& cfg) { cfg.catchup_entries = 10; }

// Leader 1 has `before` values chosen everywhere, then `missed` more while member 3 is cut
// off. Returns member 3's chosen index.
LogIndex ChooseWhileMemberThreeMissesSome(Cluster& c, int before, int missed) {
  int i = 0;
  for (; i < before; ++i) EXPECT_TRUE(c.Propose(1, "v" + std::to_string(i)).ok());
  c.Stabilize();
  c.Isolate(3);
  const LogIndex behind = c.CommitOf(3);
  for (; i < before + missed; ++i) EXPECT_TRUE(c.Propose(1, "v" + std::to_string(i)).ok());
  c.Stabilize();
  return behind;
}

TEST(Paxos, AnAcceptorALittleBehindCatchesUpFromTheValuesKeptBeforeTheSnapshot) {
  Cluster c(3, KeepTen);
  c.ElectLeader(1);
  const LogIndex behind = ChooseWhileMemberThreeMissesSome(c, 15, 5);
  const LogIndex chosen = c.CommitOf(1);
  ASSERT_GE(chosen, behind + 5);
  ASSERT_TRUE(c.Compact(1).ok());
  EXPECT_EQ(c.node(1).snapshot.metadata.index(), chosen);
  EXPECT_EQ(c.GetStatus(1).first_index, chosen - 9) << "ten values kept before the snapshot";
  ASSERT_LT(chosen - 10, behind + 1) << "member 3's next slot is among them";

  c.Heal();
  c.ClearSent();
  c.TickAll(3);
  EXPECT_TRUE(c.Sent(pb::MSG_SNAPSHOT, 1, 3).empty()) << "the log had what member 3 needed";
  EXPECT_EQ(c.CommitOf(3), chosen);
  EXPECT_EQ(AppliedData(c.node(3)), AppliedData(c.node(1)));
  EXPECT_EQ(c.node(3).snapshot.metadata.index(), 0u);

  // Compacting again at the snapshot held only replaces its data: the kept values stay.
  pb::SnapshotMetadata at;
  at.set_index(chosen);
  ASSERT_TRUE(c.raft(1).Compact(Snapshot::InMemory(at, c.node(1).state)).ok());
  EXPECT_EQ(c.GetStatus(1).first_index, chosen - 9);
}

TEST(Paxos, AnAcceptorFurtherBehindThanTheKeptValuesGetsTheSnapshot) {
  Cluster c(3, KeepTen);
  c.ElectLeader(1);
  ChooseWhileMemberThreeMissesSome(c, 1, 15);
  ASSERT_TRUE(c.Compact(1).ok());
  ASSERT_GT(c.GetStatus(1).first_index, c.CommitOf(3) + 1);

  c.Heal();
  c.ClearSent();
  c.TickAll(3);
  EXPECT_FALSE(c.Sent(pb::MSG_SNAPSHOT, 1, 3).empty());
  EXPECT_EQ(c.node(3).snapshot.metadata.index(), c.node(1).snapshot.metadata.index());
  EXPECT_EQ(AppliedData(c.node(3)), AppliedData(c.node(1)));
}

// A prepare whose first unchosen slot is among the kept values is answered from them
// (they are chosen: the new leader re-proposes exactly those); below them, and without
// kept values, the acceptor cannot report what was accepted there, and refuses.
TEST(Paxos, APrepareFromAMemberALittleBehindIsAnsweredFromTheKeptValues) {
  for (const uint64_t keep : {uint64_t{10}, uint64_t{0}}) {
    Cluster c(3, [&](Config& cfg) { cfg.catchup_entries = keep; });
    c.ElectLeader(1);
    const LogIndex behind = ChooseWhileMemberThreeMissesSome(c, 10, 3);
    ASSERT_TRUE(c.Compact(2).ok());
    ASSERT_GT(c.node(2).snapshot.metadata.index(), behind + 1);
    c.Heal();
    c.ClearSent();
    const Ballot high = MakeBallot(RoundOf(PaxosTestPeer::BallotOf(c.raft(1))) + 1, 3);
    pb::Message prepare = Msg(pb::MSG_PREPARE, 3, 2, high);
    prepare.set_index(behind + 1);
    prepare.set_transfer(true);
    ASSERT_TRUE(c.raft(2).Step(prepare).ok());
    c.Process(2);
    auto promises = c.Sent(pb::MSG_PROMISE, 2, 3);
    if (keep == 0) {
      EXPECT_TRUE(promises.empty());
      EXPECT_EQ(c.Sent(pb::MSG_NACK, 2, 3).size(), 1u);
      continue;
    }
    ASSERT_EQ(promises.size(), 1u);
    ASSERT_GT(promises[0].entries_size(), 0);
    EXPECT_EQ(promises[0].entries(0).index(), behind + 1);
    EXPECT_EQ(promises[0].entries(promises[0].entries_size() - 1).data(), "v12");
  }
}

// A snapshot whose state is not made yet (DeferredSnapshotData: the node runtime makes it
// only when a member needs it) is not sent until Compact gives the same snapshot its state.
TEST(Paxos, ASnapshotWhoseStateCannotBeReadIsSentOnceCompactGivesItsState) {
  Cluster c(3, [](Config& cfg) { cfg.snapshot_chunk_bytes = 8; });
  c.ElectLeader(1);
  c.Isolate(3);
  const LogIndex behind = c.CommitOf(3);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(c.Propose(1, "v" + std::to_string(i)).ok());
    c.Stabilize();
  }
  pb::SnapshotMetadata at;
  at.set_index(c.node(1).applied);
  int reads = 0;  // of the data not made yet
  ASSERT_TRUE(c.raft(1)
                  .Compact(Snapshot{at, std::make_shared<DeferredSnapshotData>([&] { ++reads; })})
                  .ok());
  c.Heal();
  c.ClearSent();
  c.TickAll(3);
  EXPECT_TRUE(c.Sent(pb::MSG_SNAPSHOT, 1, 3).empty()) << "nothing of an unreadable state is sent";
  EXPECT_GE(reads, 2) << "asked again at the heartbeats";
  EXPECT_EQ(c.CommitOf(3), behind);

  // The same snapshot with its state: only the data changes, and it is sent.
  auto replaced = c.raft(1).Compact(Snapshot::InMemory(at, c.node(1).state));
  ASSERT_TRUE(replaced.ok()) << replaced.status().message();
  EXPECT_EQ(replaced.value().index(), at.index());
  c.TickAll(3);
  EXPECT_GT(c.Sent(pb::MSG_SNAPSHOT, 1, 3).size(), 1u);
  EXPECT_EQ(c.CommitOf(3), c.CommitOf(1));
  EXPECT_EQ(c.node(3).state, c.node(1).state);

  // Once some of it was sent, its bytes are fixed: a member may be assembling them.
  auto again = c.raft(1).Compact(Snapshot::InMemory(at, "other bytes"));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), Code::kInvalidArgument);
}

// Unlike a Raft follower, an acceptor that installs a snapshot keeps the values it
// accepted after it: one of them may belong to a quorum that chose it.
TEST(Paxos, AnInstalledSnapshotKeepsTheValuesAcceptedAfterIt) {
  Cluster c(3);
  const Ballot old = MakeBallot(1, 2);
  std::vector<pb::Entry> log;
  for (LogIndex i = 1; i <= 12; ++i) log.push_back(Value(i, old, old, "old" + std::to_string(i)));
  c.StartWithLog(3, {1, 2, 3}, log, old);
  c.Isolate(3);
  c.ElectLeader(1);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(c.Propose(1, "v" + std::to_string(i)).ok());
  c.Stabilize();
  ASSERT_TRUE(c.Compact(1).ok());
  const LogIndex snap = c.node(1).snapshot.metadata.index();
  ASSERT_LT(snap, 12u);
  c.Heal();
  c.DropIf(Is(pb::MSG_ACCEPT, 1, 3));  // only the snapshot reaches member 3
  c.TickAll(3);
  ASSERT_EQ(c.node(3).snapshot.metadata.index(), snap);
  ASSERT_EQ(c.node(3).DurableLastIndex(), 12u);
  for (LogIndex i = snap + 1; i <= 12; ++i) {
    EXPECT_EQ(c.node(3).DurableEntry(i)->data(), "old" + std::to_string(i));
    EXPECT_EQ(c.node(3).DurableEntry(i)->ballot(), old);
  }
  EXPECT_EQ(c.CommitOf(3), snap);
}

TEST(Paxos, OnlyDurableChosenValuesAreApplied) {
  Cluster c(3);
  c.ElectLeader(1);
  c.Stabilize();
  ASSERT_TRUE(c.Propose(1, "x").ok());
  // The leader's own acceptance counts only after Advance: before it, nothing chosen.
  Ready rd = c.TakeAndPersist(1);
  EXPECT_TRUE(rd.committed_entries.empty());
  c.DeliverAll();
  c.Process(2);
  c.Process(3);
  c.DeliverAll();
  const LogIndex commit_before_advance = c.CommitOf(1);
  c.Advance(1, rd);
  c.Stabilize();
  EXPECT_GT(c.CommitOf(1), 0u);
  EXPECT_GE(c.CommitOf(1), commit_before_advance);
  EXPECT_EQ(AppliedData(c.node(1)).back(), "x");
}

// ---------------------------------------------------------------------------------
// Reads.

TEST(Paxos, AReadIsConfirmedByAQuorumBeforeItIsServed) {
  Cluster c(3);
  c.ElectLeader(1);
  ASSERT_TRUE(c.Propose(1, "x").ok());
  c.Stabilize();
  c.Isolate(1);
  ASSERT_TRUE(c.raft(1).ReadIndex(7).ok());
  c.Stabilize();
  EXPECT_TRUE(c.node(1).read_states.empty()) << "served without a quorum round";
  c.Heal();
  c.Tick(1);
  c.Stabilize();
  ASSERT_EQ(c.node(1).read_states.size(), 1u);
  EXPECT_EQ(c.node(1).read_states[0].request_id, 7u);
  EXPECT_EQ(c.node(1).read_states[0].index, c.CommitOf(1));
}

// Reads that arrive together share one round: one heartbeat per acceptor, whose
// acknowledgement confirms them all.
TEST(Paxos, ReadsRegisteredBeforeOneReadyShareOneHeartbeatRound) {
  Cluster c(3);
  c.ElectLeader(1);
  ASSERT_TRUE(c.Propose(1, "x").ok());
  c.Stabilize();
  c.ClearSent();
  for (uint64_t id = 100; id < 110; ++id) ASSERT_TRUE(c.raft(1).ReadIndex(id).ok());
  c.Stabilize();
  EXPECT_EQ(c.Sent(pb::MSG_HEARTBEAT, 1).size(), 2u) << "one heartbeat per acceptor";
  EXPECT_EQ(c.node(1).read_states.size(), 10u);
}

TEST(Paxos, ANewLeaderServesReadsOnlyOnceRecoveryIsChosen) {
  Cluster c(3, NoStableLeader);
  c.ElectLeader(1);
  c.Stabilize();
  // "x" is chosen, but member 1 crashes before telling anyone.
  ASSERT_TRUE(c.Propose(1, "x").ok());
  c.Process(1);
  c.DeliverAll();
  c.Process(2);
  c.Process(3);
  c.DeliverAll();
  c.Crash(1);
  c.InFlight().clear();
  c.DropIf(Is(pb::MSG_ACCEPT));  // the recovered slots cannot be chosen again yet
  c.ElectLeader(2);
  ASSERT_GT(PaxosTestPeer::RecoveryLast(c.raft(2)), c.CommitOf(2));
  ASSERT_TRUE(c.raft(2).ReadIndex(9).ok());
  c.Stabilize();
  c.Tick(2);
  c.Stabilize();
  EXPECT_TRUE(c.node(2).read_states.empty()) << "a read before the chosen index is known";
  c.Heal();
  c.TickAll(2);
  ASSERT_EQ(c.node(2).read_states.size(), 1u);
  EXPECT_GE(c.node(2).read_states[0].index, PaxosTestPeer::RecoveryLast(c.raft(2)));
}

TEST(Paxos, AFollowerForwardsReadsToTheLeader) {
  Cluster c(3);
  c.ElectLeader(1);
  c.Stabilize();
  ASSERT_TRUE(c.raft(2).ReadIndex(11).ok());
  c.Stabilize();
  c.Tick(1);
  c.Stabilize();
  ASSERT_EQ(c.node(2).read_states.size(), 1u);
  EXPECT_EQ(c.node(2).read_states[0].request_id, 11u);
}

// ---------------------------------------------------------------------------------
// Membership (PMS §3, last paragraph: "the set of acceptors ... can be part of the
// state"; a configuration chosen at slot i governs the slots after i + alpha).

TEST(Paxos, AConfigurationTakesEffectAlphaSlotsAfterItIsChosen) {
  const uint64_t alpha = 3;
  Cluster c(3, [&](Config& cfg) { cfg.window_slots_max = alpha; });
  c.ElectLeader(1);
  c.Stabilize();
  auto id = c.ProposeConfChange(1, test::Change(pb::CONF_ADD_LEARNER, 4));
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  // One change at a time: the next waits until this one is chosen and in force.
  EXPECT_EQ(c.ProposeConfChange(1, test::Change(pb::CONF_REMOVE, 3)).status().code(),
            Code::kProposalDropped);
  c.Stabilize();
  const LogIndex at = id.value().index;
  EXPECT_EQ(PaxosTestPeer::ConfAt(c.raft(1), at + alpha).learners_size(), 0);
  EXPECT_EQ(PaxosTestPeer::ConfAt(c.raft(1), at + alpha + 1).learners_size(), 1);
  // Once chosen, the leader filled the window with no-ops, so the change is in force for
  // the next slot without waiting for client traffic.
  EXPECT_EQ(c.LastIndexOf(1), at + alpha);
  EXPECT_EQ(c.CommitOf(1), at + alpha);
  EXPECT_TRUE(c.ProposeConfChange(1, test::Change(pb::CONF_REMOVE, 3)).ok());
}

TEST(Paxos, ANewMemberJoinsAsALearnerAndIsPromotedToAVoter) {
  Cluster c(3, [](Config& cfg) { cfg.window_slots_max = 2; });
  c.ElectLeader(1);
  c.Stabilize();
  c.AddMember(4);
  ASSERT_TRUE(c.ProposeConfChange(1, test::Change(pb::CONF_ADD_LEARNER, 4)).ok());
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(c.Propose(1, "v" + std::to_string(i)).ok());
    c.Stabilize();
    c.TickAll(1);
  }
  EXPECT_EQ(c.CommitOf(4), c.CommitOf(1));
  auto promote = c.ProposeConfChange(1, test::Change(pb::CONF_ADD_VOTER, 4));
  ASSERT_TRUE(promote.ok()) << promote.status().ToString();
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(c.Propose(1, "w" + std::to_string(i)).ok());
    c.Stabilize();
  }
  const pb::ConfState now = PaxosTestPeer::ConfAt(c.raft(1), c.CommitOf(1) + 1);
  EXPECT_EQ(now.voters_size(), 4);
  // Four voters: two acceptances are no longer a quorum.
  c.Isolate(3);
  c.Isolate(4);
  const LogIndex before = c.CommitOf(1);
  ASSERT_TRUE(c.Propose(1, "x").ok());
  c.Stabilize();
  EXPECT_EQ(c.CommitOf(1), before);
}

TEST(Paxos, ARemovedLeaderStepsDownOnceItsRemovalIsInForce) {
  Cluster c(3, [](Config& cfg) { cfg.window_slots_max = 2; });
  c.ElectLeader(1);
  c.Stabilize();
  ASSERT_TRUE(c.ProposeConfChange(1, test::Change(pb::CONF_REMOVE, 1)).ok());
  c.Stabilize();
  EXPECT_EQ(c.RoleOf(1), Role::kFollower);
  // The others elect a leader among themselves and go on.
  c.TickAll(40);
  const NodeId leader = c.Leader();
  EXPECT_TRUE(leader == 2 || leader == 3);
  ASSERT_TRUE(c.Propose(leader, "after").ok());
  c.Stabilize();
  EXPECT_EQ(AppliedData(c.node(leader == 2 ? 3 : 2)).back(), "after");
}

// ---------------------------------------------------------------------------------
// Leadership transfer: the target runs phase 1 at once.

// A snapshot may be taken between a configuration change and the slot it takes effect
// at: its metadata carries the change, so every later slot's configuration is still known
// (at the member that took it, after its restart, and at a member that installs it). It
// must not wait for the change to be in force: here the slots up to there need an
// acceptance from the member that needs the snapshot.
TEST(Paxos, ASnapshotTakenBeforeAChangeIsInForceCarriesTheChange) {
  const uint64_t alpha = 3;
  Cluster c(3, [&](Config& cfg) { cfg.window_slots_max = alpha; });
  c.ElectLeader(1);
  ASSERT_TRUE(c.Propose(1, "a").ok());
  c.Stabilize();
  c.Isolate(3);
  ASSERT_TRUE(c.Propose(1, "b").ok());
  c.Stabilize();
  auto removal = c.ProposeConfChange(1, test::Change(pb::CONF_REMOVE, 2));
  ASSERT_TRUE(removal.ok()) << removal.status().ToString();
  const LogIndex at = removal.value().index;
  // Member 2 accepts the removal but none of the no-ops after it.
  c.DropIf([&](const pb::Message& m) {
    return m.type() == pb::MSG_ACCEPT && m.to() == 2 && m.index() >= at;
  });
  c.Stabilize();
  ASSERT_EQ(c.CommitOf(1), at);

  ASSERT_TRUE(c.Compact(1).ok());
  const pb::SnapshotMetadata meta = c.node(1).snapshot.metadata;
  ASSERT_EQ(meta.index(), at);
  EXPECT_EQ(meta.conf_state().voters_size(), 3) << "member 2 still votes at slot " << at + 1;
  ASSERT_EQ(meta.pending_conf_changes_size(), 1);
  EXPECT_EQ(meta.pending_conf_changes(0).index(), at);
  EXPECT_EQ(meta.pending_conf_changes(0).change().node_id(), 2u);
  EXPECT_EQ(PaxosTestPeer::ConfAt(c.raft(1), at + alpha).voters_size(), 3);
  EXPECT_EQ(PaxosTestPeer::ConfAt(c.raft(1), at + alpha + 1).voters_size(), 2);

  // The removed member stops; member 3 comes back and can only catch up by the snapshot.
  c.Heal();
  c.Crash(2);
  EXPECT_FALSE(c.Propose(1, "c").ok()) << "the window of slots is full";
  for (int i = 0; i < 10; ++i) {
    c.TickAll(1);
    c.Stabilize();
  }
  ASSERT_TRUE(c.Propose(1, "c").ok());
  c.Stabilize();
  EXPECT_EQ(c.node(3).snapshot.metadata.index(), at);
  EXPECT_EQ(AppliedData(c.node(3)).back(), "c");
  EXPECT_EQ(c.CommitOf(3), c.CommitOf(1));
  EXPECT_GT(c.CommitOf(1), at + alpha);
  for (NodeId id : {1, 3}) {
    c.Crash(id);
    c.Restart(id);
    EXPECT_EQ(PaxosTestPeer::ConfAt(c.raft(id), at + alpha).voters_size(), 3) << "member " << id;
    EXPECT_EQ(PaxosTestPeer::ConfAt(c.raft(id), at + alpha + 1).voters_size(), 2)
        << "member " << id;
  }
}

TEST(Paxos, LeadershipTransferMakesTheTargetRunPhase1AtOnce) {
  Cluster c(3);
  c.ElectLeader(1);
  ASSERT_TRUE(c.Propose(1, "x").ok());
  c.Stabilize();
  ASSERT_TRUE(c.raft(1).TransferLeader(3).ok());
  EXPECT_EQ(c.Propose(1, "y").status().code(), Code::kProposalDropped);
  c.Stabilize();
  EXPECT_EQ(c.Leader(), 3u);
  EXPECT_EQ(c.RoleOf(1), Role::kFollower);
  EXPECT_TRUE(c.Propose(3, "z").ok());
  c.Stabilize();
  EXPECT_EQ(AppliedData(c.node(1)).back(), "z");
}

// ---------------------------------------------------------------------------------
// Persistence.

TEST(Paxos, AClusterRestartedFromItsDisksKeepsEveryChosenValue) {
  Cluster c(3);
  c.ElectLeader(1);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(c.Propose(1, "v" + std::to_string(i)).ok());
  c.Stabilize();
  for (NodeId id = 1; id <= 3; ++id) {
    c.Crash(id);
    c.Restart(id);
  }
  c.ElectLeader(2);
  ASSERT_TRUE(c.Propose(2, "after").ok());
  c.Stabilize();
  c.TickAll(2);
  auto data = AppliedData(c.node(3));
  ASSERT_EQ(data.size(), 6u);
  EXPECT_EQ(data[0], "v0");
  EXPECT_EQ(data[5], "after");
}

// The chosen index is written without waiting for an fsync, so a member's state machine
// may have applied (and flushed) more than its durable chosen index says. Restarted with
// the index the state machine reached (RaiseCommitToApplied), the engine can compact
// there, the only index at which the state of a snapshot can be made after a restart.
TEST(Paxos, ARestartedMemberCompactsAtTheIndexItsStateMachineReached) {
  const Ballot b = MakeBallot(1, 1);
  DurableState durable;
  for (NodeId v : {1, 2, 3}) durable.snapshot.metadata.mutable_conf_state()->add_voters(v);
  for (LogIndex i = 1; i <= 6; ++i) durable.entries.push_back(Value(i, b, b, "v"));
  durable.hard_state.set_term(b);
  durable.hard_state.set_commit(2);
  auto compact_after_replay = [](DurableState d) {
    Config cfg;
    cfg.id = 2;
    Paxos p(cfg, d);
    Ready rd = p.TakeReady();
    const LogIndex replayed =
        rd.committed_entries.empty() ? 0 : rd.committed_entries.back().index();
    p.Advance(rd);
    pb::SnapshotMetadata at;
    at.set_index(5);
    return std::make_pair(replayed, p.Compact(Snapshot::InMemory(at, "state at 5")).ok());
  };
  EXPECT_EQ(compact_after_replay(durable), std::make_pair(LogIndex{2}, false));
  RaiseCommitToApplied(durable, 5);
  EXPECT_EQ(durable.hard_state.commit(), 5u);
  EXPECT_EQ(compact_after_replay(durable), std::make_pair(LogIndex{5}, true));
  // Never beyond the log, never lowered.
  RaiseCommitToApplied(durable, 9);
  EXPECT_EQ(durable.hard_state.commit(), 6u);
  RaiseCommitToApplied(durable, 3);
  EXPECT_EQ(durable.hard_state.commit(), 6u);
}

}  // namespace
}  // namespace synod::consensus::paxos
