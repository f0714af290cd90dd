// Leadership transfer (thesis §3.10).
#include "consensus/raft/raft_test_harness.h"

namespace synod::consensus::raft {
namespace {

using test::Change;
using test::Cluster;
using test::Is;

// Thesis §3.10: "1. The prior leader stops accepting new client requests. 2. The prior
// leader fully updates the target server's log to match its own [...] 3. The prior
// leader sends a TimeoutNow request to the target server. This request has the same
// effect as the target server's election timer firing."
TEST(RaftTransfer, TheLeaderSendsTimeoutNowToATargetThatIsCaughtUp) {
  Cluster c(3);
  c.ElectLeader(1);
  c.ClearSent();
  ASSERT_TRUE(c.raft(1).TransferLeader(2).ok());
  c.Stabilize();
  EXPECT_EQ(c.Sent(pb::MSG_TIMEOUT_NOW, 1, 2).size(), 1u);
  // The target skips pre-vote, and its votes pass leader stickiness.
  EXPECT_TRUE(c.Sent(pb::MSG_PRE_VOTE, 2).empty());
  EXPECT_EQ(c.Leader(), 2u);
  EXPECT_EQ(c.TermOf(2), 2u);
  EXPECT_EQ(c.RoleOf(1), Role::kFollower);
  EXPECT_EQ(c.GetStatus(1).leader, 2u);
  ASSERT_TRUE(c.Propose(2, "x").ok());
  c.Stabilize();
  EXPECT_EQ(c.node(1).state, "x;");
}

TEST(RaftTransfer, TheLeaderFirstBringsALaggingTargetUpToDate) {
  Cluster c(3);
  c.ElectLeader(1);
  c.DropIf(Is(pb::MSG_APPEND, 1, 3));
  ASSERT_TRUE(c.Propose(1, "x").ok());
  ASSERT_TRUE(c.Propose(1, "y").ok());
  c.Stabilize();
  c.Heal();
  ASSERT_LT(c.LastIndexOf(3), c.LastIndexOf(1));
  c.ClearSent();
  ASSERT_TRUE(c.raft(1).TransferLeader(3).ok());
  for (int i = 0; i < 5 && c.Leader() != 3; ++i) c.TickAll();
  EXPECT_EQ(c.Leader(), 3u);
  EXPECT_EQ(c.node(3).state, "x;y;");
  // TimeoutNow left only after member 3 had acknowledged the leader's last entry.
  bool caught_up = false;
  for (const auto& m : c.Sent()) {
    if (m.type() == pb::MSG_APPEND_RESPONSE && m.from() == 3 && !m.reject() && m.index() == 3) {
      caught_up = true;
    }
    if (m.type() == pb::MSG_TIMEOUT_NOW) {
      EXPECT_TRUE(caught_up) << "TimeoutNow sent to a target that was behind";
    }
  }
}

// Thesis §3.10: "the prior leader stops accepting new client requests" during the
// transfer, so the target can catch up.
TEST(RaftTransfer, ProposalsAreRefusedDuringATransfer) {
  Cluster c(3);
  c.ElectLeader(1);
  c.Isolate(3);
  ASSERT_TRUE(c.Propose(1, "x").ok());
  c.Stabilize();
  ASSERT_TRUE(c.raft(1).TransferLeader(3).ok());
  auto p = c.Propose(1, "y");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), Code::kProposalDropped);
  auto cc = c.ProposeConfChange(1, Change(pb::CONF_REMOVE, 2));
  ASSERT_FALSE(cc.ok());
  EXPECT_EQ(cc.status().code(), Code::kProposalDropped);
}

// Thesis §3.10: "If the transfer does not complete after about one election timeout, the
// prior leader aborts the transfer and resumes accepting client requests."
TEST(RaftTransfer, ATransferThatDoesNotCompleteWithinAnElectionTimeoutIsAborted) {
  Cluster c(3);
  c.ElectLeader(1);
  c.Isolate(3);
  ASSERT_TRUE(c.raft(1).TransferLeader(3).ok());
  c.TickAll(9);
  EXPECT_EQ(RaftTestPeer::LeadTransferee(c.raft(1)), 3u);
  EXPECT_FALSE(c.Propose(1, "x").ok());
  c.TickAll(1);
  EXPECT_EQ(RaftTestPeer::LeadTransferee(c.raft(1)), kNoNode);
  EXPECT_EQ(c.Leader(), 1u);
  EXPECT_EQ(c.TermOf(1), 1u);
  ASSERT_TRUE(c.Propose(1, "x").ok());
  c.Stabilize();
  EXPECT_EQ(c.node(2).state, "x;");
}

// While leadership may move at any moment, a lease proves nothing.
TEST(RaftTransfer, NoLeaseReadIsServedDuringATransfer) {
  Cluster c(3, [](Config& cfg) { cfg.lease_reads = true; });
  c.ElectLeaderInLockstep(1);
  c.TickAll(2);
  c.Isolate(3);
  ASSERT_TRUE(c.raft(1).TransferLeader(3).ok());
  c.ClearSent();
  ASSERT_TRUE(c.raft(1).ReadIndex(1).ok());
  c.Process(1);
  EXPECT_FALSE(c.Sent(pb::MSG_HEARTBEAT, 1).empty()) << "the read was served from the lease";
}

TEST(RaftTransfer, OnlyALeaderTransfersAndOnlyToAVoter) {
  Cluster c(3);
  c.ElectLeader(1);
  EXPECT_EQ(c.raft(2).TransferLeader(3).code(), Code::kNotLeader);
  EXPECT_EQ(c.raft(1).TransferLeader(9).code(), Code::kInvalidArgument);
  EXPECT_TRUE(c.raft(1).TransferLeader(1).ok()) << "to itself: nothing to do";
  EXPECT_EQ(RaftTestPeer::LeadTransferee(c.raft(1)), kNoNode);
  EXPECT_TRUE(c.Propose(1, "x").ok());

  c.AddMember(4);
  ASSERT_TRUE(c.ProposeConfChange(1, Change(pb::CONF_ADD_LEARNER, 4)).ok());
  c.Stabilize();
  EXPECT_EQ(c.raft(1).TransferLeader(4).code(), Code::kInvalidArgument) << "a learner";
}

}  // namespace
}  // namespace synod::consensus::raft
