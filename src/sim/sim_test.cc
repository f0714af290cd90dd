// The simulator, run from fixed seeds: the engine must show no violation, a run must be
// reproducible from its seed, and every planted bug must be caught by a checker within
// a bounded number of seeds (a checker that never fails proves nothing).
#include <gtest/gtest.h>

#include <string>

#include "sim/simulator.h"

namespace synod::sim {
namespace {

using consensus::PlantedBug;

SimOptions Options(int nodes, uint64_t seed, const std::string& engine = "raft") {
  SimOptions o;
  o.engine = engine;
  o.nodes = nodes;
  o.seed = seed;
  return o;
}

void ExpectNoViolation(int nodes, uint64_t first_seed, int seeds,
                       const std::string& engine = "raft") {
  for (uint64_t seed = first_seed; seed < first_seed + seeds; ++seed) {
    SimResult r = RunSimulation(Options(nodes, seed, engine));
    ASSERT_TRUE(r.ok) << "seed " << seed << ": " << r.violation << "\n"
                      << r.trace_tail << "replay: " << r.replay_command;
    EXPECT_GT(r.stats.ops_ok, 0u);
  }
}

TEST(Simulator, TheSameSeedReplaysTheSameRun) {
  SimResult a = RunSimulation(Options(3, 7));
  SimResult b = RunSimulation(Options(3, 7));
  EXPECT_EQ(a.stats.events, b.stats.events);
  EXPECT_EQ(a.stats.messages_sent, b.stats.messages_sent);
  EXPECT_EQ(a.stats.ops_ok, b.stats.ops_ok);
  EXPECT_EQ(a.trace_tail, b.trace_tail);
  SimResult c = RunSimulation(Options(3, 8));
  EXPECT_NE(a.trace_tail, c.trace_tail);
}

TEST(Simulator, ARunExercisesEveryFault) {
  SimStats total;
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    SimResult r = RunSimulation(Options(5, seed));
    ASSERT_TRUE(r.ok) << r.violation;
    total.crashes += r.stats.crashes;
    total.partitions += r.stats.partitions;
    total.conf_changes += r.stats.conf_changes;
    total.transfers += r.stats.transfers;
    total.snapshots_sent += r.stats.snapshots_sent;
    total.leaders_elected += r.stats.leaders_elected;
    total.ops_timed_out += r.stats.ops_timed_out;
  }
  EXPECT_GT(total.crashes, 0u);
  EXPECT_GT(total.partitions, 0u);
  EXPECT_GT(total.conf_changes, 0u);
  EXPECT_GT(total.transfers, 0u);
  EXPECT_GT(total.snapshots_sent, 0u);
  EXPECT_GT(total.leaders_elected, 10u);
  EXPECT_GT(total.ops_timed_out, 0u);
}

TEST(Simulator, WithoutFaultsEveryOperationCompletes) {
  SimOptions o = Options(3, 3);
  o.faults = FaultSet::None();
  SimResult r = RunSimulation(o);
  ASSERT_TRUE(r.ok) << r.violation;
  EXPECT_EQ(r.stats.ops_timed_out, 0u);
  EXPECT_GT(r.stats.ops_ok, 500u);
  EXPECT_EQ(r.stats.leaders_elected, 1u);
}

TEST(Simulator, RaftThreeNodesFixedSeeds) { ExpectNoViolation(3, 1, 150); }
TEST(Simulator, RaftFiveNodesFixedSeeds) { ExpectNoViolation(5, 1, 80); }
TEST(Simulator, RaftSevenNodesFixedSeeds) { ExpectNoViolation(7, 1, 20); }

TEST(Simulator, MultiPaxosThreeNodesFixedSeeds) { ExpectNoViolation(3, 1, 150, "multi-paxos"); }
TEST(Simulator, MultiPaxosFiveNodesFixedSeeds) { ExpectNoViolation(5, 1, 80, "multi-paxos"); }
TEST(Simulator, MultiPaxosSevenNodesFixedSeeds) { ExpectNoViolation(7, 1, 20, "multi-paxos"); }

TEST(Simulator, MultiPaxosWithoutFaultsEveryOperationCompletes) {
  SimOptions o = Options(3, 3, "multi-paxos");
  o.faults = FaultSet::None();
  SimResult r = RunSimulation(o);
  ASSERT_TRUE(r.ok) << r.violation;
  EXPECT_EQ(r.stats.ops_timed_out, 0u);
  EXPECT_GT(r.stats.ops_ok, 500u);
  EXPECT_EQ(r.stats.leaders_elected, 1u);
}

// Seeds that once failed, kept as regressions (see docs/paxos.md).
TEST(Simulator, MultiPaxosSeedsThatOnceFailed) {
  // 120: a chosen configuration removed the member whose acknowledgement chose it.
  for (uint64_t seed : {120}) ExpectNoViolation(3, seed, 1, "multi-paxos");
}

// Runs seeds until the planted bug is caught; the catching seed must pass without the
// bug, so that it is the bug, not the seed, that the checker objects to.
void ExpectCaught(PlantedBug bug, int nodes, int seeds_max, const std::string& checker,
                  int clients = SimOptions{}.clients, const std::string& engine = "raft") {
  for (uint64_t seed = 1; seed <= static_cast<uint64_t>(seeds_max); ++seed) {
    SimOptions o = Options(nodes, seed, engine);
    o.clients = clients;
    o.planted_bug = bug;
    SimResult r = RunSimulation(o);
    if (r.ok) continue;
    EXPECT_NE(r.violation.find(checker), std::string::npos)
        << "caught by another checker than expected: " << r.violation;
    o.planted_bug = PlantedBug::kNone;
    SimResult clean = RunSimulation(o);
    EXPECT_TRUE(clean.ok) << "seed " << seed << " fails without the bug too: " << clean.violation;
    std::printf("  %s caught at seed %llu: %s\n", consensus::PlantedBugName(bug),
                static_cast<unsigned long long>(seed), r.violation.substr(0, 120).c_str());
    return;
  }
  ADD_FAILURE() << consensus::PlantedBugName(bug) << " not caught within " << seeds_max << " seeds";
}

TEST(PlantedBugs, PlantedBugsAreCompiledIntoThisTest) { EXPECT_TRUE(PlantedBugsCompiledIn()); }

TEST(PlantedBugs, CountingAVoteTwiceIsCaught) {
  // Needs five members: with three, one vote besides one's own is already a majority.
  ExpectCaught(PlantedBug::kCountVoteTwice, 5, 1500, "");
}

TEST(PlantedBugs, AcknowledgingBeforeFsyncIsCaught) {
  ExpectCaught(PlantedBug::kAckBeforeFsync, 3, 1500, "");
}

TEST(PlantedBugs, CommittingAPreviousTermEntryByCountingIsCaught) {
  // Figure 8 needs a leader to die with a tail of uncommitted entries, which many
  // concurrent clients make common.
  ExpectCaught(PlantedBug::kCommitPreviousTerm, 3, 1500, "", /*clients=*/16);
}

TEST(PlantedBugs, ReadingWithoutReadIndexIsCaught) {
  ExpectCaught(PlantedBug::kReadWithoutReadIndex, 3, 1500, "linearizability");
}

TEST(PlantedBugs, MultiPaxosForgettingAPromiseOnRestartIsCaught) {
  ExpectCaught(PlantedBug::kForgetPromiseOnRestart, 3, 300, "", SimOptions{}.clients,
               "multi-paxos");
}

TEST(PlantedBugs, MultiPaxosSkippingRecoveryIsCaught) {
  ExpectCaught(PlantedBug::kSkipRecovery, 3, 300, "", SimOptions{}.clients, "multi-paxos");
}

TEST(PlantedBugs, MultiPaxosReadingWithoutReadIndexIsCaught) {
  // A deposed leader must answer a read after the new one chose a write: many clients
  // make that meeting likely enough.
  ExpectCaught(PlantedBug::kReadWithoutReadIndex, 3, 1500, "linearizability", /*clients=*/16,
               "multi-paxos");
}

TEST(PlantedBugs, MultiPaxosAcknowledgingBeforeFsyncIsCaught) {
  ExpectCaught(PlantedBug::kAckBeforeFsync, 3, 1500, "", SimOptions{}.clients, "multi-paxos");
}

}  // namespace
}  // namespace synod::sim
