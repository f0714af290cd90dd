// The watch history: EventsSince.
#include <gtest/gtest.h>

#include "kv/errors.h"
#include "kv/kv_test_util.h"

namespace synod::kv {
namespace {

const std::string kAll(1, '\0');

std::vector<std::string> Describe(const WatchEvents& w) {
  std::vector<std::string> out;
  for (const auto& e : w.events) {
    std::string d = (e.type() == kvpb::Event::PUT ? "put " : "del ") + e.kv().key() + "@" +
                    std::to_string(e.kv().mod_revision());
    if (e.type() == kvpb::Event::PUT) d += "=" + e.kv().value();
    if (e.has_prev_kv()) d += " prev=" + e.prev_kv().value();
    out.push_back(d);
  }
  return out;
}

WatchEvents Since(Store& s, int64_t rev, const std::string& key = kAll,
                  const std::string& end = kAll, bool prev = false, size_t max = 1000) {
  auto r = s.EventsSince(rev, key, end, prev, max);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? r.value() : WatchEvents();
}

class KvWatch : public ::testing::Test {
 protected:
  void SetUp() override {
    s_.ApplyOk(PutReq("a", "1"));  // 2
    s_.ApplyOk(PutReq("b", "1"));  // 3
    s_.ApplyOk(PutReq("a", "2"));  // 4
    s_.ApplyOk(DelReq("a"));       // 5
    kvpb::TxnRequest t;
    *t.add_success() = OpPut("c", "1");
    *t.add_success() = OpPut("b", "2");
    s_.ApplyOk(TxnReq(t));  // 6: two events
  }
  TestStore s_;
};

TEST_F(KvWatch, EveryChangeComesInRevisionOrder) {
  auto w = Since(*s_, 1);
  EXPECT_EQ(Describe(w), (std::vector<std::string>{"put a@2=1", "put b@3=1", "put a@4=2", "del a@5",
                                                   "put c@6=1", "put b@6=2"}));
  EXPECT_EQ(w.next_revision, 7);
  EXPECT_EQ(w.events[2].kv().version(), 2);
  EXPECT_EQ(w.events[2].kv().create_revision(), 2);
  // A delete event carries only the key and the revision of the delete.
  EXPECT_EQ(w.events[3].kv().create_revision(), 0);
  EXPECT_EQ(w.events[3].kv().version(), 0);
}

TEST_F(KvWatch, PrevKvIsTheVersionBeforeTheEvent) {
  auto w = Since(*s_, 3, kAll, kAll, /*prev=*/true);
  EXPECT_EQ(Describe(w),
            (std::vector<std::string>{"put b@3=1", "put a@4=2 prev=1", "del a@5 prev=2",
                                      "put c@6=1", "put b@6=2 prev=1"}));
}

TEST_F(KvWatch, EventsAreFilteredByKeyOrRange) {
  EXPECT_EQ(Describe(Since(*s_, 1, "a", "")),
            (std::vector<std::string>{"put a@2=1", "put a@4=2", "del a@5"}));
  EXPECT_EQ(Describe(Since(*s_, 1, "b", "c")),
            (std::vector<std::string>{"put b@3=1", "put b@6=2"}));
  EXPECT_EQ(Describe(Since(*s_, 1, "b", kAll)),
            (std::vector<std::string>{"put b@3=1", "put c@6=1", "put b@6=2"}));
}

TEST_F(KvWatch, ALimitNeverSplitsARevision) {
  auto w = Since(*s_, 4, kAll, kAll, false, 2);
  EXPECT_EQ(Describe(w), (std::vector<std::string>{"put a@4=2", "del a@5"}));
  EXPECT_EQ(w.next_revision, 6);
  w = Since(*s_, 6, kAll, kAll, false, 1);
  EXPECT_EQ(w.events.size(), 2u);  // both events of revision 6
  EXPECT_EQ(w.next_revision, 7);
}

TEST_F(KvWatch, AStartPastTheCurrentRevisionFindsNothingYet) {
  auto w = Since(*s_, 7);
  EXPECT_TRUE(w.events.empty());
  EXPECT_EQ(w.next_revision, 7);
  s_.ApplyOk(PutReq("d", "1"));
  EXPECT_EQ(Describe(Since(*s_, w.next_revision)), (std::vector<std::string>{"put d@7=1"}));
}

TEST_F(KvWatch, EventsBelowTheCompactionRevisionAreGone) {
  s_.ApplyOk(CompactReq(4));
  auto r = s_->EventsSince(3, kAll, kAll, false, 100);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "etcdserver: mvcc: required revision has been compacted");
  // From the compaction revision on, everything is there, before and after the physical
  // compaction; prev_kv only where revision - 1 is still readable.
  const auto expected =
      std::vector<std::string>{"put a@4=2", "del a@5 prev=2", "put c@6=1", "put b@6=2 prev=1"};
  EXPECT_EQ(Describe(Since(*s_, 4, kAll, kAll, true)), expected);
  while (!s_->CompactStep(1).value().done) {
  }
  EXPECT_EQ(Describe(Since(*s_, 4, kAll, kAll, true)), expected);
}

}  // namespace
}  // namespace synod::kv
