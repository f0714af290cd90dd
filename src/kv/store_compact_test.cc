// Compaction: the logical rule (reads below the revision fail) and the physical removal in
// bounded steps, concurrent with applies and reads.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "kv/errors.h"
#include "kv/kv_test_util.h"

namespace synod::kv {
namespace {

using Strings = std::vector<std::string>;
const std::string kAll(1, '\0');

// Every versioned key, as (key, value) pairs at each revision 1..Revision().
std::vector<std::pair<int64_t, std::vector<std::string>>> History(Store& store, int64_t from) {
  std::vector<std::pair<int64_t, std::vector<std::string>>> out;
  for (int64_t rev = from; rev <= store.Revision(); ++rev) {
    auto r = Get(store, kAll, kAll, rev);
    std::vector<std::string> kvs;
    for (const auto& kv : r.kvs()) {
      kvs.push_back(kv.key() + "=" + kv.value() + "@" + std::to_string(kv.mod_revision()) + "/" +
                    std::to_string(kv.version()));
    }
    out.emplace_back(rev, kvs);
  }
  return out;
}

// How many entries the backend holds: the history and the revision index shrink.
size_t Runs(Store& store) {
  size_t steps = 0;
  while (true) {
    auto p = store.CompactStep(3);
    EXPECT_TRUE(p.ok());
    ++steps;
    if (!p.ok() || p.value().done) return steps;
  }
}

TEST(KvCompact, ReadsBelowTheCompactionRevisionAreRefused) {
  TestStore s;
  for (int i = 0; i < 5; ++i) s.ApplyOk(PutReq("k", std::to_string(i)));  // revs 2..6
  auto r = s.ApplyOk(CompactReq(4));
  EXPECT_EQ(r.compaction().header().revision(), 6);
  EXPECT_EQ(s->Revision(), 6);  // compaction is not a write
  EXPECT_EQ(s->CompactRevision(), 4);
  auto below = s->Range(RangeReq("k", "", 3).range());
  ASSERT_FALSE(below.ok());
  EXPECT_EQ(below.status().message(), "etcdserver: mvcc: required revision has been compacted");
  EXPECT_EQ(GrpcCodeOf(below.status()), GrpcCode::kOutOfRange);
  EXPECT_EQ(Get(*s, "k", "", 4).kvs(0).value(), "2");  // at the revision itself: fine
  EXPECT_EQ(Get(*s, "k").kvs(0).value(), "4");
}

TEST(KvCompact, CompactingAtOrBelowThePreviousCompactionIsRefused) {
  TestStore s;
  for (int i = 0; i < 5; ++i) s.ApplyOk(PutReq("k", std::to_string(i)));
  s.ApplyOk(CompactReq(4));
  EXPECT_EQ(s.ApplyStatus(CompactReq(4)).message(),
            "etcdserver: mvcc: required revision has been compacted");
  EXPECT_EQ(s.ApplyStatus(CompactReq(3)).message(),
            "etcdserver: mvcc: required revision has been compacted");
  EXPECT_EQ(s.ApplyStatus(CompactReq(7)).message(),
            "etcdserver: mvcc: required revision is a future revision");
  EXPECT_TRUE(s.ApplyStatus(CompactReq(6)).ok());  // the current revision may be compacted
}

TEST(KvCompact, AFreshStoreMayCompactItsFirstRevision) {
  TestStore s;
  EXPECT_EQ(s->CompactRevision(), -1);
  EXPECT_TRUE(s.ApplyStatus(CompactReq(1)).ok());
  EXPECT_EQ(s->CompactRevision(), 1);
}

TEST(KvCompact, PhysicalCompactionKeepsEverythingReadableAtOrAboveTheRevision) {
  TestStore s;
  // A mix: overwritten keys, deleted keys, recreated keys, a key deleted exactly at the
  // compaction revision, keys untouched since early on.
  s.ApplyOk(PutReq("a", "1"));  // 2
  s.ApplyOk(PutReq("b", "1"));  // 3
  s.ApplyOk(PutReq("a", "2"));  // 4
  s.ApplyOk(DelReq("b"));       // 5
  s.ApplyOk(PutReq("c", "1"));  // 6
  s.ApplyOk(PutReq("b", "3"));  // 7
  s.ApplyOk(DelReq("c"));       // 8: compaction revision
  s.ApplyOk(PutReq("a", "3"));  // 9
  s.ApplyOk(PutReq("d", "1"));  // 10
  s.ApplyOk(DelReq("a"));       // 11
  const auto before = History(*s, 8);
  s.ApplyOk(CompactReq(8));
  auto events_before = s->EventsSince(8, kAll, kAll, true, 1000);
  ASSERT_TRUE(events_before.ok());
  EXPECT_TRUE(s->CompactionPending());
  EXPECT_GT(Runs(*s), 2u);  // several bounded steps
  EXPECT_FALSE(s->CompactionPending());
  EXPECT_EQ(History(*s, 8), before);
  auto events_after = s->EventsSince(8, kAll, kAll, true, 1000);
  ASSERT_TRUE(events_after.ok());
  ASSERT_EQ(events_after.value().events.size(), events_before.value().events.size());
  for (size_t i = 0; i < events_before.value().events.size(); ++i) {
    EXPECT_EQ(events_after.value().events[i].ShortDebugString(),
              events_before.value().events[i].ShortDebugString());
  }
  // A second compaction picks up where the first stopped.
  s.ApplyOk(CompactReq(10));
  const auto before2 = History(*s, 10);
  Runs(*s);
  EXPECT_EQ(History(*s, 10), before2);
}

TEST(KvCompact, PhysicalCompactionRemovesTheOldVersions) {
  TestStore s;
  for (int i = 0; i < 100; ++i) s.ApplyOk(PutReq("k" + std::to_string(i % 10), "v"));
  s.ApplyOk(DelReq("k0", "k5"));
  auto snapshot_size = [&] {
    StringSnapshotSink sink;
    return s->WriteSnapshot(sink).value().entries;
  };
  const uint64_t before = snapshot_size();
  s.ApplyOk(CompactReq(s->Revision()));
  Runs(*s);
  const uint64_t after = snapshot_size();
  // What remains: the 5 live keys (current and one history entry each) and the changes of
  // the compaction revision itself (the delete); every older version is gone.
  EXPECT_LT(after, before / 3);
  EXPECT_EQ(Keys(Get(*s, "k", "l")), (Strings{"k5", "k6", "k7", "k8", "k9"}));
}

TEST(KvCompact, PhysicalCompactionResumesAfterARestart) {
  TestStore s;
  for (int i = 0; i < 50; ++i) s.ApplyOk(PutReq("k" + std::to_string(i % 7), std::to_string(i)));
  const int64_t rev = s->Revision() - 5;
  s.ApplyOk(CompactReq(rev));
  const auto before = History(*s, rev);
  ASSERT_TRUE(s->CompactStep(4).ok());
  s.Reopen();
  EXPECT_TRUE(s->CompactionPending());
  Runs(*s);
  EXPECT_FALSE(s->CompactionPending());
  s.Reopen();
  EXPECT_FALSE(s->CompactionPending());
  EXPECT_EQ(History(*s, rev), before);
}

TEST(KvCompact, PhysicalCompactionRunsAlongsideAppliesAndReads) {
  TestStore s;
  for (int i = 0; i < 2000; ++i) s.ApplyOk(PutReq("k" + std::to_string(i % 50), std::to_string(i)));
  const int64_t rev = s->Revision();
  const auto expected = Get(*s, kAll, kAll, rev);
  s.ApplyOk(CompactReq(rev));
  std::atomic<bool> stop{false};
  std::atomic<int> reads{0};
  std::thread compactor([&] {
    while (true) {
      auto p = s->CompactStep(16);
      ASSERT_TRUE(p.ok());
      if (p.value().done) break;
    }
  });
  std::thread reader([&] {
    while (!stop) {
      auto r = s->Range(RangeReq(kAll, kAll, rev).range());
      ASSERT_TRUE(r.ok());
      ASSERT_EQ(r.value().kvs_size(), expected.kvs_size());
      for (int i = 0; i < expected.kvs_size(); ++i) {
        ASSERT_EQ(r.value().kvs(i).value(), expected.kvs(i).value());
      }
      ++reads;
    }
  });
  for (int i = 0; i < 300; ++i) s.ApplyOk(PutReq("new" + std::to_string(i), "v"));
  compactor.join();
  stop = true;
  reader.join();
  EXPECT_GT(reads.load(), 0);
  EXPECT_FALSE(s->CompactionPending());
  EXPECT_EQ(Get(*s, "new", "new~").count(), 300);
}

}  // namespace
}  // namespace synod::kv
