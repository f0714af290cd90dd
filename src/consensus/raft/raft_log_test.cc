#include "consensus/raft/raft_log.h"

#include <gtest/gtest.h>

namespace synod::consensus::raft {
namespace {

pb::Entry E(LogIndex index, Term term) {
  pb::Entry e;
  e.set_index(index);
  e.set_term(term);
  return e;
}

TEST(RaftLog, StartsFromTheDurableState) {
  DurableState d;
  d.entries = {E(1, 1), E(2, 1), E(3, 2)};
  d.hard_state.set_commit(2);
  RaftLog log(d);
  EXPECT_EQ(log.LastIndex(), 3u);
  EXPECT_EQ(log.LastTerm(), 2u);
  EXPECT_EQ(log.Committed(), 2u);
  EXPECT_EQ(log.StableIndex(), 3u);
  EXPECT_FALSE(log.HasUnstable());
}

TEST(RaftLog, AConflictingEntryTruncatesTheSuffix) {
  DurableState d;
  d.entries = {E(1, 1), E(2, 1), E(3, 1)};
  RaftLog log(d);
  pb::Entry a = E(2, 2), b = E(3, 2), c = E(4, 2);
  auto truncated = log.AppendFromLeader({&a, &b, &c});
  ASSERT_TRUE(truncated.has_value());
  EXPECT_EQ(*truncated, 2u);
  EXPECT_EQ(log.LastIndex(), 4u);
  EXPECT_EQ(log.TermAt(2), 2u);
  EXPECT_EQ(log.StableIndex(), 1u);  // the durable suffix was replaced
  auto unstable = log.TakeUnstable();
  ASSERT_EQ(unstable.size(), 3u);
  EXPECT_EQ(unstable.front().index(), 2u);
}

TEST(RaftLog, EntriesAlreadyPresentAreNotRewritten) {
  DurableState d;
  d.entries = {E(1, 1), E(2, 1)};
  RaftLog log(d);
  pb::Entry a = E(1, 1), b = E(2, 1);
  EXPECT_FALSE(log.AppendFromLeader({&a, &b}).has_value());
  EXPECT_FALSE(log.HasUnstable());
}

TEST(RaftLog, FindConflictByTermSkipsWholeTerms) {
  DurableState d;
  d.entries = {E(1, 1), E(2, 1), E(3, 3), E(4, 3), E(5, 3)};
  RaftLog log(d);
  EXPECT_EQ(log.FindConflictByTerm(5, 2), 2u);
  EXPECT_EQ(log.FindConflictByTerm(5, 3), 5u);
  EXPECT_EQ(log.FindConflictByTerm(5, 0), 0u);
}

TEST(RaftLog, UpToDateComparesLastTermThenLength) {
  DurableState d;
  d.entries = {E(1, 1), E(2, 2)};
  RaftLog log(d);
  EXPECT_TRUE(log.IsUpToDate(1, 3));
  EXPECT_TRUE(log.IsUpToDate(2, 2));
  EXPECT_FALSE(log.IsUpToDate(1, 2));
  EXPECT_FALSE(log.IsUpToDate(9, 1));
}

TEST(RaftLog, StableToIgnoresEntriesReplacedMeanwhile) {
  DurableState d;
  RaftLog log(d);
  pb::Entry a = E(1, 1), b = E(2, 1);
  log.AppendFromLeader({&a, &b});
  log.TakeUnstable();  // handed out for persistence...
  pb::Entry c = E(2, 2);
  log.AppendFromLeader({&c});  // ...but replaced before the caller confirmed
  log.StableTo(2, 1);
  EXPECT_EQ(log.StableIndex(), 0u);
  log.StableTo(2, 2);
  EXPECT_EQ(log.StableIndex(), 2u);
}

TEST(RaftLog, CompactionKeepsTheSnapshotTerm) {
  DurableState d;
  d.entries = {E(1, 1), E(2, 1), E(3, 2)};
  d.hard_state.set_commit(3);
  RaftLog log(d);
  log.NextCommittedToApply(1 << 20);
  log.CompactTo(2);
  EXPECT_EQ(log.FirstIndex(), 3u);
  EXPECT_EQ(log.TermAt(2), 1u);
  EXPECT_FALSE(log.TermAt(1).has_value());
  EXPECT_EQ(log.LastIndex(), 3u);
}

// A compaction takes the entries out at once but frees them a step at a time (DroppedEntries):
// the log reads the same, and the entries kept are intact.
TEST(RaftLog, CompactedEntriesAreFreedAStepAtATime) {
  constexpr LogIndex kEntries = 3 * DroppedEntries::kFreePerStep + 10;
  DurableState d;
  for (LogIndex i = 1; i <= kEntries; ++i) {
    d.entries.push_back(E(i, 1));
    d.entries.back().set_data("value " + std::to_string(i));
  }
  d.hard_state.set_commit(kEntries);
  RaftLog log(d);
  log.NextCommittedToApply(UINT64_MAX);
  const LogIndex at = kEntries - 5;  // fewer stay than go: the five kept move
  log.CompactTo(at);
  EXPECT_EQ(log.FirstIndex(), at + 1);
  EXPECT_EQ(log.LastIndex(), kEntries);
  EXPECT_EQ(log.At(at + 1).data(), "value " + std::to_string(at + 1));
  EXPECT_EQ(log.At(kEntries).data(), "value " + std::to_string(kEntries));
  EXPECT_EQ(log.DroppedPending(), kEntries);  // the dropped ones and the husks of the kept
  log.FreeSomeDropped();
  EXPECT_EQ(log.DroppedPending(), kEntries - DroppedEntries::kFreePerStep);
  for (int i = 0; i < 3; ++i) log.FreeSomeDropped();
  EXPECT_EQ(log.DroppedPending(), 0u);
  EXPECT_EQ(log.At(kEntries).data(), "value " + std::to_string(kEntries));
}

TEST(DroppedEntries, TheSmallerSideMovesAndNothingKeptIsLost) {
  for (size_t drop : {size_t{3}, size_t{7}, size_t{10}, size_t{0}, size_t{12}}) {
    std::deque<pb::Entry> entries;
    for (LogIndex i = 1; i <= 10; ++i) {
      entries.push_back(E(i, 1));
      entries.back().set_data(std::string(100, static_cast<char>('a' + i)));
    }
    DroppedEntries dropped;
    dropped.DropFront(entries, drop);
    const size_t gone = std::min<size_t>(drop, 10);
    ASSERT_EQ(entries.size(), 10 - gone) << "dropping " << drop;
    for (size_t k = 0; k < entries.size(); ++k) {
      EXPECT_EQ(entries[k].index(), gone + k + 1);
      EXPECT_EQ(entries[k].data(), std::string(100, static_cast<char>('a' + gone + k + 1)));
    }
    EXPECT_GE(dropped.pending(), gone);
    dropped.FreeSome();
    EXPECT_EQ(dropped.pending(), 0u);
  }
}

}  // namespace
}  // namespace synod::consensus::raft
