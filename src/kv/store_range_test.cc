// Range: etcd's rules for key ranges, limits, counts, sorting, filters and past revisions.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "kv/errors.h"
#include "kv/kv_test_util.h"

namespace synod::kv {
namespace {

using Strings = std::vector<std::string>;

class KvRange : public ::testing::Test {
 protected:
  // a=1 (rev 2), b=2 (3), c=3 (4), d=4 (5), then b=22 (6): b has version 2.
  void Fill() {
    s_.ApplyOk(PutReq("a", "1"));
    s_.ApplyOk(PutReq("b", "2"));
    s_.ApplyOk(PutReq("c", "3"));
    s_.ApplyOk(PutReq("d", "4"));
    s_.ApplyOk(PutReq("b", "22"));
  }
  kvpb::RangeResponse Range(const kvpb::RangeRequest& r) {
    auto out = s_->Range(r);
    EXPECT_TRUE(out.ok()) << out.status().ToString();
    return out.ok() ? out.value() : kvpb::RangeResponse();
  }
  TestStore s_;
};

TEST_F(KvRange, AFreshStoreIsEmptyAtRevisionOne) {
  EXPECT_EQ(s_->Revision(), 1);
  auto r = Get(*s_, std::string(1, '\0'), std::string(1, '\0'));
  EXPECT_EQ(r.count(), 0);
  EXPECT_EQ(r.header().revision(), 1);
}

TEST_F(KvRange, AGetOfOneKeyReturnsItsLatestVersion) {
  Fill();
  auto r = Get(*s_, "b");
  ASSERT_EQ(r.kvs_size(), 1);
  EXPECT_EQ(r.kvs(0).value(), "22");
  EXPECT_EQ(r.kvs(0).create_revision(), 3);
  EXPECT_EQ(r.kvs(0).mod_revision(), 6);
  EXPECT_EQ(r.kvs(0).version(), 2);
  EXPECT_EQ(r.count(), 1);
  EXPECT_FALSE(r.more());
  EXPECT_EQ(r.header().revision(), 6);
  EXPECT_EQ(Get(*s_, "zz").kvs_size(), 0);
}

TEST_F(KvRange, ARangeEndSelectsTheHalfOpenInterval) {
  Fill();
  EXPECT_EQ(Keys(Get(*s_, "b", "d")), (Strings{"b", "c"}));
  EXPECT_EQ(Keys(Get(*s_, "a", "b")), (Strings{"a"}));
  EXPECT_EQ(Keys(Get(*s_, "d", "b")), Strings{});  // end before key: nothing
}

TEST_F(KvRange, ARangeEndOfZeroByteMeansEveryKeyFromKeyOn) {
  Fill();
  EXPECT_EQ(Keys(Get(*s_, "b", std::string(1, '\0'))), (Strings{"b", "c", "d"}));
  EXPECT_EQ(Keys(Get(*s_, std::string(1, '\0'), std::string(1, '\0'))),
            (Strings{"a", "b", "c", "d"}));
}

TEST_F(KvRange, APrefixRangeSelectsTheKeysWithThatPrefix) {
  for (const char* k : {"fo", "foo", "foo/a", "foo/b", "fop", "fp"}) s_.ApplyOk(PutReq(k, "v"));
  EXPECT_EQ(Keys(Get(*s_, "foo", "fop")), (Strings{"foo", "foo/a", "foo/b"}));
  EXPECT_EQ(Keys(Get(*s_, "foo/", "foo0")), (Strings{"foo/a", "foo/b"}));
}

TEST_F(KvRange, KeysWithZeroAndHighBytesSortBytewise) {
  const Strings keys = {
      "a", std::string("a\0", 2), std::string("a\0b", 3), "a\x01", "b", "\xff", "\xff\xff"};
  for (auto it = keys.rbegin(); it != keys.rend(); ++it) s_.ApplyOk(PutReq(*it, "v"));
  EXPECT_EQ(Keys(Get(*s_, std::string(1, '\0'), std::string(1, '\0'))), keys);
  EXPECT_EQ(Keys(Get(*s_, "a", "a\x01")),
            (Strings{"a", std::string("a\0", 2), std::string("a\0b", 3)}));
  // The same holds at a past revision, read from the history table.
  const int64_t rev = s_->Revision();
  s_.ApplyOk(DelReq(std::string(1, '\0'), std::string(1, '\0')));
  EXPECT_EQ(Keys(Get(*s_, std::string(1, '\0'), std::string(1, '\0'), rev)), keys);
  EXPECT_EQ(Keys(Get(*s_, "a", "a\x01", rev)),
            (Strings{"a", std::string("a\0", 2), std::string("a\0b", 3)}));
}

TEST_F(KvRange, ALimitTruncatesSetsMoreAndCountsEveryKey) {
  Fill();
  kvpb::RangeRequest r = RangeReq("a", "z").range();
  r.set_limit(2);
  auto out = Range(r);
  EXPECT_EQ(Keys(out), (Strings{"a", "b"}));
  EXPECT_TRUE(out.more());
  EXPECT_EQ(out.count(), 4);
  r.set_limit(4);
  out = Range(r);
  EXPECT_EQ(out.kvs_size(), 4);
  EXPECT_FALSE(out.more());
}

TEST_F(KvRange, CountOnlyReturnsTheCountAndNoKeys) {
  Fill();
  kvpb::RangeRequest r = RangeReq("a", "z").range();
  r.set_count_only(true);
  auto out = Range(r);
  EXPECT_EQ(out.count(), 4);
  EXPECT_EQ(out.kvs_size(), 0);
  EXPECT_FALSE(out.more());
  r.set_revision(3);
  EXPECT_EQ(Range(r).count(), 2);
}

TEST_F(KvRange, KeysOnlyOmitsTheValues) {
  Fill();
  kvpb::RangeRequest r = RangeReq("a", "z").range();
  r.set_keys_only(true);
  auto out = Range(r);
  ASSERT_EQ(out.kvs_size(), 4);
  for (const auto& kv : out.kvs()) EXPECT_EQ(kv.value(), "");
  EXPECT_EQ(out.kvs(1).version(), 2);
}

TEST_F(KvRange, SortingOrdersByEachTargetBothWays) {
  Fill();  // versions a1 b2 c1 d1; create a2 b3 c4 d5; mod a2 b6 c4 d5; values 1 22 3 4
  auto sorted = [&](kvpb::RangeRequest::SortTarget target, kvpb::RangeRequest::SortOrder order) {
    kvpb::RangeRequest r = RangeReq("a", "z").range();
    r.set_sort_target(target);
    r.set_sort_order(order);
    return Keys(Range(r));
  };
  using R = kvpb::RangeRequest;
  EXPECT_EQ(sorted(R::KEY, R::DESCEND), (Strings{"d", "c", "b", "a"}));
  EXPECT_EQ(sorted(R::KEY, R::ASCEND), (Strings{"a", "b", "c", "d"}));
  EXPECT_EQ(sorted(R::MOD, R::ASCEND), (Strings{"a", "c", "d", "b"}));
  EXPECT_EQ(sorted(R::MOD, R::DESCEND), (Strings{"b", "d", "c", "a"}));
  EXPECT_EQ(sorted(R::CREATE, R::DESCEND), (Strings{"d", "c", "b", "a"}));
  EXPECT_EQ(sorted(R::VALUE, R::ASCEND), (Strings{"a", "b", "c", "d"}));  // "1" < "22" < "3"
  EXPECT_EQ(sorted(R::VALUE, R::DESCEND), (Strings{"d", "c", "b", "a"}));
  // Ties keep key order.
  EXPECT_EQ(sorted(R::VERSION, R::ASCEND), (Strings{"a", "c", "d", "b"}));
  EXPECT_EQ(sorted(R::VERSION, R::DESCEND), (Strings{"b", "a", "c", "d"}));
  // A target other than KEY with no order sorts ascending.
  EXPECT_EQ(sorted(R::MOD, R::NONE), (Strings{"a", "c", "d", "b"}));
}

TEST_F(KvRange, SortingHappensBeforeTheLimit) {
  Fill();
  kvpb::RangeRequest r = RangeReq("a", "z").range();
  r.set_sort_target(kvpb::RangeRequest::MOD);
  r.set_sort_order(kvpb::RangeRequest::DESCEND);
  r.set_limit(1);
  auto out = Range(r);
  EXPECT_EQ(Keys(out), (Strings{"b"}));
  EXPECT_TRUE(out.more());
  EXPECT_EQ(out.count(), 4);
}

TEST_F(KvRange, RevisionFiltersPruneKeysButNotTheCount) {
  Fill();
  kvpb::RangeRequest r = RangeReq("a", "z").range();
  r.set_min_mod_revision(4);
  r.set_max_mod_revision(5);
  auto out = Range(r);
  EXPECT_EQ(Keys(out), (Strings{"c", "d"}));
  EXPECT_EQ(out.count(), 4);
  r = RangeReq("a", "z").range();
  r.set_min_create_revision(3);
  r.set_max_create_revision(4);
  EXPECT_EQ(Keys(Range(r)), (Strings{"b", "c"}));
  r.set_limit(1);
  out = Range(r);
  EXPECT_EQ(Keys(out), (Strings{"b"}));
  EXPECT_TRUE(out.more());
}

TEST_F(KvRange, APastRevisionSeesTheStoreAsItWasThen) {
  Fill();
  s_.ApplyOk(DelReq("a"));         // rev 7
  s_.ApplyOk(PutReq("a", "new"));  // rev 8: a recreated
  auto at3 = Get(*s_, "a", "z", 3);
  EXPECT_EQ(Keys(at3), (Strings{"a", "b"}));
  EXPECT_EQ(Values(at3), (Strings{"1", "2"}));
  EXPECT_EQ(at3.header().revision(), 8);  // the header carries the current revision
  EXPECT_EQ(Keys(Get(*s_, "a", "z", 7)), (Strings{"b", "c", "d"}));
  auto a_now = Get(*s_, "a");
  ASSERT_EQ(a_now.kvs_size(), 1);
  EXPECT_EQ(a_now.kvs(0).create_revision(), 8);
  EXPECT_EQ(a_now.kvs(0).version(), 1);
  auto a_then = Get(*s_, "a", "", 6);
  ASSERT_EQ(a_then.kvs_size(), 1);
  EXPECT_EQ(a_then.kvs(0).create_revision(), 2);
  EXPECT_EQ(Get(*s_, "a", "", 1).kvs_size(), 0);  // before anything was written
  EXPECT_EQ(Get(*s_, "a", "", 7).kvs_size(), 0);  // deleted at 7
}

TEST_F(KvRange, AFutureRevisionIsRefused) {
  Fill();
  auto out = s_->Range(RangeReq("a", "", 7).range());
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().message(), "etcdserver: mvcc: required revision is a future revision");
  EXPECT_EQ(GrpcCodeOf(out.status()), GrpcCode::kOutOfRange);
}

TEST_F(KvRange, AnEmptyKeyIsRefused) {
  auto out = s_->Range(RangeReq("").range());
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().message(), "etcdserver: key is not provided");
  EXPECT_EQ(s_.ApplyStatus(RangeReq("")).message(), "etcdserver: key is not provided");
}

TEST_F(KvRange, ARangeThroughTheLogReadsTheCurrentState) {
  Fill();
  auto out = s_.ApplyOk(RangeReq("a", "c"));
  EXPECT_EQ(Keys(out.range()), (Strings{"a", "b"}));
  EXPECT_EQ(out.range().header().revision(), 6);
  EXPECT_EQ(s_->Revision(), 6);
}

TEST_F(KvRange, AConcurrentReadNeverSeesHalfAnEntry) {
  // Every entry puts x and y to the same value in one revision: a read at the current
  // revision must see both or neither, and report the revision they carry.
  kvpb::TxnRequest t;
  *t.add_success() = OpPut("x", "0");
  *t.add_success() = OpPut("y", "0");
  s_.ApplyOk(TxnReq(t));
  std::atomic<bool> stop{false};
  std::atomic<int> reads{0};
  std::thread reader([&] {
    while (!stop) {
      auto r = s_->Range(RangeReq("x", "z").range());
      ASSERT_TRUE(r.ok());
      ASSERT_EQ(r.value().kvs_size(), 2);
      ASSERT_EQ(r.value().kvs(0).value(), r.value().kvs(1).value());
      ASSERT_EQ(r.value().kvs(0).mod_revision(), r.value().header().revision());
      ASSERT_EQ(r.value().kvs(1).mod_revision(), r.value().header().revision());
      ++reads;
    }
  });
  for (int i = 1; i <= 500; ++i) {
    t.mutable_success(0)->mutable_request_put()->set_value(std::to_string(i));
    t.mutable_success(1)->mutable_request_put()->set_value(std::to_string(i));
    s_.ApplyOk(TxnReq(t));
  }
  stop = true;
  reader.join();
  EXPECT_GT(reads.load(), 0);
}

}  // namespace
}  // namespace synod::kv
