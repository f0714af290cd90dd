// Restarts: the store reopens with its state, and replaying the log is idempotent.
#include <gtest/gtest.h>

#include "base/rng.h"
#include "kv/keys.h"
#include "kv/kv_test_util.h"

namespace synod::kv {

// What the tests below read and write under the store.
class StoreTestPeer {
 public:
  static Backend& backend(Store& store) { return *store.backend_; }
};

namespace {

std::optional<uint64_t> Meta(Store& store, std::string_view key) {
  auto v = StoreTestPeer::backend(store).Get(key);
  EXPECT_TRUE(v.ok());
  if (!v.ok() || !v.value().has_value()) return std::nullopt;
  return keys::DecodeU64(*v.value());
}

const std::string kAll(1, '\0');

std::string State(Store& s) {
  std::string out = "rev=" + std::to_string(s.Revision()) +
                    " compact=" + std::to_string(s.CompactRevision()) +
                    " applied=" + std::to_string(s.AppliedIndex()) + "\n";
  for (int64_t rev = std::max<int64_t>(1, s.CompactRevision()); rev <= s.Revision(); ++rev) {
    out += Get(s, kAll, kAll, rev).ShortDebugString() + "\n";
  }
  out += s.LeaseLeases().ShortDebugString();
  for (const auto& a : s.Alarms()) out += a.ShortDebugString();
  return out;
}

// A log of mixed commands.
std::vector<kvpb::Request> Log(int n, uint64_t seed) {
  Rng rng(seed);
  std::vector<kvpb::Request> log;
  log.push_back(GrantReq(1, 30));
  for (int i = 0; i < n; ++i) {
    const std::string key = "k" + std::to_string(rng.Below(20));
    switch (rng.Below(6)) {
      case 0:
        log.push_back(DelReq(key));
        break;
      case 1:
        log.push_back(PutReq(key, "leased", 1));
        break;
      case 2:
        log.push_back(CompactReq(static_cast<int64_t>(i / 2 + 1)));  // may fail: fine
        break;
      default:
        log.push_back(PutReq(key, std::to_string(i)));
    }
  }
  log.push_back(RevokeReq(1));
  return log;
}

TEST(KvRestart, AReopenedStoreHasTheSameState) {
  TestStore s;
  for (const auto& r : Log(200, 1)) s.Apply(r);
  s.ApplyOk(AlarmReq(kvpb::AlarmRequest::ACTIVATE, kvpb::NOSPACE));
  const std::string before = State(*s);
  s.Reopen();
  EXPECT_EQ(State(*s), before);
}

TEST(KvRestart, ReplayingTheWholeLogAfterARestartChangesNothing) {
  const auto log = Log(300, 2);
  TestStore s;
  for (size_t i = 0; i < log.size(); ++i) s->Apply(i + 1, log[i], 0);
  const std::string before = State(*s);
  s.Reopen();
  // The node replays its log from the start (say its snapshot was older): every entry at or
  // below the applied index is skipped.
  for (size_t i = 0; i < log.size(); ++i) {
    auto r = s->Apply(i + 1, log[i], 0);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r.value().skipped) << i;
  }
  EXPECT_EQ(State(*s), before);
}

TEST(KvRestart, ACrashMidLogThenReplayEndsInTheSameStateAsNoCrash) {
  const auto log = Log(300, 3);
  TestStore reference;
  for (size_t i = 0; i < log.size(); ++i) reference->Apply(i + 1, log[i], 0);
  TestStore s;
  for (size_t crash_at : {size_t{50}, size_t{51}, size_t{200}}) {
    // Apply up to crash_at, restart, replay everything.
    for (size_t i = 0; i < crash_at; ++i) s->Apply(i + 1, log[i], 0);
    s.Reopen();
    for (size_t i = 0; i < log.size(); ++i) ASSERT_TRUE(s->Apply(i + 1, log[i], 0).ok());
    EXPECT_EQ(State(*s), State(*reference)) << crash_at;
  }
}

TEST(KvRestart, AStoreOnDiskSurvivesReopening) {
  TestStore s(StoreOptions{.sync = true}, /*on_disk=*/true);
  for (const auto& r : Log(100, 4)) s.Apply(r);
  const std::string before = State(*s);
  s.Reopen();
  EXPECT_EQ(State(*s), before);
  ASSERT_TRUE(s->Sync().ok());
}

TEST(KvRestart, AnEntryThatMakesARevisionKeepsItsIndexWithItsChangesNotInTheMeta) {
  TestStore s;
  s.ApplyOk(PutReq("a", "1"));  // index 1, revision 2
  s.ApplyOk(PutReq("b", "2"));  // index 2, revision 3
  EXPECT_EQ(Meta(*s, keys::kMetaAppliedIndex), std::nullopt) << "two meta records per write";
  EXPECT_EQ(Meta(*s, keys::kMetaRevision), std::nullopt);
  s.Reopen();
  EXPECT_EQ(s->AppliedIndex(), 2u);
  EXPECT_EQ(s->Revision(), 3);

  // An entry that changes nothing records its index in the meta.
  EXPECT_FALSE(s.ApplyStatus(DelReq("")).ok());  // index 3: no key, refused
  EXPECT_EQ(Meta(*s, keys::kMetaAppliedIndex), 3u);
  s.Reopen();
  EXPECT_EQ(s->AppliedIndex(), 3u);
  EXPECT_EQ(s->Revision(), 3);

  s.ApplyOk(DelReq("a"));  // index 4, revision 4
  s.Reopen();
  EXPECT_EQ(s->AppliedIndex(), 4u);
  EXPECT_EQ(s->Revision(), 4);

  // Compaction removes the revision index below its revision, never the newest entry.
  s.ApplyOk(CompactReq(4));  // index 5
  while (!s->CompactStep(1).value().done) {
  }
  s.Reopen();
  EXPECT_EQ(s->AppliedIndex(), 5u);
  EXPECT_EQ(s->Revision(), 4);
  EXPECT_EQ(s->CompactRevision(), 4);
  s.ApplyOk(PutReq("c", "3"));
  EXPECT_EQ(s->Revision(), 5);
}

TEST(KvRestart, AStoreWrittenInFormat1IsReadAndUpgraded) {
  TestStore s;
  s.ApplyOk(PutReq("a", "1"));
  s.ApplyOk(PutReq("a", "2"));
  s.ApplyOk(DelReq("a"));  // indexes 1-3, revision 4
  // Rewrite the store as format 1 left it: revision index entries 'P' / 'D' and the key,
  // without the log index; the applied index and revision in the meta after every entry.
  Backend& backend = StoreTestPeer::backend(*s);
  WriteBatch old;
  const std::string begin(1, keys::kRevision);
  {
    auto it = backend.NewIterator(begin, keys::PrefixEnd(begin));  // closed before Reopen
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      keys::EventEntry event;
      ASSERT_TRUE(keys::DecodeEvent(it->value(), &event));
      old.Put(std::string(it->key()), std::string(1, event.is_delete ? 'D' : 'P') + event.key);
    }
  }
  old.Put(std::string(keys::kMetaFormat), keys::EncodeU64(1));
  old.Put(std::string(keys::kMetaAppliedIndex), keys::EncodeU64(3));
  old.Put(std::string(keys::kMetaRevision), keys::EncodeU64(4));
  ASSERT_TRUE(backend.Write(old, /*sync=*/true).ok());

  s.Reopen();
  EXPECT_EQ(s->AppliedIndex(), 3u);
  EXPECT_EQ(s->Revision(), 4);
  EXPECT_EQ(Meta(*s, keys::kMetaFormat), keys::kFormatVersion) << "upgraded at open";
  auto events = s->EventsSince(2, "a", "", /*prev_kv=*/false, 10);
  ASSERT_TRUE(events.ok()) << events.status().ToString();
  ASSERT_EQ(events.value().events.size(), 3u) << "format 1 entries still serve watches";
  EXPECT_EQ(events.value().events[2].type(), kvpb::Event::DELETE);

  s.ApplyOk(PutReq("a", "3"));  // index 4
  s.Reopen();
  EXPECT_EQ(s->AppliedIndex(), 4u);
  EXPECT_EQ(s->Revision(), 5);
}

TEST(KvRestart, AStoreOfAnUnknownFormatIsRefused) {
  TestStore s;
  s.ApplyOk(PutReq("a", "1"));
  WriteBatch future;
  future.Put(std::string(keys::kMetaFormat), keys::EncodeU64(keys::kFormatVersion + 1));
  ASSERT_TRUE(StoreTestPeer::backend(*s).Write(future, /*sync=*/true).ok());
  s.Close();
  auto backend = OpenRocksBackend(s.path(), RocksBackendOptions{.env = s.env()});
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  auto reopened = Store::Open(std::move(backend.value()), StoreOptions{});
  ASSERT_FALSE(reopened.ok());
  EXPECT_EQ(reopened.status().code(), Code::kCorruption);
  EXPECT_NE(reopened.status().message().find("unknown store format 3"), std::string::npos)
      << reopened.status().message();
}

}  // namespace
}  // namespace synod::kv
