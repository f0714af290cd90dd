// State snapshots: round trip onto another store, and refusal of damaged snapshots.
#include <gtest/gtest.h>

#include "kv/errors.h"
#include "kv/kv_test_util.h"

namespace synod::kv {
namespace {

const std::string kAll(1, '\0');

// Everything observable of a store, as text.
std::string Describe(TestStore& s, uint64_t now_ms = 0) {
  std::string out = "rev=" + std::to_string(s->Revision()) +
                    " compact=" + std::to_string(s->CompactRevision()) +
                    " applied=" + std::to_string(s->AppliedIndex()) + "\n";
  const int64_t first = std::max<int64_t>(1, s->CompactRevision());
  for (int64_t rev = first; rev <= s->Revision(); ++rev) {
    out += "@" + std::to_string(rev) + " " + Get(*s, kAll, kAll, rev).ShortDebugString() + "\n";
  }
  auto events = s->EventsSince(first, kAll, kAll, true, 1 << 20);
  EXPECT_TRUE(events.ok());
  for (const auto& e : events.value().events) out += e.ShortDebugString() + "\n";
  const auto leases = s->LeaseLeases();
  for (const auto& l : leases.leases()) {
    kvpb::LeaseTimeToLiveRequest r;
    r.set_id(l.id());
    r.set_keys(true);
    out += s->LeaseTimeToLive(r, now_ms).value().ShortDebugString() + "\n";
  }
  for (const auto& a : s->Alarms()) out += a.ShortDebugString() + "\n";
  return out;
}

void Populate(TestStore& s) {
  s.ApplyOk(GrantReq(5, 60));
  for (int i = 0; i < 300; ++i) {
    s.ApplyOk(PutReq("key" + std::to_string(i % 37), std::string(i % 50, 'x'), i % 5 == 0 ? 5 : 0));
    if (i % 7 == 0) s.ApplyOk(DelReq("key" + std::to_string(i % 11)));
  }
  s.ApplyOk(CompactReq(100));
  s.ApplyOk(AlarmReq(kvpb::AlarmRequest::ACTIVATE, kvpb::NOSPACE, 3));
}

std::string Dump(TestStore& s, SnapshotInfo* info = nullptr) {
  StringSnapshotSink sink;
  auto r = s->WriteSnapshot(sink);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  if (info != nullptr && r.ok()) *info = r.value();
  return sink.data();
}

TEST(KvSnapshot, AnInstalledSnapshotReproducesTheWholeStore) {
  TestStore source;
  Populate(source);
  SnapshotInfo info;
  const std::string bytes = Dump(source, &info);
  EXPECT_EQ(info.applied_index, source->AppliedIndex());
  EXPECT_EQ(info.revision, source->Revision());
  EXPECT_EQ(info.bytes, bytes.size());

  TestStore target;
  target.ApplyOk(PutReq("stale", "gone after install"));
  StringSnapshotSource in(bytes);
  auto installed = target->InstallSnapshot(in);
  ASSERT_TRUE(installed.ok()) << installed.status().ToString();
  EXPECT_EQ(installed.value().applied_index, info.applied_index);
  EXPECT_EQ(installed.value().crc32c, info.crc32c);
  EXPECT_EQ(Describe(target), Describe(source));
  EXPECT_EQ(Get(*target, "stale").kvs_size(), 0);

  // The target carries on exactly like the source.
  for (TestStore* s : {&source, &target}) {
    s->next_index = info.applied_index + 1;
    s->ApplyOk(AlarmReq(kvpb::AlarmRequest::DEACTIVATE, kvpb::NOSPACE, 3));
    s->ApplyOk(PutReq("after", "1", 5));
    s->ApplyOk(RevokeReq(5));
    while (!(*s)->CompactStep(7).value().done) {
    }
  }
  EXPECT_EQ(Describe(target), Describe(source));
  // ... and a replay of entries the snapshot covers is a no-op.
  EXPECT_TRUE(target->Apply(info.applied_index, PutReq("x", "y"), 0).value().skipped);
  // The snapshot of the target is the snapshot of the source, byte for byte.
  EXPECT_EQ(Dump(target), Dump(source));
}

// A pinned view dumps the store as it was when pinned, however much was applied since: the
// state of a snapshot made at its own index, later.
TEST(KvSnapshot, APinnedViewDumpsTheStoreAsItWasWhenPinned) {
  TestStore source;
  Populate(source);
  const std::string then = Describe(source);
  const std::string dump_then = Dump(source);
  auto pinned = source->Pin();
  ASSERT_TRUE(pinned.ok()) << pinned.status().ToString();
  EXPECT_EQ(pinned.value()->applied_index(), source->AppliedIndex());
  source.ApplyOk(AlarmReq(kvpb::AlarmRequest::DEACTIVATE, kvpb::NOSPACE, 3));
  for (int i = 0; i < 50; ++i) source.ApplyOk(PutReq("key" + std::to_string(i), "later"));
  source.ApplyOk(CompactReq(source->Revision() - 5));
  while (!source->CompactStep(7).value().done) {
  }

  StringSnapshotSink sink;
  auto info = source->WriteSnapshot(sink, pinned.value().get());
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info.value().applied_index, pinned.value()->applied_index());
  EXPECT_EQ(sink.data(), dump_then) << "the pinned dump is the dump taken when pinned";
  TestStore target;
  StringSnapshotSource in(sink.data());
  ASSERT_TRUE(target->InstallSnapshot(in).ok());
  EXPECT_EQ(Describe(target), then);
  EXPECT_NE(Describe(source), then);
}

// A put continues a key's versions (create revision kept, version + 1) after the store is
// reopened or replaced by a snapshot: what a put reads of the key's live version comes
// back with it.
TEST(KvSnapshot, APutAfterReopenOrInstallContinuesTheKeysVersions) {
  TestStore source;
  source.ApplyOk(PutReq("k", "1"));     // revision 2: created
  source.ApplyOk(PutReq("k", "2", 0));  // version 2
  source.ApplyOk(GrantReq(7, 60));
  source.ApplyOk(PutReq("k", "3", 7));  // version 3, on lease 7
  const std::string bytes = Dump(source);
  TestStore installed;
  StringSnapshotSource in(bytes);
  ASSERT_TRUE(installed->InstallSnapshot(in).ok());
  installed.next_index = source.next_index;
  source.Reopen();
  for (TestStore* s : {&source, &installed}) {
    s->ApplyOk(PutReq("k", "4"));  // leaves lease 7
    const auto kvs = Get(**s, "k").kvs();
    ASSERT_EQ(kvs.size(), 1);
    EXPECT_EQ(kvs[0].create_revision(), 2);
    EXPECT_EQ(kvs[0].version(), 4);
    EXPECT_EQ(kvs[0].lease(), 0);
    kvpb::LeaseTimeToLiveRequest ttl;
    ttl.set_id(7);
    ttl.set_keys(true);
    auto attached = (*s)->LeaseTimeToLive(ttl, s->now_ms);
    ASSERT_TRUE(attached.ok());
    EXPECT_EQ(attached.value().keys_size(), 0) << "the key left the lease";
  }
}

TEST(KvSnapshot, ASnapshotSurvivesTheTargetsRestart) {
  TestStore source;
  Populate(source);
  TestStore target;
  StringSnapshotSource in(Dump(source));
  ASSERT_TRUE(target->InstallSnapshot(in).ok());
  target.Reopen();
  EXPECT_EQ(Describe(target), Describe(source));
}

TEST(KvSnapshot, ASnapshotGoesThroughAFile) {
  TestStore source;
  Populate(source);
  const std::string path = TempDir("snap") + "/snapshot";
  FileSnapshotSink sink(path);
  ASSERT_TRUE(source->WriteSnapshot(sink).ok());
  TestStore target;
  FileSnapshotSource in(path);
  ASSERT_TRUE(target->InstallSnapshot(in).ok());
  EXPECT_EQ(Describe(target), Describe(source));
}

TEST(KvSnapshot, ADamagedSnapshotIsRefusedAndTheStoreIsUnchanged) {
  TestStore source;
  Populate(source);
  const std::string bytes = Dump(source);
  TestStore target;
  target.ApplyOk(PutReq("mine", "1"));
  const std::string before = Describe(target);
  // Flip one bit at many places: header, entries, trailer, checksum.
  for (size_t pos = 0; pos < bytes.size(); pos += std::max<size_t>(1, bytes.size() / 97)) {
    std::string damaged = bytes;
    damaged[pos] ^= 0x10;
    StringSnapshotSource in(damaged);
    auto r = target->InstallSnapshot(in);
    ASSERT_FALSE(r.ok()) << "flipped byte " << pos;
    EXPECT_EQ(r.status().code(), Code::kCorruption) << pos << ": " << r.status().ToString();
  }
  for (size_t pos : {bytes.size() - 1, bytes.size() - 4, bytes.size() - 5}) {
    std::string damaged = bytes;
    damaged[pos] ^= 0x01;
    StringSnapshotSource in(damaged);
    EXPECT_EQ(target->InstallSnapshot(in).status().code(), Code::kCorruption) << pos;
  }
  EXPECT_EQ(Describe(target), before);
  EXPECT_FALSE(target->NeedsSnapshot());
}

TEST(KvSnapshot, ATruncatedOrExtendedSnapshotIsRefused) {
  TestStore source;
  Populate(source);
  const std::string bytes = Dump(source);
  TestStore target;
  for (size_t len : {size_t{0}, size_t{5}, bytes.size() / 2, bytes.size() - 1}) {
    StringSnapshotSource in(bytes.substr(0, len));
    auto r = target->InstallSnapshot(in);
    EXPECT_EQ(r.status().code(), Code::kCorruption) << len;
  }
  StringSnapshotSource longer(bytes + "x");
  EXPECT_EQ(target->InstallSnapshot(longer).status().code(), Code::kCorruption);
  EXPECT_FALSE(target->NeedsSnapshot());
}

// A source whose second reading differs from its first: what a crash or a change in the
// middle of an install looks like to the store.
class ChangingSource final : public SnapshotSource {
 public:
  ChangingSource(std::string first, std::string second)
      : first_(std::move(first)), second_(std::move(second)) {}
  Status Read(size_t max_bytes, std::string* out) override {
    const std::string& data = passes_ <= 1 ? first_ : second_;
    const size_t n = std::min(max_bytes, data.size() - pos_);
    out->append(data, pos_, n);
    pos_ += n;
    return Status::Ok();
  }
  Status Rewind() override {
    ++passes_;
    pos_ = 0;
    return Status::Ok();
  }

 private:
  std::string first_, second_;
  size_t pos_ = 0;
  int passes_ = 0;
};

TEST(KvSnapshot, AnInterruptedInstallLeavesAStoreThatAsksForASnapshot) {
  TestStore source;
  Populate(source);
  const std::string bytes = Dump(source);
  std::string damaged = bytes;
  damaged[damaged.size() / 2] ^= 0x01;
  TestStore target;
  ChangingSource changing(bytes, damaged);
  EXPECT_EQ(target->InstallSnapshot(changing).status().code(), Code::kCorruption);
  EXPECT_TRUE(target->NeedsSnapshot());
  EXPECT_FALSE(target->Range(RangeReq("a").range()).ok());
  EXPECT_FALSE(target->Apply(1000, PutReq("a", "b"), 0).ok());
  target.Reopen();  // a restart remembers
  EXPECT_TRUE(target->NeedsSnapshot());
  EXPECT_FALSE(target->Range(RangeReq("a").range()).ok());
  StringSnapshotSource good(bytes);
  ASSERT_TRUE(target->InstallSnapshot(good).ok());
  EXPECT_FALSE(target->NeedsSnapshot());
  EXPECT_EQ(Describe(target), Describe(source));
}

// A snapshot reads the whole store once: its blocks must not stay in the block cache, which
// would then hold, to its configured size, blocks no request reads (a member's memory).
TEST(KvSnapshot, ASnapshotLeavesTheBlockCacheAsItFoundIt) {
  TestStore s;  // small memtables: the data below is flushed to SST files
  const std::string value(1024, 'v');
  for (int i = 0; i < 2000; ++i) s.ApplyOk(PutReq("key" + std::to_string(i), value));
  s.Reopen();  // a new, empty block cache
  const uint64_t before = s->CacheBytes();

  StringSnapshotSink sink;
  ASSERT_TRUE(s->WriteSnapshot(sink).ok());
  ASSERT_GT(sink.data().size(), 2000u * 1024);
  EXPECT_LT(s->CacheBytes(), before + (64u << 10));

  // The measure itself: a request's read of the same data fills the cache.
  auto all = s->Range(RangeReq(kAll, kAll).range());
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all.value().kvs_size(), 2000);
  EXPECT_GT(s->CacheBytes(), before + (1u << 20));
}

TEST(KvSnapshot, AnEmptyStoreSnapshotsToo) {
  TestStore source, target;
  StringSnapshotSource in(Dump(source));
  ASSERT_TRUE(target->InstallSnapshot(in).ok());
  EXPECT_EQ(Describe(target), Describe(source));
  EXPECT_EQ(target->Revision(), 1);
}

}  // namespace
}  // namespace synod::kv
