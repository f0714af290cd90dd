// Log compaction and InstallSnapshot (§7): the application snapshots, the engine
// discards the log prefix, and a follower too far behind receives the snapshot in
// chunks.
#include <memory>
#include <string>

#include "consensus/raft/raft_test_harness.h"

namespace synod::consensus::raft {
namespace {

using test::Cluster;
using test::Is;

void SmallChunks(Config& cfg) { cfg.snapshot_chunk_bytes = 16; }

// Proposes `n` entries "v00;", "v01;", ... on `leader` and lets the cluster settle.
std::string ProposeValues(Cluster& c, NodeId leader, int n) {
  std::string state;
  for (int i = 0; i < n; ++i) {
    std::string v = "v" + std::to_string(100 + i);
    EXPECT_TRUE(c.Propose(leader, v).ok());
    state += v + ";";
  }
  c.Stabilize();
  return state;
}

// §7: "the leader must occasionally send snapshots to followers that lag behind. This
// happens when the leader has already discarded the next log entry that it needs to
// send to a follower."
TEST(RaftSnapshot, ALaggingFollowerReceivesTheSnapshotInChunksAndCatchesUp) {
  int receivers = 0;  // the chunks go where the caller says (the node runtime: a file)
  Cluster c(3, [&](Config& cfg) {
    SmallChunks(cfg);
    cfg.snapshot_receiver = [&] {
      ++receivers;
      return std::make_unique<InMemorySnapshotReceiver>();
    };
  });
  c.ElectLeader(1);
  c.Isolate(3);
  const std::string state = ProposeValues(c, 1, 20);  // 100 bytes of state
  ASSERT_EQ(c.CommitOf(1), 21u);
  ASSERT_TRUE(c.Compact(1).ok());
  EXPECT_EQ(c.GetStatus(1).first_index, 22u) << "the log before the snapshot is gone";
  EXPECT_TRUE(c.node(1).entries.empty());

  c.Heal();
  c.ClearSent();
  c.TickAll(3);
  const auto chunks = c.Sent(pb::MSG_SNAPSHOT, 1, 3);
  ASSERT_GE(chunks.size(), 7u) << "100 bytes in chunks of 16";
  uint64_t offset = 0;
  for (const auto& m : chunks) {
    EXPECT_LE(m.snapshot_chunk().size(), 16u);
    EXPECT_EQ(m.snapshot_metadata().index(), 21u);
    if (m.snapshot_offset() == offset) offset += m.snapshot_chunk().size();
  }
  EXPECT_EQ(offset, state.size()) << "the chunks did not cover the snapshot in order";
  EXPECT_TRUE(chunks.back().snapshot_done() || offset == state.size());

  // The follower installed the snapshot: its disk, its state machine and its log.
  EXPECT_EQ(c.node(3).snapshot.metadata.index(), 21u);
  EXPECT_EQ(c.node(3).snapshot.ReadAll().value(), state);
  EXPECT_EQ(receivers, 1);
  EXPECT_EQ(c.node(3).state, state);
  EXPECT_EQ(c.GetStatus(3).first_index, 22u);
  EXPECT_EQ(c.GetStatus(3).conf_state.voters_size(), 3);

  // And it follows the log after the snapshot.
  ASSERT_TRUE(c.Propose(1, "after").ok());
  c.Stabilize();
  EXPECT_EQ(c.node(3).state, state + "after;");
  EXPECT_EQ(c.CommitOf(3), 22u);
}

// As etcd does, the leader keeps the last entries before its snapshot for a while
// (Config::catchup_entries): a follower a little behind when the leader compacted
// catches up from the log, without the whole snapshot; one further behind still gets
// the snapshot.
void KeepTen(Config& cfg) { cfg.catchup_entries = 10; }

TEST(RaftSnapshot, AFollowerALittleBehindCatchesUpFromTheEntriesKeptBeforeTheSnapshot) {
  Cluster c(3, KeepTen);
  c.ElectLeader(1);
  std::string state = ProposeValues(c, 1, 15);  // indexes 2..16
  c.Isolate(3);
  state += ProposeValues(c, 1, 5);  // 17..21: member 3 misses them
  ASSERT_EQ(c.CommitOf(1), 21u);
  ASSERT_EQ(c.CommitOf(3), 16u);
  ASSERT_TRUE(c.Compact(1).ok());
  EXPECT_EQ(c.node(1).snapshot.metadata.index(), 21u);
  EXPECT_EQ(c.GetStatus(1).first_index, 12u) << "ten entries kept before the snapshot";

  c.Heal();
  c.ClearSent();
  c.TickAll(3);
  EXPECT_TRUE(c.Sent(pb::MSG_SNAPSHOT, 1, 3).empty()) << "the log had what member 3 needed";
  EXPECT_EQ(c.node(3).state, state);
  EXPECT_EQ(c.CommitOf(3), 21u);
  EXPECT_EQ(c.node(3).snapshot.metadata.index(), 0u);

  // Compacting again at the snapshot held only replaces its data: the kept entries stay.
  pb::SnapshotMetadata at;
  at.set_index(21);
  ASSERT_TRUE(c.raft(1).Compact(Snapshot::InMemory(at, state)).ok());
  EXPECT_EQ(c.GetStatus(1).first_index, 12u);
}

TEST(RaftSnapshot, AFollowerFurtherBehindThanTheKeptEntriesGetsTheSnapshot) {
  Cluster c(3, KeepTen);
  c.ElectLeader(1);
  std::string state = ProposeValues(c, 1, 5);  // 2..6
  c.Isolate(3);
  state += ProposeValues(c, 1, 15);  // 7..21
  ASSERT_TRUE(c.Compact(1).ok());
  ASSERT_EQ(c.GetStatus(1).first_index, 12u);  // member 3 needs 7 onwards

  c.Heal();
  c.ClearSent();
  c.TickAll(3);
  EXPECT_FALSE(c.Sent(pb::MSG_SNAPSHOT, 1, 3).empty());
  EXPECT_EQ(c.node(3).snapshot.metadata.index(), 21u);
  EXPECT_EQ(c.node(3).state, state);
}

TEST(RaftSnapshot, ALostChunkIsSentAgain) {
  Cluster c(3, SmallChunks);
  c.ElectLeader(1);
  c.Isolate(3);
  const std::string state = ProposeValues(c, 1, 20);
  ASSERT_TRUE(c.Compact(1).ok());
  c.Heal();
  // The chunk at offset 32 is lost the first time it is sent.
  auto lost = std::make_shared<int>(0);
  c.DropIf([lost](const pb::Message& m) {
    return m.type() == pb::MSG_SNAPSHOT && m.snapshot_offset() == 32 && (*lost)++ == 0;
  });
  c.ClearSent();
  c.TickAll(5);
  EXPECT_GE(*lost, 2) << "sent once, lost, and sent again";
  EXPECT_EQ(c.node(3).state, state);
  EXPECT_EQ(c.node(3).snapshot.ReadAll().value(), state);
}

// A follower that crashes in the middle of a transfer lost the chunks it had: it asks
// for the snapshot from its first byte again.
TEST(RaftSnapshot, AFollowerThatRestartsMidTransferStartsOver) {
  Cluster c(3, SmallChunks);
  c.ElectLeader(1);
  c.Isolate(3);
  const std::string state = ProposeValues(c, 1, 20);
  ASSERT_TRUE(c.Compact(1).ok());
  c.Heal();
  c.DropIf([](const pb::Message& m) {
    return m.type() == pb::MSG_SNAPSHOT && m.snapshot_offset() >= 48;
  });
  c.TickAll(2);
  ASSERT_EQ(c.node(3).snapshot.metadata.index(), 0u) << "the transfer should be stuck";
  c.Crash(3);
  c.Restart(3);
  c.Heal();
  c.ClearSent();
  c.TickAll(3);
  bool from_the_start = false;
  for (const auto& m : c.Sent(pb::MSG_SNAPSHOT, 1, 3)) from_the_start |= m.snapshot_offset() == 0;
  EXPECT_TRUE(from_the_start) << "the leader did not resend the snapshot from byte 0";
  EXPECT_EQ(c.node(3).state, state);
}

// A member restarts from its snapshot and the durable entries after it.
TEST(RaftSnapshot, AMemberRestartsFromItsSnapshotAndTheEntriesAfterIt) {
  Cluster c(3);
  c.ElectLeader(1);
  const std::string before = ProposeValues(c, 1, 3);
  ASSERT_TRUE(c.Compact(2).ok());
  ASSERT_EQ(c.node(2).snapshot.metadata.index(), 4u);
  const std::string after = ProposeValues(c, 1, 2);

  c.Crash(2);
  c.Restart(2);
  EngineStatus s = c.GetStatus(2);
  EXPECT_EQ(s.first_index, 5u);
  EXPECT_EQ(s.last_index, 6u);
  EXPECT_GE(s.commit, 4u);
  EXPECT_EQ(s.conf_state.voters_size(), 3) << "the membership comes from the snapshot";
  EXPECT_EQ(c.node(2).state, before) << "the state machine restarts from the snapshot";
  c.TickAll(2);
  EXPECT_EQ(c.node(2).state, before + after) << "then re-applies the committed entries";

  // It can lead: it knows the membership and has the whole log.
  ASSERT_TRUE(c.raft(1).TransferLeader(2).ok());
  c.Stabilize();
  EXPECT_EQ(c.Leader(), 2u);
  ASSERT_TRUE(c.Propose(2, "z").ok());
  c.Stabilize();
  EXPECT_EQ(c.node(3).state, before + after + "z;");
}

// A leader that restarts from a snapshot can still bring a lagging member up to date.
TEST(RaftSnapshot, ARestartedLeaderSendsTheSnapshotItRestartedFrom) {
  Cluster c(3, SmallChunks);
  c.ElectLeader(1);
  c.Isolate(3);
  const std::string state = ProposeValues(c, 1, 10);
  ASSERT_TRUE(c.Compact(1).ok());
  ASSERT_TRUE(c.Compact(2).ok());
  c.Crash(1);
  c.Crash(2);
  c.Restart(1);
  c.Restart(2);
  c.ElectLeader(1);
  c.Heal();
  c.TickAll(3);
  EXPECT_EQ(c.node(3).snapshot.ReadAll().value(), state);
  EXPECT_EQ(c.node(3).state, state);
  EXPECT_EQ(c.CommitOf(3), c.CommitOf(1));
}

// A snapshot whose state is not made yet (DeferredSnapshotData: the node runtime makes it
// only when a member needs it) is not sent until Compact gives the same snapshot its state.
TEST(RaftSnapshot, ASnapshotWhoseStateCannotBeReadIsSentOnceCompactGivesItsState) {
  Cluster c(3, SmallChunks);
  c.ElectLeader(1);
  c.Isolate(3);
  const LogIndex behind = c.CommitOf(3);
  const std::string state = ProposeValues(c, 1, 20);
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

  // The same snapshot with its state: only the data changes.
  auto replaced = c.raft(1).Compact(Snapshot::InMemory(at, state));
  ASSERT_TRUE(replaced.ok()) << replaced.status().message();
  EXPECT_EQ(replaced.value().index(), at.index());
  EXPECT_EQ(c.raft(1).LatestSnapshot().ReadAll().value(), state);
  c.TickAll(3);
  EXPECT_FALSE(c.Sent(pb::MSG_SNAPSHOT, 1, 3).empty());
  EXPECT_EQ(c.node(3).state, state);
  EXPECT_EQ(c.CommitOf(3), c.CommitOf(1));

  // Once some of it was sent, its bytes are fixed: a member may be assembling them.
  auto again = c.raft(1).Compact(Snapshot::InMemory(at, "other bytes"));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(c.raft(1).LatestSnapshot().ReadAll().value(), state);
}

TEST(RaftSnapshot, CompactRefusesAnIndexNotYetApplied) {
  Cluster c(3);
  c.ElectLeader(1);
  ProposeValues(c, 1, 2);
  Snapshot snap;
  snap.metadata.set_index(c.node(1).applied + 1);
  auto r = c.raft(1).Compact(snap);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(c.GetStatus(1).first_index, 1u);
}

}  // namespace
}  // namespace synod::consensus::raft
