// Leader election (§5.2, §5.4.1), pre-vote (thesis §9.6) and check-quorum (thesis §6.2),
// as scenarios named after the sentences of the paper and thesis they check.
#include <set>

#include "consensus/raft/raft_test_harness.h"

namespace synod::consensus::raft {
namespace {

using test::Cluster;
using test::Is;

void NoPreVote(Config& c) { c.pre_vote = false; }

pb::Message VoteRequest(pb::MessageType type, NodeId from, NodeId to, Term term,
                        LogIndex last_index, Term last_term) {
  pb::Message m;
  m.set_type(type);
  m.set_from(from);
  m.set_to(to);
  m.set_term(term);
  m.set_index(last_index);
  m.set_log_term(last_term);
  return m;
}

// The vote responses `voter` sends in its next Ready.
std::vector<pb::Message> AnswersOf(Cluster& c, NodeId voter, pb::MessageType type) {
  c.ClearSent();
  c.Process(voter);
  c.InFlight().clear();
  return c.Sent(type, voter);
}

// §5.2: "If a follower receives no communication over a period of time called the
// election timeout, then it assumes there is no viable leader and begins an election."
// §5.2: "election timeouts are chosen randomly from a fixed interval".
TEST(RaftElection, AFollowerThatHearsNothingForItsRandomizedTimeoutBeginsAnElection) {
  Cluster c(5, NoPreVote);
  std::set<int> timeouts;
  for (NodeId id = 1; id <= 5; ++id) {
    const int timeout = RaftTestPeer::RandomizedElectionTicks(c.raft(id));
    EXPECT_GE(timeout, 10);
    EXPECT_LT(timeout, 20);
    timeouts.insert(timeout);
  }
  EXPECT_GT(timeouts.size(), 1u) << "every member drew the same election timeout";

  const int timeout = RaftTestPeer::RandomizedElectionTicks(c.raft(1));
  c.Tick(1, timeout - 1);
  EXPECT_EQ(c.RoleOf(1), Role::kFollower);
  EXPECT_EQ(c.TermOf(1), 0u);
  c.Tick(1);
  EXPECT_EQ(c.RoleOf(1), Role::kCandidate);
  EXPECT_EQ(c.TermOf(1), 1u);
  // "It then votes for itself and issues RequestVote RPCs in parallel to each of the
  // other servers in the cluster."
  c.Process(1);
  EXPECT_EQ(c.node(1).hard_state.vote(), 1u);
  EXPECT_EQ(c.Sent(pb::MSG_VOTE, 1).size(), 4u);
}

// §5.2: "A candidate wins an election if it receives votes from a majority of the
// servers in the full cluster for the same term."
TEST(RaftElection, ACandidateWithVotesFromAMajorityBecomesLeader) {
  Cluster c(5);
  c.Isolate(4);
  c.Isolate(5);  // three of five is still a majority
  EXPECT_EQ(c.ElectLeader(1), 1u);
  EXPECT_EQ(c.TermOf(1), 1u);
  EXPECT_EQ(c.GetStatus(2).leader, 1u);
  EXPECT_EQ(c.GetStatus(3).leader, 1u);
}

TEST(RaftElection, ACandidateWithoutAMajorityDoesNotBecomeLeader) {
  Cluster c(5, NoPreVote);
  c.Isolate(3);
  c.Isolate(4);
  c.Isolate(5);
  for (int i = 0; i < 100; ++i) {
    c.Tick(1);
    c.Stabilize();
  }
  EXPECT_NE(c.RoleOf(1), Role::kLeader);
  EXPECT_EQ(c.Leader(), kNoNode);
}

// The network may duplicate a message: a vote still counts once per voter.
TEST(RaftElection, ADuplicatedVoteCountsOnce) {
  Cluster c(5, NoPreVote);
  c.Isolate(3);
  c.Isolate(4);
  c.Isolate(5);
  for (int i = 0; i < 40 && c.RoleOf(1) != Role::kCandidate; ++i) c.Tick(1);
  c.Stabilize();  // member 2 grants its vote
  ASSERT_EQ(c.RoleOf(1), Role::kCandidate);
  const auto grants = c.Sent(pb::MSG_VOTE_RESPONSE, 2, 1);
  ASSERT_EQ(grants.size(), 1u);
  ASSERT_FALSE(grants[0].reject());
  c.InFlight().push_back(grants[0]);
  c.InFlight().push_back(grants[0]);
  c.Stabilize();
  EXPECT_EQ(c.RoleOf(1), Role::kCandidate) << "two of five votes made it leader";
}

// A single-server cluster is its own majority.
TEST(RaftElection, ASingleServerClusterElectsItself) {
  Cluster c(1);
  EXPECT_EQ(c.ElectLeader(1), 1u);
  EXPECT_EQ(c.TermOf(1), 1u);
  EXPECT_EQ(c.CommitOf(1), 1u);  // its no-op, counted by itself alone
}

// §5.2: "Each server will vote for at most one candidate in a given term, on a
// first-come-first-served basis."
TEST(RaftElection, EachServerVotesForAtMostOneCandidateInAGivenTerm) {
  Cluster c(3, NoPreVote);
  ASSERT_TRUE(c.raft(3).Step(VoteRequest(pb::MSG_VOTE, 1, 3, 1, 0, 0)).ok());
  auto answers = AnswersOf(c, 3, pb::MSG_VOTE_RESPONSE);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_FALSE(answers[0].reject());
  EXPECT_EQ(c.node(3).hard_state.vote(), 1u);  // the vote is on disk

  ASSERT_TRUE(c.raft(3).Step(VoteRequest(pb::MSG_VOTE, 2, 3, 1, 0, 0)).ok());
  answers = AnswersOf(c, 3, pb::MSG_VOTE_RESPONSE);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_TRUE(answers[0].reject()) << "a second vote in term 1";

  // A repeated request from the candidate it voted for is answered again (the first
  // answer may have been lost).
  ASSERT_TRUE(c.raft(3).Step(VoteRequest(pb::MSG_VOTE, 1, 3, 1, 0, 0)).ok());
  answers = AnswersOf(c, 3, pb::MSG_VOTE_RESPONSE);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_FALSE(answers[0].reject());

  // The vote survives a crash: after restarting, member 3 still refuses member 2.
  c.Crash(3);
  c.Restart(3);
  ASSERT_TRUE(c.raft(3).Step(VoteRequest(pb::MSG_VOTE, 2, 3, 1, 0, 0)).ok());
  answers = AnswersOf(c, 3, pb::MSG_VOTE_RESPONSE);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_TRUE(answers[0].reject()) << "forgot its vote on restart";
}

// §5.4.1: "The voter denies its vote if its own log is more up-to-date than that of
// the candidate. [...] If the logs have last entries with different terms, then the log
// with the later term is more up-to-date. If the logs end with the same term, then
// whichever log is longer is more up-to-date."
TEST(RaftElection, AVoterDeniesItsVoteToACandidateWhoseLogIsLessUpToDate) {
  Cluster c(3, NoPreVote);
  c.StartWithLog(3, {1, 2, 3}, test::Log({1, 2}), /*term=*/2);
  struct Case {
    Term term;
    NodeId candidate;
    LogIndex last_index;
    Term last_term;
    bool granted;
  };
  const Case cases[] = {
      {3, 1, 2, 1, false},  // same length, earlier last term
      {4, 1, 1, 2, false},  // same last term, shorter
      {5, 2, 9, 1, false},  // much longer, but an earlier last term
      {6, 2, 2, 2, true},   // identical
      {7, 1, 1, 3, true},   // shorter, but a later last term
  };
  for (const Case& k : cases) {
    ASSERT_TRUE(
        c.raft(3)
            .Step(VoteRequest(pb::MSG_VOTE, k.candidate, 3, k.term, k.last_index, k.last_term))
            .ok());
    auto answers = AnswersOf(c, 3, pb::MSG_VOTE_RESPONSE);
    ASSERT_EQ(answers.size(), 1u) << "term " << k.term;
    EXPECT_EQ(!answers[0].reject(), k.granted) << "term " << k.term;
    EXPECT_EQ(c.TermOf(3), k.term) << "a vote request of a later term raises ours";
  }
}

// The same rule, seen from the cluster: a member missing a committed entry cannot win.
TEST(RaftElection, AMemberMissingCommittedEntriesCannotBeElected) {
  // Without check-quorum, so that member 2 answers at once rather than ignoring a
  // request that arrives while it still trusts the crashed leader.
  Cluster c(3, [](Config& cfg) {
    cfg.pre_vote = false;
    cfg.check_quorum = false;
  });
  c.ElectLeader(1);
  c.Isolate(3);
  ASSERT_TRUE(c.Propose(1, "x").ok());
  c.Stabilize();
  ASSERT_EQ(c.CommitOf(1), 2u);
  c.Heal();
  c.Crash(1);
  // Member 3 times out first, but member 2 holds entry 2 and refuses it.
  for (int i = 0; i < 40 && c.RoleOf(3) != Role::kCandidate; ++i) c.Tick(3);
  c.Stabilize();
  EXPECT_NE(c.RoleOf(3), Role::kLeader);
  // Member 2, which has the entry, is elected when it times out.
  c.ElectLeader(2);
  EXPECT_EQ(c.node(2).state, "x;");
}

// §5.2: "Raft uses randomized election timeouts to ensure that split votes are rare and
// that they are resolved quickly."
TEST(RaftElection, ASplitVoteIsResolvedByRandomizedTimeouts) {
  Cluster c(4, NoPreVote);
  // Members 1 and 2 time out together and campaign in term 1.
  for (int i = 0; i < 40 && c.RoleOf(1) != Role::kCandidate; ++i) c.Tick(1);
  for (int i = 0; i < 40 && c.RoleOf(2) != Role::kCandidate; ++i) c.Tick(2);
  ASSERT_EQ(c.TermOf(1), 1u);
  ASSERT_EQ(c.TermOf(2), 1u);
  // Member 3 hears from 1 first, member 4 from 2: two votes each, no majority of four.
  c.DropIf(Is(pb::MSG_VOTE, 1, 4));
  c.DropIf(Is(pb::MSG_VOTE, 2, 3));
  c.Stabilize();
  EXPECT_EQ(c.Leader(), kNoNode);
  EXPECT_EQ(c.node(3).hard_state.vote(), 1u);
  EXPECT_EQ(c.node(4).hard_state.vote(), 2u);

  // With the network whole, whoever times out first next wins a later term.
  c.Heal();
  for (int i = 0; i < 100 && c.Leader() == kNoNode; ++i) c.TickAll();
  const NodeId leader = c.Leader();
  ASSERT_NE(leader, kNoNode);
  EXPECT_GE(c.TermOf(leader), 2u);
  for (NodeId id = 1; id <= 4; ++id) EXPECT_EQ(c.GetStatus(id).leader, leader);
}

// §5.2: "If the leader [...] term is at least as large as the candidate's current term,
// then the candidate recognizes the leader as legitimate and returns to follower state."
TEST(RaftElection, ACandidateThatHearsFromALeaderOfItsTermReturnsToFollower) {
  Cluster c(3, NoPreVote);
  c.ElectLeader(1);
  c.Isolate(3);
  for (int i = 0; i < 40 && c.RoleOf(3) != Role::kCandidate; ++i) c.Tick(3);
  ASSERT_EQ(c.RoleOf(3), Role::kCandidate);
  // Member 3 is now a candidate of term 2; the others elect 2 in term 2 meanwhile...
  c.Stabilize();
  c.Crash(1);
  for (int i = 0; i < 40 && c.RoleOf(2) != Role::kCandidate; ++i) c.Tick(2);
  ASSERT_EQ(c.TermOf(2), 2u);
  c.Restart(1);
  c.Stabilize();
  ASSERT_EQ(c.RoleOf(2), Role::kLeader);
  // ...and once the partition heals, member 3 hears from leader 2 and follows it.
  c.Heal();
  c.TickAll();
  EXPECT_EQ(c.RoleOf(3), Role::kFollower);
  EXPECT_EQ(c.GetStatus(3).leader, 2u);
  EXPECT_EQ(c.TermOf(3), 2u);
}

// §5.1: "If a candidate or leader discovers that its term is out of date, it
// immediately reverts to follower state. If a server receives a request with a stale
// term number, it rejects the request."
TEST(RaftElection, ALeaderThatDiscoversALaterTermRevertsToFollower) {
  Cluster c(3);
  c.ElectLeader(1);
  pb::Message m;
  m.set_type(pb::MSG_HEARTBEAT_RESPONSE);
  m.set_from(2);
  m.set_to(1);
  m.set_term(7);
  ASSERT_TRUE(c.raft(1).Step(m).ok());
  EXPECT_EQ(c.RoleOf(1), Role::kFollower);
  EXPECT_EQ(c.TermOf(1), 7u);
  c.Process(1);
  EXPECT_EQ(c.node(1).hard_state.term(), 7u);
}

TEST(RaftElection, AServerRejectsARequestWithAStaleTerm) {
  Cluster c(3, [](Config& cfg) { cfg.check_quorum = false; });
  c.ElectLeader(1);
  c.Crash(1);
  c.ElectLeader(2);  // term 2
  c.Restart(1);      // still believes term 1; its append must not be accepted
  pb::Message stale;
  stale.set_type(pb::MSG_APPEND);
  stale.set_from(1);
  stale.set_to(3);
  stale.set_term(1);
  stale.set_index(1);
  stale.set_log_term(1);
  *stale.add_entries() = test::MakeEntry(2, 1, "stale");
  c.ClearSent();
  ASSERT_TRUE(c.raft(3).Step(stale).ok());
  c.Process(3);
  EXPECT_EQ(c.LastIndexOf(3), 2u) << "only the no-op of term 2";
  EXPECT_EQ(c.DurableTerms(3), (std::vector<Term>{1, 2}));
  const auto answers = c.Sent(pb::MSG_APPEND_RESPONSE, 3, 1);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].term(), 2u) << "the stale leader is told the current term";
  c.Deliver();
  EXPECT_EQ(c.TermOf(1), 2u);
}

// After the leader fails, the others elect one of themselves and the old leader, on
// restarting, follows the new one.
TEST(RaftElection, WhenTheLeaderCrashesTheOthersElectANewOne) {
  Cluster c(3);
  c.ElectLeader(1);
  ASSERT_TRUE(c.Propose(1, "a").ok());
  c.Stabilize();
  c.Crash(1);
  for (int i = 0; i < 100 && c.Leader() == kNoNode; ++i) c.TickAll();
  const NodeId leader = c.Leader();
  ASSERT_TRUE(leader == 2 || leader == 3);
  EXPECT_EQ(c.TermOf(leader), 2u);
  ASSERT_TRUE(c.Propose(leader, "b").ok());
  c.Stabilize();
  c.Restart(1);
  c.TickAll(2);
  EXPECT_EQ(c.RoleOf(1), Role::kFollower);
  EXPECT_EQ(c.GetStatus(1).leader, leader);
  EXPECT_EQ(c.node(1).state, "a;b;");
}

// ---------------------------------------------------------------------------------
// Pre-vote (thesis §9.6): "a candidate would first ask other servers whether its log
// was up-to-date enough to get their vote. Only if the candidate believed it could get
// votes from a majority of the cluster would it increment its term and start a normal
// election."

TEST(RaftPreVote, APartitionedMembersPreVoteFailsAndItsTermDoesNotRise) {
  Cluster c(3);
  c.ElectLeader(1);
  const Term term = c.TermOf(1);
  c.Isolate(3);
  for (int i = 0; i < 100; ++i) {
    c.TickAll();
    EXPECT_NE(c.RoleOf(3), Role::kCandidate);
    EXPECT_NE(c.RoleOf(3), Role::kLeader);
  }
  EXPECT_EQ(c.TermOf(3), term);
  EXPECT_EQ(c.node(3).hard_state.term(), term);
  EXPECT_FALSE(c.Sent(pb::MSG_PRE_VOTE, 3).empty()) << "it did try";
  EXPECT_TRUE(c.Sent(pb::MSG_VOTE, 3).empty());
}

TEST(RaftPreVote, OnRejoiningAPartitionedMemberDoesNotDeposeTheLeader) {
  Cluster c(3);
  c.ElectLeader(1);
  const Term term = c.TermOf(1);
  c.Isolate(3);
  c.TickAll(100);
  c.Heal();
  c.TickAll(30);
  EXPECT_EQ(c.Leader(), 1u);
  EXPECT_EQ(c.TermOf(1), term);
  EXPECT_EQ(c.RoleOf(3), Role::kFollower);
  EXPECT_EQ(c.GetStatus(3).leader, 1u);
  EXPECT_EQ(c.TermOf(3), term);
}

// The contrast: without pre-vote, the returning member's inflated term deposes the leader.
TEST(RaftPreVote, WithoutPreVoteARejoiningMemberDisruptsTheCluster) {
  Cluster c(3, NoPreVote);
  c.ElectLeader(1);
  const Term term = c.TermOf(1);
  c.Isolate(3);
  c.TickAll(100);
  EXPECT_GT(c.TermOf(3), term + 2);
  c.Heal();
  c.TickAll(1);
  EXPECT_GT(c.TermOf(1), term) << "the leader learnt the higher term and stepped down";
}

// A pre-vote needs the same majority as a vote: a member whose pre-vote succeeds goes
// on to a real election and wins it.
TEST(RaftPreVote, ASuccessfulPreVoteIsFollowedByARealElection) {
  Cluster c(3);
  for (int i = 0; i < 40 && c.RoleOf(1) == Role::kFollower; ++i) c.Tick(1);
  EXPECT_EQ(c.RoleOf(1), Role::kPreCandidate);
  EXPECT_EQ(c.TermOf(1), 0u) << "a pre-candidate does not raise its term";
  c.Process(1);
  const auto pre_votes = c.Sent(pb::MSG_PRE_VOTE, 1);
  ASSERT_EQ(pre_votes.size(), 2u);
  EXPECT_EQ(pre_votes[0].term(), 1u) << "a pre-vote asks about the next term";
  EXPECT_EQ(c.node(1).hard_state.vote(), 0u) << "nor votes for itself";
  c.Stabilize();
  EXPECT_EQ(c.RoleOf(1), Role::kLeader);
  EXPECT_EQ(c.TermOf(1), 1u);
  EXPECT_EQ(c.TermOf(2), 1u);
}

// ---------------------------------------------------------------------------------
// Check-quorum (thesis §6.2): "a leader steps down if an election timeout elapses
// without a successful round of heartbeats to a majority of its cluster".

TEST(RaftCheckQuorum, ALeaderCutOffFromAQuorumStepsDown) {
  Cluster c(3);
  c.ElectLeader(1);
  c.Isolate(1);
  // The leader checks its quorum once per election timeout; the round in progress when
  // the partition began may still count the acknowledgements from before it, so the
  // leader steps down at the end of the following round, at the latest.
  int ticks = 0;
  while (c.RoleOf(1) == Role::kLeader && ticks < 100) {
    c.TickAll();
    ++ticks;
  }
  EXPECT_EQ(c.RoleOf(1), Role::kFollower);
  EXPECT_LE(ticks, 2 * 10);
  EXPECT_GE(ticks, 10) << "stepped down before a whole election timeout passed";
  // And, cut off, it cannot become leader again.
  c.TickAll(100);
  EXPECT_NE(c.RoleOf(1), Role::kLeader);
}

TEST(RaftCheckQuorum, ALeaderThatHearsFromAQuorumStaysLeader) {
  Cluster c(5);
  c.ElectLeader(1);
  c.Isolate(4);
  c.Isolate(5);
  c.TickAll(200);
  EXPECT_EQ(c.Leader(), 1u);
  EXPECT_EQ(c.TermOf(1), 1u);
}

// Thesis §4.2.3: "if a server receives a RequestVote request within the minimum election
// timeout of hearing from a current leader, it does not update its term or grant its
// vote."
TEST(RaftCheckQuorum, FollowersWithALiveLeaderIgnoreVoteRequests) {
  Cluster c(3, NoPreVote);
  c.ElectLeader(1);
  const Term term = c.TermOf(2);
  const LogIndex last = c.LastIndexOf(2);

  for (pb::MessageType type : {pb::MSG_VOTE, pb::MSG_PRE_VOTE}) {
    ASSERT_TRUE(c.raft(2).Step(VoteRequest(type, 3, 2, term + 1, last, term)).ok());
    EXPECT_TRUE(AnswersOf(c, 2, pb::MSG_VOTE_RESPONSE).empty());
    EXPECT_EQ(c.TermOf(2), term) << "the request raised the term";
    EXPECT_EQ(c.GetStatus(2).leader, 1u);
  }

  // Once the leader has been silent for an election timeout, the request is granted.
  // (Member 2 may have begun its own election meanwhile: ask in the term after it.)
  c.Isolate(1);
  c.Tick(2, 10);
  c.Process(2);
  const Term later = c.TermOf(2) + 1;
  ASSERT_TRUE(c.raft(2).Step(VoteRequest(pb::MSG_VOTE, 3, 2, later, last, term)).ok());
  auto answers = AnswersOf(c, 2, pb::MSG_VOTE_RESPONSE);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_FALSE(answers[0].reject());
  EXPECT_EQ(c.TermOf(2), later);
}

}  // namespace
}  // namespace synod::consensus::raft
