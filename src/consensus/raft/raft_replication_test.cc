// Log replication (§5.3), the commit rule (§5.4.2, Figure 8), the optimisations of a
// production Raft (fast back-tracking, pipelining, batching, message size bounds), the
// persistence contract of engine.h, and the bounds on proposals.
#include <string>

#include "consensus/raft/raft_test_harness.h"

namespace synod::consensus::raft {
namespace {

using test::Cluster;
using test::Is;
using test::Log;

size_t EntryBytes(const pb::Message& m) {
  size_t bytes = 0;
  for (const auto& e : m.entries()) bytes += e.data().size();
  return bytes;
}

size_t Rejections(const Cluster& c, NodeId follower) {
  size_t n = 0;
  for (const auto& m : c.Sent(pb::MSG_APPEND_RESPONSE, follower)) n += m.reject() ? 1 : 0;
  return n;
}

// §8: "Raft handles this by having each leader commit a blank no-op entry into the log
// at the start of its term."
TEST(RaftReplication, ANewLeaderCommitsABlankNoOpEntryAtTheStartOfItsTerm) {
  Cluster c(3);
  c.ElectLeader(1);
  for (NodeId id = 1; id <= 3; ++id) {
    ASSERT_EQ(c.node(id).entries.size(), 1u);
    const pb::Entry& noop = c.node(id).entries[0];
    EXPECT_EQ(noop.index(), 1u);
    EXPECT_EQ(noop.term(), 1u);
    EXPECT_EQ(noop.type(), pb::ENTRY_NORMAL);
    EXPECT_TRUE(noop.data().empty());
    EXPECT_EQ(c.CommitOf(id), 1u);
    EXPECT_EQ(c.node(id).applied, 1u);
  }
}

// §5.3: "Once the leader has created an entry, it issues AppendEntries RPCs in parallel
// to each of the other servers to replicate the entry. [...] Once the entry has been
// safely replicated, the leader applies the entry to its state machine."
TEST(RaftReplication, AProposedEntryIsReplicatedToEveryFollowerAndApplied) {
  Cluster c(5);
  c.ElectLeader(1);
  auto id = c.Propose(1, "x");
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(id.value().index, 2u);
  EXPECT_EQ(id.value().term, 1u);
  auto id2 = c.Propose(1, "y");
  ASSERT_TRUE(id2.ok());
  c.Stabilize();
  for (NodeId n = 1; n <= 5; ++n) {
    EXPECT_EQ(c.CommitOf(n), 3u) << "member " << n;
    EXPECT_EQ(c.node(n).state, "x;y;") << "member " << n;
  }
}

// §5.3: "A log entry is committed once the leader that created the entry has replicated
// it on a majority of the servers."
TEST(RaftReplication, AnEntryIsCommittedOnceAMajorityStoresIt) {
  Cluster c(5);
  c.ElectLeader(1);
  c.Isolate(4);
  c.Isolate(5);
  ASSERT_TRUE(c.Propose(1, "x").ok());
  c.Stabilize();
  EXPECT_EQ(c.CommitOf(1), 2u) << "three of five is a majority";

  c.Isolate(3);
  ASSERT_TRUE(c.Propose(1, "y").ok());
  c.Stabilize();
  EXPECT_EQ(c.LastIndexOf(2), 3u) << "member 2 stores it";
  EXPECT_EQ(c.CommitOf(1), 2u) << "two of five is not";
  EXPECT_EQ(c.node(1).state, "x;");
}

// Figure 8, built by hand (c): S1, leader of term 4, has replicated the entry of term 2
// at index 2 to a majority, but the entry of its own term (its no-op) to nobody. It must
// not count the replicas of entry 2, because (d) S5 can still be elected and overwrite
// it.
//
// §5.4.2: "Raft never commits log entries from previous terms by counting replicas.
// Only log entries from the leader's current term are committed by counting replicas."
TEST(RaftReplication, ALeaderNeverCommitsAnEntryFromAPreviousTermByCountingReplicas) {
  auto plain_raft = [](Config& cfg) {
    cfg.pre_vote = false;
    cfg.check_quorum = false;
    cfg.msg_bytes_max = 1;  // one entry with data per append
  };
  Cluster c(5, plain_raft);
  const std::vector<NodeId> all = {1, 2, 3, 4, 5};
  // (b): S1 led term 2 and replicated index 2 to S2; S5 won term 3 with S3 and S4's votes.
  c.StartWithLog(1, all, Log({1, 2}), /*term=*/3, kNoNode, /*commit=*/1);
  c.StartWithLog(2, all, Log({1, 2}), 3, kNoNode, 1);
  c.StartWithLog(3, all, Log({1}), 3, /*vote=*/5, 1);
  c.StartWithLog(4, all, Log({1}), 3, 5, 1);
  c.StartWithLog(5, all, Log({1, 3}), 3, 5, 1);

  // (c): S5 crashes; S1 is elected in term 4 and replicates index 2, but the entries of
  // term 4 never arrive (the network cuts them off the end of each append).
  c.Crash(5);
  c.Rewrite([](pb::Message& m) {
    auto* entries = m.mutable_entries();
    while (!entries->empty() && entries->rbegin()->term() == 4) entries->RemoveLast();
  });
  c.ElectLeader(1);
  ASSERT_EQ(c.TermOf(1), 4u);
  const EngineStatus s1 = c.GetStatus(1);
  EXPECT_EQ(s1.peers.at(3).match, 2u);
  EXPECT_EQ(s1.peers.at(4).match, 2u);
  EXPECT_EQ(c.DurableTerms(3), (std::vector<Term>{1, 2}));
  EXPECT_EQ(s1.commit, 1u) << "committed an entry of term 2 by counting replicas";

  // (d): S1 crashes, S5 restarts and is elected by S2, S3 and S4 (its last term, 3, is
  // later than theirs), and replaces entry 2 everywhere. Had S1 committed it, a committed
  // entry would now be lost: the harness checks that no two members applied different
  // entries at index 2.
  c.Heal();
  c.Crash(1);
  c.Restart(5);
  c.ElectLeader(5);
  for (NodeId id : {2, 3, 4, 5}) {
    EXPECT_EQ(c.DurableTerms(id), (std::vector<Term>{1, 3, c.TermOf(5)})) << "member " << id;
    EXPECT_EQ(c.CommitOf(id), 3u);
  }
}

// Figure 8 (e): "if S1 replicates an entry from its current term on a majority of the
// servers before crashing, [...] then this entry is committed (S5 cannot win an
// election). At this point all preceding entries in the log are committed as well."
TEST(RaftReplication, AnEntryFromAPreviousTermIsCommittedIndirectlyWithOneOfTheCurrentTerm) {
  Cluster c(5, [](Config& cfg) {
    cfg.pre_vote = false;
    cfg.check_quorum = false;
  });
  const std::vector<NodeId> all = {1, 2, 3, 4, 5};
  c.StartWithLog(1, all, Log({1, 2}), 3, kNoNode, 1);
  c.StartWithLog(2, all, Log({1, 2}), 3, kNoNode, 1);
  c.StartWithLog(3, all, Log({1}), 3, 5, 1);
  c.StartWithLog(4, all, Log({1}), 3, 5, 1);
  c.StartWithLog(5, all, Log({1, 3}), 3, 5, 1);
  c.Crash(5);
  c.Cut(1, 4);  // S1 reaches S2 and S3 only: a bare majority
  c.ElectLeader(1);
  EXPECT_EQ(c.CommitOf(1), 3u) << "entry 2 is committed with the no-op of term 4";
  EXPECT_EQ(c.DurableTerms(3), (std::vector<Term>{1, 2, 4}));

  c.Heal();
  c.Crash(1);
  c.Restart(5);
  for (int i = 0; i < 200; ++i) {
    c.Tick(5);
    c.Stabilize();
    ASSERT_NE(c.RoleOf(5), Role::kLeader) << "S5 was elected and could erase entry 2";
  }
}

// Figure 7 (f) and §5.3: "the leader handles inconsistencies by forcing the followers'
// logs to duplicate its own. This means that conflicting entries in follower logs will
// be overwritten with entries from the leader's log."
TEST(RaftReplication, AFollowersConflictingEntriesAreOverwrittenWithTheLeaders) {
  Cluster c(3, [](Config& cfg) { cfg.pre_vote = false; });
  const std::vector<Term> leader_log = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6};
  c.StartWithLog(1, {1, 2, 3}, Log({1, 1, 1, 4, 4, 5, 5, 6, 6, 6}), 7, kNoNode, 3);
  c.StartWithLog(2, {1, 2, 3}, Log({1, 1, 1, 4, 4, 5, 5, 6, 6, 6}), 7, kNoNode, 3);
  c.StartWithLog(3, {1, 2, 3}, Log({1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3}), 3, kNoNode, 3);
  c.ElectLeader(1);
  ASSERT_EQ(c.TermOf(1), 8u);
  std::vector<Term> expected = leader_log;
  expected.push_back(8);
  EXPECT_EQ(c.DurableTerms(3), expected);
  EXPECT_EQ(c.CommitOf(3), 11u);
  // The entries of terms 2 and 3 went in one rejected round trip, not eight.
  EXPECT_EQ(Rejections(c, 3), 1u);
}

// Thesis §5.3 (an optimisation): "the follower can include the term of the conflicting
// entry [...] the leader can decrement nextIndex to bypass all of the conflicting
// entries in that term" — one round trip per term, however long the divergence.
TEST(RaftReplication, FastBackTrackingTakesFewRoundTripsForALongDivergentLog) {
  std::vector<pb::Entry> leader_log = Log({1});
  std::vector<pb::Entry> stale_log = Log({1});
  for (LogIndex i = 2; i <= 51; ++i) leader_log.push_back(test::MakeEntry(i, 3, "L"));
  for (LogIndex i = 2; i <= 101; ++i) stale_log.push_back(test::MakeEntry(i, 2, "S"));
  Cluster c(3, [](Config& cfg) { cfg.pre_vote = false; });
  c.StartWithLog(1, {1, 2, 3}, leader_log, 3, kNoNode, 1);
  c.StartWithLog(2, {1, 2, 3}, leader_log, 3, kNoNode, 1);
  c.StartWithLog(3, {1, 2, 3}, stale_log, 3, kNoNode, 1);
  c.ElectLeader(1);
  EXPECT_EQ(c.LastIndexOf(3), 52u);
  EXPECT_EQ(c.DurableLog(3), c.DurableLog(1));
  EXPECT_LE(Rejections(c, 3), 1u) << "backed off one entry at a time";
}

TEST(RaftReplication, FastBackTrackingSkipsAHigherTermTheLeaderNeverHad) {
  // The follower's long suffix is of term 3, from a leader that never reached member 1,
  // which holds entries of term 2 at the same indexes and one of term 4 after them.
  std::vector<pb::Entry> leader_log = Log({1});
  std::vector<pb::Entry> stale_log = Log({1});
  for (LogIndex i = 2; i <= 51; ++i) leader_log.push_back(test::MakeEntry(i, 2, "L"));
  leader_log.push_back(test::MakeEntry(52, 4, "L"));
  for (LogIndex i = 2; i <= 101; ++i) stale_log.push_back(test::MakeEntry(i, 3, "S"));
  Cluster c(3, [](Config& cfg) { cfg.pre_vote = false; });
  c.StartWithLog(1, {1, 2, 3}, leader_log, 4, kNoNode, 1);
  c.StartWithLog(2, {1, 2, 3}, leader_log, 4, kNoNode, 1);
  c.StartWithLog(3, {1, 2, 3}, stale_log, 4, kNoNode, 1);
  c.ElectLeader(1);
  EXPECT_EQ(c.DurableLog(3), c.DurableLog(1));
  EXPECT_LE(Rejections(c, 3), 2u) << "one round trip per term";
}

// Pipelining: in replicate state the leader does not wait for each acknowledgement, but
// keeps at most inflight_msgs_max appends in flight per follower.
TEST(RaftReplication, AFollowerInReplicateStateHasSeveralAppendsInFlightUpToTheBound) {
  Cluster c(3, [](Config& cfg) { cfg.inflight_msgs_max = 3; });
  c.ElectLeader(1);
  ASSERT_STREQ(c.GetStatus(1).peers.at(2).state, "replicate");
  c.ClearSent();
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(c.Propose(1, "p" + std::to_string(i)).ok());
    c.Process(1);  // nothing is delivered meanwhile
  }
  EXPECT_EQ(c.Sent(pb::MSG_APPEND, 1, 2).size(), 3u) << "three appends in flight, no more";
  EXPECT_EQ(RaftTestPeer::Inflight(c.raft(1), 2), 3u);
  c.Stabilize();
  EXPECT_EQ(c.node(2).state, "p0;p1;p2;p3;p4;");
  EXPECT_EQ(c.CommitOf(2), 6u);
  EXPECT_EQ(RaftTestPeer::Inflight(c.raft(1), 2), 0u);
}

// Batching: proposals made between two Readys leave in one append per follower.
TEST(RaftReplication, ManyProposalsBetweenTwoReadysLeaveInOneAppendPerFollower) {
  Cluster c(3);
  c.ElectLeader(1);
  c.ClearSent();
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(c.Propose(1, "p" + std::to_string(i)).ok());
  c.Process(1);
  for (NodeId to : {2, 3}) {
    const auto appends = c.Sent(pb::MSG_APPEND, 1, to);
    ASSERT_EQ(appends.size(), 1u);
    EXPECT_EQ(appends[0].entries_size(), 10);
  }
  c.Stabilize();
  EXPECT_EQ(c.CommitOf(3), 11u);
}

TEST(RaftReplication, AnAppendCarriesAtMostMsgBytesMaxOfEntries) {
  Cluster c(3, [](Config& cfg) { cfg.msg_bytes_max = 100; });
  c.ElectLeader(1);
  c.ClearSent();
  std::string expected;
  for (int i = 0; i < 10; ++i) {
    std::string data(30, static_cast<char>('a' + i));
    expected += data + ";";
    ASSERT_TRUE(c.Propose(1, data).ok());
  }
  c.Stabilize();
  const auto appends = c.Sent(pb::MSG_APPEND, 1, 2);
  EXPECT_GE(appends.size(), 4u);
  for (const auto& m : appends) EXPECT_LE(EntryBytes(m), 100u);
  EXPECT_EQ(c.node(2).state, expected);

  // An entry larger than the bound still travels, alone.
  c.ClearSent();
  ASSERT_TRUE(c.Propose(1, std::string(250, 'z')).ok());
  c.Stabilize();
  const auto big = c.Sent(pb::MSG_APPEND, 1, 2);
  ASSERT_FALSE(big.empty());
  EXPECT_EQ(big[0].entries_size(), 1);
  EXPECT_EQ(c.CommitOf(2), 12u);
}

// A lost append must not leave a follower behind for good: the leader learns from the
// follower's heartbeat response that it is missing entries, and sends them again.
TEST(RaftReplication, AFollowerThatMissedTheLastAppendCatchesUpAtTheNextHeartbeat) {
  Cluster c(3);
  c.ElectLeader(1);
  c.DropIf(Is(pb::MSG_APPEND, 1, 3));
  ASSERT_TRUE(c.Propose(1, "x").ok());
  c.Stabilize();
  ASSERT_EQ(c.CommitOf(1), 2u);
  ASSERT_EQ(c.LastIndexOf(3), 1u);
  c.Heal();
  c.TickAll(3);
  EXPECT_EQ(c.LastIndexOf(3), 2u);
  EXPECT_EQ(c.CommitOf(3), 2u);
  EXPECT_EQ(c.node(3).state, "x;");
}

TEST(RaftReplication, LostAppendsDoNotStallAFullPipeline) {
  Cluster c(3, [](Config& cfg) { cfg.inflight_msgs_max = 2; });
  c.ElectLeader(1);
  c.DropIf(Is(pb::MSG_APPEND, 1, 3));
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(c.Propose(1, "p" + std::to_string(i)).ok());
    c.Stabilize();
  }
  ASSERT_EQ(c.CommitOf(1), 6u);
  c.Heal();
  c.TickAll(5);
  EXPECT_EQ(c.node(3).state, "p0;p1;p2;p3;p4;");
}

// A follower that crashed misses appends; after restarting it catches up.
TEST(RaftReplication, ARestartedFollowerCatchesUp) {
  Cluster c(3);
  c.ElectLeader(1);
  ASSERT_TRUE(c.Propose(1, "a").ok());
  c.Stabilize();
  c.Crash(3);
  ASSERT_TRUE(c.Propose(1, "b").ok());
  ASSERT_TRUE(c.Propose(1, "c").ok());
  c.Stabilize();
  c.Restart(3);
  c.TickAll(3);
  EXPECT_EQ(c.node(3).state, "a;b;c;");
  EXPECT_EQ(c.CommitOf(3), 4u);
}

// ---------------------------------------------------------------------------------
// The persistence contract (engine.h).

// A follower acknowledges entries in the same Ready that hands them out for persisting:
// the caller sends the acknowledgement only after they are durable.
TEST(RaftPersistence, AnAcknowledgementLeavesInTheReadyThatPersistsTheEntries) {
  Cluster c(3);
  c.ElectLeader(1);
  ASSERT_TRUE(c.Propose(1, "x").ok());
  c.Process(1);
  c.ClearSent();
  c.Deliver(Is(pb::MSG_APPEND, 1, 2));
  EXPECT_TRUE(c.Sent().empty()) << "a message left outside a Ready";
  Ready rd = c.TakeAndPersist(2);
  ASSERT_EQ(rd.entries.size(), 1u);
  EXPECT_EQ(rd.entries[0].data(), "x");
  const auto acks = c.Sent(pb::MSG_APPEND_RESPONSE, 2, 1);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].index(), rd.entries[0].index());
  c.Advance(2, rd);
  c.Stabilize();
}

// Committed entries are handed out for applying only once they are durable.
TEST(RaftPersistence, CommittedEntriesAreHandedOutOnlyOnceDurable) {
  Cluster c(3);
  c.ElectLeader(1);
  // An append that carries an entry and the news that it is committed.
  pb::Message m;
  m.set_type(pb::MSG_APPEND);
  m.set_from(1);
  m.set_to(2);
  m.set_term(1);
  m.set_index(1);
  m.set_log_term(1);
  *m.add_entries() = test::MakeEntry(2, 1, "x");
  m.set_commit(2);
  ASSERT_TRUE(c.raft(2).Step(m).ok());

  Ready first = c.TakeAndPersist(2);
  EXPECT_EQ(first.entries.size(), 1u);
  EXPECT_TRUE(first.committed_entries.empty()) << "entry 2 applied before it is durable";
  c.Advance(2, first);
  ASSERT_TRUE(c.raft(2).HasReady());
  Ready second = c.TakeAndPersist(2);
  ASSERT_EQ(second.committed_entries.size(), 1u);
  EXPECT_EQ(second.committed_entries[0].data(), "x");
  c.Advance(2, second);
  c.InFlight().clear();
}

// engine.h: "A leader counts itself towards a commit quorum only for entries its caller
// confirmed durable (Advance)."
TEST(RaftPersistence, ALeaderCountsItselfTowardsACommitOnlyAfterAdvance) {
  Cluster c(3);
  c.ElectLeader(1);
  ASSERT_TRUE(c.Propose(1, "x").ok());
  Ready rd = c.TakeAndPersist(1);
  // Member 2 stores and acknowledges entry 2 before the leader calls Advance; member 3
  // hears nothing.
  c.Deliver(Is(pb::MSG_APPEND, 1, 2));
  c.Process(2);
  c.Deliver(Is(pb::MSG_APPEND_RESPONSE, 2, 1));
  EXPECT_EQ(c.CommitOf(1), 1u) << "the leader counted an entry it had not confirmed durable";
  c.Advance(1, rd);
  EXPECT_EQ(c.CommitOf(1), 2u);
  c.Stabilize();
  EXPECT_EQ(c.node(1).state, "x;");
}

TEST(RaftPersistence, ASingleMemberCommitsOnlyWhatItsCallerMadeDurable) {
  Cluster c(1);
  c.ElectLeader(1);
  ASSERT_TRUE(c.Propose(1, "x").ok());
  Ready rd = c.TakeAndPersist(1);
  EXPECT_EQ(rd.entries.size(), 1u);
  EXPECT_TRUE(rd.committed_entries.empty());
  EXPECT_EQ(c.CommitOf(1), 1u);
  c.Advance(1, rd);
  EXPECT_EQ(c.CommitOf(1), 2u);
  c.Stabilize();
  EXPECT_EQ(c.node(1).state, "x;");
  EXPECT_EQ(c.node(1).hard_state.commit(), 2u);
}

// ---------------------------------------------------------------------------------
// Bounds.

TEST(RaftBounds, ProposalsBeyondUncommittedBytesMaxAreDropped) {
  Cluster c(3, [](Config& cfg) { cfg.uncommitted_bytes_max = 100; });
  c.ElectLeader(1);
  c.Isolate(2);
  c.Isolate(3);
  ASSERT_TRUE(c.Propose(1, std::string(60, 'a')).ok());
  auto dropped = c.Propose(1, std::string(60, 'b'));
  ASSERT_FALSE(dropped.ok());
  EXPECT_EQ(dropped.status().code(), Code::kProposalDropped);
  EXPECT_TRUE(c.Propose(1, std::string(40, 'c')).ok()) << "up to the bound is fine";
  c.Stabilize();
  c.Heal();
  c.TickAll(3);
  EXPECT_EQ(c.CommitOf(1), 3u);
  EXPECT_EQ(RaftTestPeer::UncommittedBytes(c.raft(1)), 0u);
  EXPECT_TRUE(c.Propose(1, std::string(60, 'd')).ok()) << "committing made room";
}

TEST(RaftBounds, ApplyBytesMaxBoundsTheCommittedEntriesOfAReady) {
  Cluster c(1, [](Config& cfg) { cfg.apply_bytes_max = 100; });
  c.ElectLeader(1);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(c.Propose(1, std::string(30, 'a')).ok());
  c.Process(1);  // persists the ten entries, which then commit at Advance
  size_t readys = 0;
  while (c.raft(1).HasReady()) {
    Ready rd = c.TakeAndPersist(1);
    size_t bytes = 0;
    for (const auto& e : rd.committed_entries) bytes += e.data().size();
    EXPECT_LE(bytes, 100u);
    c.Advance(1, rd);
    ++readys;
  }
  EXPECT_GE(readys, 4u);
  EXPECT_EQ(c.node(1).applied, 11u);
}

TEST(RaftBounds, ProposingOnAFollowerReturnsNotLeaderNamingTheLeader) {
  Cluster c(3);
  c.ElectLeader(1);
  auto r = c.Propose(2, "x");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotLeader);
  EXPECT_NE(r.status().message().find("leader is 1"), std::string::npos) << r.status().message();
  auto cc = c.ProposeConfChange(3, test::Change(pb::CONF_REMOVE, 2));
  ASSERT_FALSE(cc.ok());
  EXPECT_EQ(cc.status().code(), Code::kNotLeader);
}

}  // namespace
}  // namespace synod::consensus::raft
