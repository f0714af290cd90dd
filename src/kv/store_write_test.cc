// Put and DeleteRange: revisions, versions, prev_kv, ignore_value/ignore_lease, and the
// applied index.
#include <gtest/gtest.h>

#include "kv/errors.h"
#include "kv/kv_test_util.h"

namespace synod::kv {
namespace {

using Strings = std::vector<std::string>;

TEST(KvWrite, EachPutRaisesTheRevisionByOne) {
  TestStore s;
  for (int i = 0; i < 5; ++i) {
    auto r = s.ApplyOk(PutReq("k" + std::to_string(i), "v"));
    EXPECT_EQ(r.put().header().revision(), 2 + i);
    EXPECT_EQ(s->Revision(), 2 + i);
  }
}

TEST(KvWrite, APutOfALiveKeyKeepsItsCreateRevisionAndRaisesItsVersion) {
  TestStore s;
  s.ApplyOk(PutReq("k", "1"));
  s.ApplyOk(PutReq("other", "x"));
  s.ApplyOk(PutReq("k", "2"));
  auto kv = Get(*s, "k").kvs(0);
  EXPECT_EQ(kv.create_revision(), 2);
  EXPECT_EQ(kv.mod_revision(), 4);
  EXPECT_EQ(kv.version(), 2);
  EXPECT_EQ(kv.value(), "2");
}

TEST(KvWrite, ADeleteResetsTheVersionAndARecreatedKeyStartsAgain) {
  TestStore s;
  s.ApplyOk(PutReq("k", "1"));
  s.ApplyOk(PutReq("k", "2"));
  auto del = s.ApplyOk(DelReq("k"));
  EXPECT_EQ(del.delete_range().deleted(), 1);
  EXPECT_EQ(del.delete_range().header().revision(), 4);
  EXPECT_EQ(Get(*s, "k").kvs_size(), 0);
  s.ApplyOk(PutReq("k", "3"));
  auto kv = Get(*s, "k").kvs(0);
  EXPECT_EQ(kv.create_revision(), 5);
  EXPECT_EQ(kv.version(), 1);
}

TEST(KvWrite, ADeleteThatFindsNoKeyDoesNotRaiseTheRevision) {
  TestStore s;
  s.ApplyOk(PutReq("k", "1"));
  auto del = s.ApplyOk(DelReq("missing"));
  EXPECT_EQ(del.delete_range().deleted(), 0);
  EXPECT_EQ(del.delete_range().header().revision(), 2);
  EXPECT_EQ(s->Revision(), 2);
  s.ApplyOk(DelReq("k"));
  s.ApplyOk(DelReq("k"));  // already deleted
  EXPECT_EQ(s->Revision(), 3);
}

TEST(KvWrite, ADeleteRangeRemovesEveryLiveKeyOfTheRangeInOneRevision) {
  TestStore s;
  for (const char* k : {"a", "b", "c", "d"}) s.ApplyOk(PutReq(k, std::string("v") + k));
  kvpb::Request del = DelReq("b", std::string(1, '\0'));
  del.mutable_delete_range()->set_prev_kv(true);
  auto r = s.ApplyOk(del);
  EXPECT_EQ(r.delete_range().deleted(), 3);
  ASSERT_EQ(r.delete_range().prev_kvs_size(), 3);
  EXPECT_EQ(r.delete_range().prev_kvs(0).key(), "b");
  EXPECT_EQ(r.delete_range().prev_kvs(2).value(), "vd");
  EXPECT_EQ(s->Revision(), 6);
  EXPECT_EQ(Keys(Get(*s, "a", "z")), (Strings{"a"}));
  // Without prev_kv the response carries none.
  s.ApplyOk(PutReq("x", "1"));
  EXPECT_EQ(s.ApplyOk(DelReq("x")).delete_range().prev_kvs_size(), 0);
}

TEST(KvWrite, APutWithPrevKvReturnsThePreviousVersion) {
  TestStore s;
  kvpb::Request put = PutReq("k", "1");
  put.mutable_put()->set_prev_kv(true);
  EXPECT_FALSE(s.ApplyOk(put).put().has_prev_kv());  // nothing before
  put.mutable_put()->set_value("2");
  auto r = s.ApplyOk(put);
  ASSERT_TRUE(r.put().has_prev_kv());
  EXPECT_EQ(r.put().prev_kv().value(), "1");
  EXPECT_EQ(r.put().prev_kv().mod_revision(), 2);
  EXPECT_EQ(r.put().header().revision(), 3);
}

TEST(KvWrite, IgnoreValueKeepsTheCurrentValue) {
  TestStore s;
  s.ApplyOk(GrantReq(7, 100));
  s.ApplyOk(PutReq("k", "keep"));
  kvpb::Request put = PutReq("k", "", 7);
  put.mutable_put()->set_ignore_value(true);
  s.ApplyOk(put);
  auto kv = Get(*s, "k").kvs(0);
  EXPECT_EQ(kv.value(), "keep");
  EXPECT_EQ(kv.lease(), 7);
  EXPECT_EQ(kv.version(), 2);
}

TEST(KvWrite, IgnoreLeaseKeepsTheCurrentLease) {
  TestStore s;
  s.ApplyOk(GrantReq(7, 100));
  s.ApplyOk(PutReq("k", "1", 7));
  kvpb::Request put = PutReq("k", "2");
  put.mutable_put()->set_ignore_lease(true);
  s.ApplyOk(put);
  auto kv = Get(*s, "k").kvs(0);
  EXPECT_EQ(kv.value(), "2");
  EXPECT_EQ(kv.lease(), 7);
}

TEST(KvWrite, IgnoreValueOrLeaseOnAMissingKeyIsKeyNotFound) {
  TestStore s;
  kvpb::Request put = PutReq("k", "");
  put.mutable_put()->set_ignore_value(true);
  Status st = s.ApplyStatus(put);
  EXPECT_EQ(st.message(), "etcdserver: key not found");
  EXPECT_EQ(GrpcCodeOf(st), GrpcCode::kInvalidArgument);
  put = PutReq("k", "v");
  put.mutable_put()->set_ignore_lease(true);
  EXPECT_EQ(s.ApplyStatus(put).message(), "etcdserver: key not found");
  EXPECT_EQ(s->Revision(), 1);
}

TEST(KvWrite, IgnoreValueWithAValueIsRefused) {
  TestStore s;
  kvpb::Request put = PutReq("k", "v");
  put.mutable_put()->set_ignore_value(true);
  EXPECT_EQ(s->Validate(put).message(), "etcdserver: value is provided");
  EXPECT_EQ(s.ApplyStatus(put).message(), "etcdserver: value is provided");
}

TEST(KvWrite, IgnoreLeaseWithALeaseIsRefused) {
  TestStore s;
  kvpb::Request put = PutReq("k", "v", 5);
  put.mutable_put()->set_ignore_lease(true);
  EXPECT_EQ(s->Validate(put).message(), "etcdserver: lease is provided");
  EXPECT_EQ(s.ApplyStatus(put).message(), "etcdserver: lease is provided");
}

TEST(KvWrite, APutWithAnUnknownLeaseIsLeaseNotFound) {
  TestStore s;
  Status st = s.ApplyStatus(PutReq("k", "v", 99));
  EXPECT_EQ(st.message(), "etcdserver: requested lease not found");
  EXPECT_EQ(GrpcCodeOf(st), GrpcCode::kNotFound);
  EXPECT_EQ(s->Revision(), 1);
}

TEST(KvWrite, AnEmptyKeyIsRefusedForPutAndDelete) {
  TestStore s;
  EXPECT_EQ(s.ApplyStatus(PutReq("", "v")).message(), "etcdserver: key is not provided");
  EXPECT_EQ(s.ApplyStatus(DelReq("")).message(), "etcdserver: key is not provided");
  EXPECT_EQ(GrpcCodeOf(s->Validate(PutReq("", "v"))), GrpcCode::kInvalidArgument);
}

TEST(KvWrite, AFailedRequestStillAdvancesTheAppliedIndex) {
  TestStore s;
  s.ApplyOk(PutReq("k", "v"));
  EXPECT_EQ(s->AppliedIndex(), 1u);
  EXPECT_FALSE(s.ApplyStatus(PutReq("", "v")).ok());
  EXPECT_EQ(s->AppliedIndex(), 2u);
  EXPECT_EQ(s->Revision(), 2);
  s.Reopen();
  EXPECT_EQ(s->AppliedIndex(), 2u);
}

TEST(KvWrite, ApplyingAnIndexAtOrBelowTheAppliedOneDoesNothing) {
  TestStore s;
  ASSERT_TRUE(s->Apply(5, PutReq("k", "1"), 0).ok());
  auto again = s->Apply(5, PutReq("k", "2"), 0);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again.value().skipped);
  auto older = s->Apply(3, PutReq("k", "3"), 0);
  ASSERT_TRUE(older.ok());
  EXPECT_TRUE(older.value().skipped);
  EXPECT_EQ(Get(*s, "k").kvs(0).value(), "1");
  EXPECT_EQ(s->Revision(), 2);
  EXPECT_EQ(s->AppliedIndex(), 5u);
}

TEST(KvWrite, MarkAppliedRecordsANonKvEntry) {
  TestStore s;
  ASSERT_TRUE(s->MarkApplied(4).ok());
  EXPECT_EQ(s->AppliedIndex(), 4u);
  EXPECT_TRUE(s->Apply(4, PutReq("k", "1"), 0).value().skipped);
  s.Reopen();
  EXPECT_EQ(s->AppliedIndex(), 4u);
  EXPECT_EQ(s->Revision(), 1);
}

TEST(KvWrite, UnparsableEntryBytesAreAnInvalidArgumentOutcome) {
  TestStore s;
  auto r = s->ApplyBytes(1, "\xff\xff\xff", 0);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r.value().status.ok());
  EXPECT_EQ(s->AppliedIndex(), 1u);
  std::string bytes;
  ASSERT_TRUE(PutReq("k", "v").SerializeToString(&bytes));
  r = s->ApplyBytes(2, bytes, 0);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.value().status.ok());
  EXPECT_EQ(Get(*s, "k").kvs(0).value(), "v");
}

TEST(KvWrite, KeysAndValuesMayHoldAnyBytes) {
  TestStore s;
  const std::string key("\0k\xff\0", 4), value("\0\x01\xff", 3);
  s.ApplyOk(PutReq(key, value));
  auto r = Get(*s, key);
  ASSERT_EQ(r.kvs_size(), 1);
  EXPECT_EQ(r.kvs(0).value(), value);
}

}  // namespace
}  // namespace synod::kv
