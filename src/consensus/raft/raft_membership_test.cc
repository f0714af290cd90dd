// Membership changes one server at a time (thesis chapter 4), with learners.
#include <algorithm>

#include "consensus/raft/raft_test_harness.h"

namespace synod::consensus::raft {
namespace {

using test::Change;
using test::Cluster;
using test::Is;

std::vector<NodeId> VotersOf(Cluster& c, NodeId id) {
  const EngineStatus s = c.GetStatus(id);
  return {s.conf_state.voters().begin(), s.conf_state.voters().end()};
}
std::vector<NodeId> LearnersOf(Cluster& c, NodeId id) {
  const EngineStatus s = c.GetStatus(id);
  return {s.conf_state.learners().begin(), s.conf_state.learners().end()};
}

// Thesis §4.2.1: "the new servers join the cluster as non-voting members (the leader
// replicates log entries to them, but they are not considered for majorities)."
TEST(RaftMembership, ALearnerReceivesTheLogButIsNotConsideredForMajorities) {
  Cluster c(3);
  c.ElectLeader(1);
  ASSERT_TRUE(c.Propose(1, "a").ok());
  c.Stabilize();
  c.AddMember(4);
  ASSERT_TRUE(c.ProposeConfChange(1, Change(pb::CONF_ADD_LEARNER, 4)).ok());
  c.Stabilize();
  for (NodeId id = 1; id <= 4; ++id) {
    EXPECT_EQ(VotersOf(c, id), (std::vector<NodeId>{1, 2, 3})) << "member " << id;
    EXPECT_EQ(LearnersOf(c, id), (std::vector<NodeId>{4})) << "member " << id;
    EXPECT_EQ(c.node(id).conf.learners_size(), 1) << "the state machine applied it too";
  }
  EXPECT_EQ(c.DurableLog(4), c.DurableLog(1));
  EXPECT_EQ(c.node(4).state, "a;");
  EXPECT_TRUE(c.GetStatus(1).peers.at(4).learner);

  // The leader and the learner alone are not a majority.
  c.Isolate(2);
  c.Isolate(3);
  ASSERT_TRUE(c.Propose(1, "b").ok());
  c.Stabilize();
  EXPECT_EQ(c.LastIndexOf(4), c.LastIndexOf(1)) << "the learner stores the entry";
  EXPECT_EQ(c.CommitOf(1), 3u) << "the learner's copy counted towards the commit";
  c.Heal();
  c.TickAll(2);
  EXPECT_EQ(c.node(4).state, "a;b;");
}

TEST(RaftMembership, ALearnerNeverCampaignsAndIsNeverAskedForItsVote) {
  Cluster c(3);
  c.ElectLeader(1);
  c.AddMember(4);
  ASSERT_TRUE(c.ProposeConfChange(1, Change(pb::CONF_ADD_LEARNER, 4)).ok());
  c.Stabilize();
  c.ClearSent();
  // Cut off from everyone, the learner never times out into an election.
  c.Isolate(4);
  c.TickAll(100);
  EXPECT_EQ(c.RoleOf(4), Role::kFollower);
  EXPECT_TRUE(c.Sent(pb::MSG_PRE_VOTE, 4).empty());
  EXPECT_TRUE(c.Sent(pb::MSG_VOTE, 4).empty());
  // And an election among the voters does not ask it.
  c.Heal();
  c.Crash(1);
  c.TickAll(50);
  EXPECT_NE(c.Leader(), kNoNode);
  EXPECT_TRUE(c.Sent(pb::MSG_PRE_VOTE, kNoNode, 4).empty());
  EXPECT_TRUE(c.Sent(pb::MSG_VOTE, kNoNode, 4).empty());
}

// A learner is promoted once it has caught up (thesis §4.2.1: "the leader should abort
// the change if the new server is unavailable or is so slow that it will never catch
// up").
// "Unavailable" includes never started: however short the log, a learner that has not
// acknowledged anything is not in sync.
TEST(RaftMembership, ALearnerThatNeverAnsweredIsNotPromoted) {
  Cluster c(3);
  c.ElectLeader(1);
  c.AddMember(4);
  c.Isolate(4);
  ASSERT_TRUE(c.ProposeConfChange(1, Change(pb::CONF_ADD_LEARNER, 4)).ok());
  c.Stabilize();
  auto refused = c.ProposeConfChange(1, Change(pb::CONF_ADD_VOTER, 4));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kProposalDropped);
  c.Heal();
  c.TickAll(3);
  EXPECT_TRUE(c.ProposeConfChange(1, Change(pb::CONF_ADD_VOTER, 4)).ok());
}

TEST(RaftMembership, ALearnerIsPromotedOnlyOnceItHasCaughtUp) {
  Cluster c(3, [](Config& cfg) { cfg.learner_catchup_entries_max = 5; });
  c.ElectLeader(1);
  c.AddMember(4);
  c.Isolate(4);
  ASSERT_TRUE(c.ProposeConfChange(1, Change(pb::CONF_ADD_LEARNER, 4)).ok());
  c.Stabilize();
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(c.Propose(1, "p" + std::to_string(i)).ok());
  c.Stabilize();
  auto refused = c.ProposeConfChange(1, Change(pb::CONF_ADD_VOTER, 4));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kProposalDropped);

  c.Heal();
  c.TickAll(3);
  ASSERT_EQ(c.LastIndexOf(4), c.LastIndexOf(1));
  ASSERT_TRUE(c.ProposeConfChange(1, Change(pb::CONF_ADD_VOTER, 4)).ok());
  c.Stabilize();
  for (NodeId id = 1; id <= 4; ++id) {
    EXPECT_EQ(VotersOf(c, id), (std::vector<NodeId>{1, 2, 3, 4})) << "member " << id;
    EXPECT_TRUE(LearnersOf(c, id).empty());
  }
}

// A member added to a running cluster starts with no configuration and must learn the
// whole membership, not only the changes made since the cluster began: otherwise, made a
// voter, it would believe itself the only one and elect itself alone.
TEST(RaftMembership, AMemberAddedToARunningClusterLearnsTheWholeMembership) {
  Cluster c(3);
  c.ElectLeader(1);
  c.AddMember(4);
  ASSERT_TRUE(c.ProposeConfChange(1, Change(pb::CONF_ADD_VOTER, 4)).ok());
  c.Stabilize();
  EXPECT_EQ(VotersOf(c, 4), (std::vector<NodeId>{1, 2, 3, 4}));
  EXPECT_EQ(c.node(4).conf.voters_size(), 4) << "its state machine's membership";
  c.Isolate(4);
  for (int i = 0; i < 100; ++i) {
    c.Tick(4);
    c.Stabilize();
    ASSERT_NE(c.RoleOf(4), Role::kLeader) << "member 4 elected itself alone";
  }
}

// The usual way to build a cluster: start one server, then add the others one by one.
TEST(RaftMembership, ASingleServerClusterGrowsOneServerAtATime) {
  Cluster c(1);
  c.ElectLeader(1);
  ASSERT_TRUE(c.Propose(1, "a").ok());
  c.Stabilize();
  for (NodeId id : {2, 3}) {
    c.AddMember(id);
    ASSERT_TRUE(c.ProposeConfChange(1, Change(pb::CONF_ADD_VOTER, id)).ok());
    c.Stabilize();
  }
  for (NodeId id = 1; id <= 3; ++id) {
    EXPECT_EQ(VotersOf(c, id), (std::vector<NodeId>{1, 2, 3})) << "member " << id;
    EXPECT_EQ(c.node(id).state, "a;") << "member " << id;
  }
  // Three voters now: the leader can fail.
  c.Crash(1);
  for (int i = 0; i < 100 && (c.Leader() == kNoNode || c.Leader() == 1); ++i) c.TickAll();
  const NodeId leader = c.Leader();
  ASSERT_TRUE(leader == 2 || leader == 3);
  ASSERT_TRUE(c.Propose(leader, "b").ok());
  c.Stabilize();
  EXPECT_EQ(c.node(leader == 2 ? 3 : 2).state, "a;b;");
}

// Adding a voter grows the majority: three of four.
TEST(RaftMembership, AddingAVoterGrowsTheMajority) {
  Cluster c(3);
  c.ElectLeader(1);
  c.AddMember(4);
  ASSERT_TRUE(c.ProposeConfChange(1, Change(pb::CONF_ADD_VOTER, 4)).ok());
  c.Stabilize();
  EXPECT_EQ(VotersOf(c, 4), (std::vector<NodeId>{1, 2, 3, 4}));
  const LogIndex commit = c.CommitOf(1);
  c.Isolate(3);
  c.Isolate(4);
  ASSERT_TRUE(c.Propose(1, "x").ok());
  c.Stabilize();
  EXPECT_EQ(c.CommitOf(1), commit) << "two of four is not a majority";
  c.Heal();
  c.TickAll(2);
  EXPECT_EQ(c.CommitOf(1), commit + 1);
  EXPECT_EQ(c.node(4).state, "x;");
}

// Removing a voter shrinks the majority: two of two.
TEST(RaftMembership, RemovingAVoterShrinksTheMajority) {
  Cluster c(3);
  c.ElectLeader(1);
  ASSERT_TRUE(c.ProposeConfChange(1, Change(pb::CONF_REMOVE, 3)).ok());
  c.Stabilize();
  EXPECT_EQ(VotersOf(c, 1), (std::vector<NodeId>{1, 2}));
  EXPECT_EQ(VotersOf(c, 2), (std::vector<NodeId>{1, 2}));
  EXPECT_EQ(c.GetStatus(1).peers.count(3), 0u) << "the leader still tracks member 3";
  c.Crash(3);
  ASSERT_TRUE(c.Propose(1, "x").ok());
  c.Stabilize();
  EXPECT_EQ(c.node(2).state, "x;");
  c.Crash(2);
  ASSERT_TRUE(c.Propose(1, "y").ok());
  c.Stabilize();
  EXPECT_EQ(c.node(1).state, "x;") << "one of two is not a majority";
}

// Thesis §4.2.3: a removed server that never learns of its removal times out and
// campaigns; with pre-vote and leader stickiness it cannot disrupt the cluster.
TEST(RaftMembership, ARemovedMemberCannotDisruptTheCluster) {
  Cluster c(3);
  c.ElectLeader(1);
  c.DropIf(Is(pb::MSG_APPEND, 1, 3));  // member 3 never hears of its removal
  ASSERT_TRUE(c.ProposeConfChange(1, Change(pb::CONF_REMOVE, 3)).ok());
  c.Stabilize();
  c.Heal();
  const Term term = c.TermOf(1);
  c.TickAll(100);
  EXPECT_EQ(c.Leader(), 1u);
  EXPECT_EQ(c.TermOf(1), term);
  EXPECT_FALSE(c.Sent(pb::MSG_PRE_VOTE, 3).empty()) << "member 3 did try";
}

// Thesis §4.1: "a server always uses the latest configuration in its log, regardless of
// whether the entry is committed."
TEST(RaftMembership, AConfigurationTakesEffectWhenAppendedNotWhenCommitted) {
  Cluster c(3);
  c.ElectLeader(1);
  c.AddMember(4);
  c.Isolate(3);
  c.Isolate(4);
  ASSERT_TRUE(c.ProposeConfChange(1, Change(pb::CONF_ADD_VOTER, 4)).ok());
  EXPECT_EQ(VotersOf(c, 1), (std::vector<NodeId>{1, 2, 3, 4})) << "on the leader, at once";
  c.Stabilize();
  EXPECT_EQ(VotersOf(c, 2), (std::vector<NodeId>{1, 2, 3, 4})) << "on a follower, on append";
  EXPECT_EQ(c.CommitOf(1), 1u) << "two of four: not committed";
}

// ... and a configuration entry that is overwritten is forgotten with it.
TEST(RaftMembership, AnOverwrittenConfigurationEntryIsForgotten) {
  std::vector<pb::Entry> follower_log = test::Log({1, 1});
  pb::Entry conf = test::MakeEntry(3, 1, Change(pb::CONF_ADD_VOTER, 4).SerializeAsString());
  conf.set_type(pb::ENTRY_CONF_CHANGE);
  follower_log.push_back(conf);
  Cluster c(3, [](Config& cfg) { cfg.pre_vote = false; });
  c.StartWithLog(1, {1, 2, 3}, test::Log({1, 1, 2}), 2, kNoNode, 2);
  c.StartWithLog(2, {1, 2, 3}, follower_log, 2, kNoNode, 2);
  c.StartWithLog(3, {1, 2, 3}, test::Log({1, 1, 2}), 2, kNoNode, 2);
  ASSERT_EQ(VotersOf(c, 2), (std::vector<NodeId>{1, 2, 3, 4}));
  c.ElectLeader(1);
  EXPECT_EQ(c.DurableTerms(2), (std::vector<Term>{1, 1, 2, 3}));
  EXPECT_EQ(VotersOf(c, 2), (std::vector<NodeId>{1, 2, 3}));
}

// Thesis §4.3: "the leader waits for the configuration change entry to be committed
// before beginning the next change": one change at a time.
TEST(RaftMembership, OnlyOneChangeIsInProgressAtATime) {
  Cluster c(3);
  c.ElectLeader(1);
  c.AddMember(4);
  c.AddMember(5);
  ASSERT_TRUE(c.ProposeConfChange(1, Change(pb::CONF_ADD_LEARNER, 4)).ok());
  auto second = c.ProposeConfChange(1, Change(pb::CONF_ADD_LEARNER, 5));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kProposalDropped);
  c.Stabilize();
  EXPECT_TRUE(c.ProposeConfChange(1, Change(pb::CONF_ADD_LEARNER, 5)).ok());
  c.Stabilize();
  EXPECT_EQ(LearnersOf(c, 1), (std::vector<NodeId>{4, 5}));
}

// The single-server change bug (Ongaro, raft-dev, 2015): "a leader may not append a new
// configuration entry until it has committed an entry from its current term."
TEST(RaftMembership, ANewLeaderRefusesAChangeBeforeCommittingAnEntryOfItsTerm) {
  Cluster c(3);
  c.DropIf(Is(pb::MSG_APPEND_RESPONSE, kNoNode, 1));
  c.ElectLeader(1);
  c.AddMember(4);
  auto early = c.ProposeConfChange(1, Change(pb::CONF_ADD_VOTER, 4));
  ASSERT_FALSE(early.ok());
  EXPECT_EQ(early.status().code(), Code::kProposalDropped);
  c.Heal();
  c.TickAll(1);
  ASSERT_EQ(c.CommitOf(1), 1u);
  EXPECT_TRUE(c.ProposeConfChange(1, Change(pb::CONF_ADD_VOTER, 4)).ok());
}

// Thesis §4.2.2: "the leader steps down once the Cnew entry is committed. [...] it
// does not count itself in majorities."
TEST(RaftMembership, ALeaderThatRemovesItselfStepsDownOnceTheChangeCommits) {
  Cluster c(3);
  c.ElectLeader(1);
  // Not counting itself, the leader needs both others to commit its removal.
  c.Isolate(3);
  ASSERT_TRUE(c.ProposeConfChange(1, Change(pb::CONF_REMOVE, 1)).ok());
  c.Stabilize();
  c.TickAll(3);
  EXPECT_EQ(c.RoleOf(1), Role::kLeader) << "committed by the leader and member 2 alone";
  EXPECT_EQ(c.CommitOf(1), 1u);

  c.Heal();
  c.TickAll(1);
  EXPECT_EQ(c.CommitOf(1), 2u);
  EXPECT_EQ(c.RoleOf(1), Role::kFollower);
  EXPECT_EQ(c.CommitOf(2), 2u) << "the others learnt that the change committed";
  EXPECT_EQ(c.CommitOf(3), 2u);
  EXPECT_EQ(VotersOf(c, 2), (std::vector<NodeId>{2, 3}));

  // The others elect a leader among themselves; the old one never campaigns again.
  c.ClearSent();
  for (int i = 0; i < 100 && (c.Leader() == kNoNode || c.Leader() == 1); ++i) c.TickAll();
  const NodeId leader = c.Leader();
  ASSERT_TRUE(leader == 2 || leader == 3);
  ASSERT_TRUE(c.Propose(leader, "x").ok());
  c.TickAll(50);
  EXPECT_EQ(c.Leader(), leader);
  EXPECT_TRUE(c.Sent(pb::MSG_PRE_VOTE, 1).empty());
  EXPECT_TRUE(c.Sent(pb::MSG_VOTE, 1).empty());
  EXPECT_EQ(c.node(leader == 2 ? 3 : 2).state, "x;");
}

TEST(RaftMembership, InvalidChangesAreRefused) {
  Cluster c(3);
  c.ElectLeader(1);
  EXPECT_EQ(c.ProposeConfChange(1, Change(pb::CONF_ADD_VOTER, 2)).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(c.ProposeConfChange(1, Change(pb::CONF_ADD_LEARNER, 2)).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(c.ProposeConfChange(1, Change(pb::CONF_REMOVE, 9)).status().code(), Code::kNotFound);
  EXPECT_EQ(c.ProposeConfChange(1, Change(pb::CONF_ADD_VOTER, kNoNode)).status().code(),
            Code::kInvalidArgument);
}

}  // namespace
}  // namespace synod::consensus::raft
