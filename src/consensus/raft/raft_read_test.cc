// Linearizable reads without log writes (thesis §6.4): ReadIndex and leader leases.
#include "consensus/raft/raft_test_harness.h"

namespace synod::consensus::raft {
namespace {

using test::Cluster;
using test::Is;

void LeaseReads(Config& cfg) { cfg.lease_reads = true; }

bool HasRead(const Cluster& c, NodeId id, uint64_t request_id, LogIndex* index = nullptr) {
  for (const ReadState& rs : c.nodes().at(id).read_states) {
    if (rs.request_id == request_id) {
      if (index) *index = rs.index;
      return true;
    }
  }
  return false;
}

// Thesis §6.4: "The leader needs to make sure it hasn't been superseded by a newer
// leader of which it is unaware. It issues a new round of heartbeats and waits for
// their acknowledgments from a majority of the cluster."
TEST(RaftRead, ReadIndexAtTheLeaderNeedsAHeartbeatQuorum) {
  Cluster c(3);
  c.ElectLeader(1);
  ASSERT_TRUE(c.Propose(1, "x").ok());
  c.Stabilize();
  c.Isolate(2);
  c.Isolate(3);
  c.ClearSent();
  ASSERT_TRUE(c.raft(1).ReadIndex(7).ok());
  c.Stabilize();
  EXPECT_EQ(c.Sent(pb::MSG_HEARTBEAT, 1).size(), 2u) << "the round starts at once";
  c.TickAll(3);
  EXPECT_FALSE(HasRead(c, 1, 7)) << "served without hearing from a quorum";

  c.Heal();
  c.TickAll(1);
  LogIndex index = 0;
  ASSERT_TRUE(HasRead(c, 1, 7, &index));
  EXPECT_EQ(index, 2u) << "the read index is the commit index when the read arrived";
}

TEST(RaftRead, OneAcknowledgementMakesAQuorumOfThree) {
  Cluster c(3);
  c.ElectLeader(1);
  c.Isolate(3);
  ASSERT_TRUE(c.raft(1).ReadIndex(7).ok());
  c.Stabilize();  // no tick: the heartbeats of the read's own round suffice
  EXPECT_TRUE(HasRead(c, 1, 7));
}

// Reads that arrive together share one round: one heartbeat per follower, whose
// acknowledgement confirms them all (a round per read would cost 2(n-1) messages each).
TEST(RaftRead, ReadsRegisteredBeforeOneReadyShareOneHeartbeatRound) {
  Cluster c(3);
  c.ElectLeader(1);
  ASSERT_TRUE(c.Propose(1, "x").ok());
  c.Stabilize();
  c.Isolate(3);
  c.ClearSent();
  for (uint64_t id = 100; id < 110; ++id) ASSERT_TRUE(c.raft(1).ReadIndex(id).ok());
  c.Stabilize();
  EXPECT_EQ(c.Sent(pb::MSG_HEARTBEAT, 1).size(), 2u) << "one heartbeat per follower";
  for (uint64_t id = 100; id < 110; ++id) EXPECT_TRUE(HasRead(c, 1, id)) << id;
}

// Thesis §6.4: "If the leader has not yet marked an entry from its current term
// committed, it waits until it has done so."
TEST(RaftRead, ANewLeaderDefersReadsUntilItsNoOpCommits) {
  Cluster c(3);
  c.DropIf(Is(pb::MSG_APPEND_RESPONSE, kNoNode, 1));
  c.ElectLeader(1);
  ASSERT_EQ(c.CommitOf(1), 0u);
  ASSERT_TRUE(c.raft(1).ReadIndex(9).ok());
  c.TickAll(3);  // heartbeats are acknowledged, but the no-op is not
  EXPECT_FALSE(HasRead(c, 1, 9)) << "served before the leader knew the commit index";
  c.Heal();
  c.TickAll(1);
  LogIndex index = 0;
  ASSERT_TRUE(HasRead(c, 1, 9, &index));
  EXPECT_EQ(index, 1u) << "at least the no-op";
}

// Thesis §6.4: "followers could [...] issue a request to the leader just to learn the
// current commit index".
TEST(RaftRead, AFollowersReadIndexIsForwardedToTheLeader) {
  Cluster c(3);
  c.ElectLeader(1);
  ASSERT_TRUE(c.Propose(1, "x").ok());
  c.Stabilize();
  c.ClearSent();
  ASSERT_TRUE(c.raft(2).ReadIndex(5).ok());
  c.Stabilize();
  EXPECT_EQ(c.Sent(pb::MSG_READ_INDEX, 2, 1).size(), 1u);
  EXPECT_EQ(c.Sent(pb::MSG_READ_INDEX_RESPONSE, 1, 2).size(), 1u);
  LogIndex index = 0;
  ASSERT_TRUE(HasRead(c, 2, 5, &index));
  EXPECT_EQ(index, 2u);
  EXPECT_FALSE(HasRead(c, 1, 5)) << "the leader served the follower's read itself";
}

TEST(RaftRead, AMemberThatKnowsNoLeaderRefusesAReadIndex) {
  Cluster c(3);
  Status s = c.raft(2).ReadIndex(5);
  EXPECT_EQ(s.code(), Code::kUnavailable);
}

// A leader that has been replaced without knowing it cannot confirm its leadership, so
// it never answers a read (which could miss writes the new leader committed).
TEST(RaftRead, ADeposedLeaderCannotServeAReadIndex) {
  Cluster c(3);
  c.ElectLeader(1);
  c.Isolate(1);
  // Members 2 and 3 elect a new leader and commit a write; member 1's clock is stopped,
  // so it still believes it leads.
  for (int i = 0; i < 100 && c.Leader() == 1; ++i) {
    c.Tick(2);
    c.Tick(3);
    c.Stabilize();
  }
  const NodeId leader = c.Leader();
  ASSERT_TRUE(leader == 2 || leader == 3);
  ASSERT_EQ(c.RoleOf(1), Role::kLeader);
  ASSERT_TRUE(c.Propose(leader, "y").ok());
  c.Stabilize();

  ASSERT_TRUE(c.raft(1).ReadIndex(11).ok());
  c.Stabilize();
  c.Tick(1, 3);
  c.Stabilize();
  EXPECT_FALSE(HasRead(c, 1, 11));

  c.Heal();
  c.TickAll(3);
  EXPECT_EQ(c.RoleOf(1), Role::kFollower);
  EXPECT_FALSE(HasRead(c, 1, 11)) << "a stale read was served";
}

// Thesis §6.4.1: "the leader would use the normal heartbeat mechanism to maintain a
// lease. Once the leader's heartbeats were acknowledged by a majority of the cluster,
// it would extend its lease [...] The leader would then reply to read-only queries
// during the lease without any additional communication."
TEST(RaftRead, WithLeaseReadsALeaderServesReadsWithoutARoundWhileTheLeaseHolds) {
  Cluster c(3, LeaseReads);
  c.ElectLeaderInLockstep(1);
  c.TickAll(2);  // a round of heartbeats grants the lease
  c.ClearSent();
  ASSERT_TRUE(c.raft(1).ReadIndex(3).ok());
  c.Process(1);
  EXPECT_TRUE(HasRead(c, 1, 3)) << "not served from the lease";
  EXPECT_TRUE(c.Sent(pb::MSG_HEARTBEAT, 1).empty()) << "a round was used anyway";
}

TEST(RaftRead, WithoutLeaseReadsEveryReadTakesAHeartbeatRound) {
  Cluster c(3);
  c.ElectLeader(1);
  c.TickAll(2);
  c.ClearSent();
  ASSERT_TRUE(c.raft(1).ReadIndex(3).ok());
  c.Process(1);
  EXPECT_FALSE(HasRead(c, 1, 3));
  EXPECT_EQ(c.Sent(pb::MSG_HEARTBEAT, 1).size(), 2u);
  c.Stabilize();
  EXPECT_TRUE(HasRead(c, 1, 3));
}

// The lease runs election_ticks - lease_drift_ticks (here 8) ticks from the sending of
// the last heartbeat a quorum acknowledged; after that a read needs a round again.
TEST(RaftRead, ALeaseThatHasRunOutIsNotUsed) {
  Cluster c(3, LeaseReads);
  c.ElectLeaderInLockstep(1);
  c.TickAll(2);
  c.Isolate(2);
  c.Isolate(3);
  c.Tick(1, 7);
  c.Stabilize();
  ASSERT_TRUE(c.raft(1).ReadIndex(1).ok());
  c.Stabilize();
  EXPECT_TRUE(HasRead(c, 1, 1)) << "7 ticks into an 8-tick lease";
  c.Tick(1);
  c.Stabilize();
  ASSERT_TRUE(c.raft(1).ReadIndex(2).ok());
  c.Stabilize();
  EXPECT_FALSE(HasRead(c, 1, 2)) << "served from an expired lease";
}

// The lease is safe because members that heard from the leader refuse to elect another
// for an election timeout: by the time one is elected, the old leader's lease is over.
TEST(RaftRead, ADeposedLeaderHasLostItsLeaseBeforeAnotherIsElected) {
  Cluster c(3, LeaseReads);
  c.ElectLeaderInLockstep(1);
  c.TickAll(2);
  c.Isolate(1);
  for (int i = 0; i < 100 && (c.Leader() == 1 || c.Leader() == kNoNode); ++i) {
    c.TickAll();  // all clocks run at the same rate
  }
  const NodeId leader = c.Leader();
  ASSERT_TRUE(leader == 2 || leader == 3);
  ASSERT_TRUE(c.Propose(leader, "y").ok());
  c.Stabilize();
  const Status s = c.raft(1).ReadIndex(4);
  c.Stabilize();
  EXPECT_TRUE(!s.ok() || !HasRead(c, 1, 4)) << "the old leader served a read from its lease";
}

// The same must hold when a member that granted the lease crashes and restarts at once:
// it has forgotten that it heard from the leader, yet its promise not to elect another
// for an election timeout still backs the old leader's lease.
TEST(RaftRead, AMemberThatRestartsDoesNotHelpElectAnotherLeaderWithinTheLease) {
  Cluster c(3, LeaseReads);
  c.ElectLeaderInLockstep(1);
  c.Cut(1, 3);  // member 3 no longer hears from the leader, and keeps trying to campaign
  // Run in lockstep until member 3's election timer is about to fire.
  for (int i = 0; i < 40; ++i) {
    const Raft& r3 = c.raft(3);
    if (RaftTestPeer::ElectionElapsed(r3) + 1 >= RaftTestPeer::RandomizedElectionTicks(r3)) break;
    c.TickAll();
  }
  ASSERT_EQ(c.RoleOf(1), Role::kLeader);
  // The leader's last heartbeat round (one tick ago) was acknowledged by member 2: the
  // leader holds a lease. Now the leader is cut off, and member 2 crashes and restarts.
  c.Isolate(1);
  c.Crash(2);
  c.Restart(2);
  c.TickAll(2);
  const NodeId other = c.Leader() == 1 ? kNoNode : c.Leader();
  EXPECT_EQ(other, kNoNode) << "another leader was elected within member 1's lease";
  LogIndex written = 0;
  if (other != kNoNode) {
    auto y = c.Propose(other, "y");
    ASSERT_TRUE(y.ok());
    c.Stabilize();
    written = y.value().index;
  }
  // Within its lease, the old leader answers a read from the lease: that read must not
  // miss a write another leader committed.
  ASSERT_TRUE(c.raft(1).ReadIndex(5).ok());
  c.Process(1);
  LogIndex index = 0;
  if (HasRead(c, 1, 5, &index) && other != kNoNode && c.CommitOf(other) >= written) {
    EXPECT_GE(index, written) << "member " << other << " was elected and committed entry "
                              << written << " while member 1 still served reads from its lease";
  }
}

}  // namespace
}  // namespace synod::consensus::raft
