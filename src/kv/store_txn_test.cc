// Txn: compares, branches, nesting, one revision per txn, and etcd's request checks.
#include <gtest/gtest.h>

#include "kv/errors.h"
#include "kv/kv_test_util.h"

namespace synod::kv {
namespace {

using Strings = std::vector<std::string>;
using C = kvpb::Compare;

kvpb::TxnRequest Txn(std::vector<kvpb::Compare> compares, std::vector<kvpb::RequestOp> then_ops,
                     std::vector<kvpb::RequestOp> else_ops = {}) {
  kvpb::TxnRequest t;
  for (auto& c : compares) *t.add_compare() = c;
  for (auto& op : then_ops) *t.add_success() = op;
  for (auto& op : else_ops) *t.add_failure() = op;
  return t;
}

class KvTxn : public ::testing::Test {
 protected:
  // k=v (rev 2, lease 0), then k=w (rev 3): version 2, create 2, mod 3.
  void SetUp() override {
    s_.ApplyOk(PutReq("k", "v"));
    s_.ApplyOk(PutReq("k", "w"));
  }
  bool Succeeds(kvpb::Compare c) {
    auto r = s_.ApplyOk(TxnReq(Txn({c}, {})));
    return r.txn().succeeded();
  }
  TestStore s_;
};

TEST_F(KvTxn, EachCompareTargetAndResultChoosesTheBranch) {
  EXPECT_TRUE(Succeeds(CmpValue("k", C::EQUAL, "w")));
  EXPECT_FALSE(Succeeds(CmpValue("k", C::EQUAL, "v")));
  EXPECT_TRUE(Succeeds(CmpValue("k", C::GREATER, "v")));
  EXPECT_TRUE(Succeeds(CmpValue("k", C::LESS, "x")));
  EXPECT_TRUE(Succeeds(CmpValue("k", C::NOT_EQUAL, "v")));
  EXPECT_TRUE(Succeeds(CmpVersion("k", C::EQUAL, 2)));
  EXPECT_TRUE(Succeeds(CmpVersion("k", C::GREATER, 1)));
  EXPECT_FALSE(Succeeds(CmpVersion("k", C::LESS, 2)));
  EXPECT_TRUE(Succeeds(CmpCreate("k", C::EQUAL, 2)));
  EXPECT_TRUE(Succeeds(CmpMod("k", C::EQUAL, 3)));
  EXPECT_TRUE(Succeeds(CmpMod("k", C::NOT_EQUAL, 2)));
  EXPECT_TRUE(Succeeds(CmpLease("k", C::EQUAL, 0)));
  EXPECT_FALSE(Succeeds(CmpLease("k", C::GREATER, 0)));
}

TEST_F(KvTxn, AValueCompareOnAMissingKeyAlwaysFails) {
  EXPECT_FALSE(Succeeds(CmpValue("missing", C::EQUAL, "")));
  EXPECT_FALSE(Succeeds(CmpValue("missing", C::NOT_EQUAL, "x")));
}

TEST_F(KvTxn, OtherComparesOnAMissingKeyCompareZero) {
  EXPECT_TRUE(Succeeds(CmpVersion("missing", C::EQUAL, 0)));
  EXPECT_TRUE(Succeeds(CmpCreate("missing", C::EQUAL, 0)));
  EXPECT_TRUE(Succeeds(CmpMod("missing", C::LESS, 1)));
}

TEST_F(KvTxn, ACompareOverARangeNeedsEveryKeyToMatch) {
  s_.ApplyOk(PutReq("k2", "w"));
  C c = CmpValue("k", C::EQUAL, "w");
  c.set_range_end("l");
  EXPECT_TRUE(Succeeds(c));
  s_.ApplyOk(PutReq("k3", "x"));
  EXPECT_FALSE(Succeeds(c));
  c.set_range_end(std::string(1, '\0'));
  EXPECT_FALSE(Succeeds(c));
}

TEST_F(KvTxn, TheElseBranchRunsWhenACompareFails) {
  auto r = s_.ApplyOk(TxnReq(Txn({CmpValue("k", C::EQUAL, "nope")}, {OpPut("then", "1")},
                                 {OpPut("else", "1"), OpRange("k")})));
  EXPECT_FALSE(r.txn().succeeded());
  ASSERT_EQ(r.txn().responses_size(), 2);
  EXPECT_TRUE(r.txn().responses(0).has_response_put());
  EXPECT_EQ(r.txn().responses(1).response_range().kvs(0).value(), "w");
  EXPECT_EQ(Get(*s_, "then").kvs_size(), 0);
  EXPECT_EQ(Get(*s_, "else").kvs_size(), 1);
}

TEST_F(KvTxn, ATxnWithSeveralWritesIsOneRevision) {
  auto r = s_.ApplyOk(
      TxnReq(Txn({}, {OpPut("a", "1"), OpPut("b", "2"), OpDel("k"), OpRange("a", "c")})));
  EXPECT_EQ(r.txn().header().revision(), 4);
  EXPECT_EQ(s_->Revision(), 4);
  EXPECT_EQ(Get(*s_, "a").kvs(0).mod_revision(), 4);
  EXPECT_EQ(Get(*s_, "b").kvs(0).mod_revision(), 4);
  EXPECT_EQ(r.txn().responses(0).response_put().header().revision(), 4);
  // The range saw the txn's own writes.
  EXPECT_EQ(Keys(r.txn().responses(3).response_range()), (Strings{"a", "b"}));
  EXPECT_EQ(r.txn().responses(3).response_range().header().revision(), 4);
  // Sub-revisions order the changes within the revision.
  auto events = s_->EventsSince(4, std::string(1, '\0'), std::string(1, '\0'), false, 100);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events.value().events.size(), 3u);
  EXPECT_EQ(events.value().events[0].kv().key(), "a");
  EXPECT_EQ(events.value().events[1].kv().key(), "b");
  EXPECT_EQ(events.value().events[2].kv().key(), "k");
  EXPECT_EQ(events.value().events[2].type(), kvpb::Event::DELETE);
}

TEST_F(KvTxn, ATxnThatChangesNothingKeepsTheRevision) {
  auto r = s_.ApplyOk(TxnReq(Txn({}, {OpRange("k"), OpDel("missing")})));
  EXPECT_EQ(r.txn().header().revision(), 3);
  EXPECT_EQ(r.txn().responses(1).response_delete_range().header().revision(), 3);
  EXPECT_EQ(s_->Revision(), 3);
  r = s_.ApplyOk(TxnReq(Txn({}, {})));
  EXPECT_EQ(r.txn().header().revision(), 3);
}

TEST_F(KvTxn, ARangeBeforeTheFirstWriteReportsTheStartRevision) {
  auto r = s_.ApplyOk(TxnReq(Txn({}, {OpRange("k"), OpPut("a", "1"), OpRange("a")})));
  EXPECT_EQ(r.txn().responses(0).response_range().header().revision(), 3);
  EXPECT_EQ(r.txn().responses(2).response_range().header().revision(), 4);
}

TEST_F(KvTxn, AnExplicitRevisionInsideATxnReadsThePast) {
  auto r = s_.ApplyOk(TxnReq(Txn({}, {OpPut("k2", "x"), OpRange("k", "l", 2)})));
  auto range = r.txn().responses(1).response_range();
  EXPECT_EQ(Keys(range), (Strings{"k"}));
  EXPECT_EQ(range.kvs(0).value(), "v");
}

TEST_F(KvTxn, NestedComparesAreEvaluatedBeforeAnyWrite) {
  // The outer txn puts k=z first; the nested compare still sees k=w.
  auto inner = Txn({CmpValue("k", C::EQUAL, "w")}, {OpPut("saw", "w")}, {OpPut("saw", "z")});
  auto r = s_.ApplyOk(TxnReq(Txn({}, {OpPut("k", "z"), OpTxn(inner)})));
  EXPECT_EQ(Get(*s_, "saw").kvs(0).value(), "w");
  const auto& nested = r.txn().responses(1).response_txn();
  EXPECT_TRUE(nested.succeeded());
  // Nested responses carry an empty header, as etcd's do.
  EXPECT_TRUE(nested.has_header());
  EXPECT_EQ(nested.header().revision(), 0);
  EXPECT_EQ(r.txn().header().revision(), 4);
}

TEST_F(KvTxn, DeeplyNestedTxnsFollowTheirOwnBranches) {
  auto level3 = Txn({CmpVersion("k", C::EQUAL, 99)}, {OpPut("l3", "then")}, {OpPut("l3", "else")});
  auto level2 = Txn({CmpVersion("k", C::EQUAL, 2)}, {OpTxn(level3), OpPut("l2", "then")},
                    {OpPut("l2", "else")});
  auto r = s_.ApplyOk(TxnReq(Txn({CmpVersion("k", C::EQUAL, 2)}, {OpTxn(level2)})));
  EXPECT_TRUE(r.txn().succeeded());
  EXPECT_EQ(Get(*s_, "l2").kvs(0).value(), "then");
  EXPECT_EQ(Get(*s_, "l3").kvs(0).value(), "else");
  EXPECT_EQ(s_->Revision(), 4);
}

TEST_F(KvTxn, PuttingTheSameKeyTwiceIsADuplicateKey) {
  Status st = s_.ApplyStatus(TxnReq(Txn({}, {OpPut("a", "1"), OpPut("a", "2")})));
  EXPECT_EQ(st.message(), "etcdserver: duplicate key given in txn request");
  EXPECT_EQ(GrpcCodeOf(st), GrpcCode::kInvalidArgument);
  EXPECT_EQ(s_->Revision(), 3);
}

TEST_F(KvTxn, PuttingAndDeletingTheSameKeyIsADuplicateKey) {
  EXPECT_EQ(s_.ApplyStatus(TxnReq(Txn({}, {OpDel("a", "c"), OpPut("b", "2")}))).message(),
            "etcdserver: duplicate key given in txn request");
  EXPECT_EQ(s_.ApplyStatus(TxnReq(Txn({}, {OpPut("b", "2"), OpDel("b")}))).message(),
            "etcdserver: duplicate key given in txn request");
  EXPECT_EQ(s_.ApplyStatus(TxnReq(Txn({}, {OpPut("b", "2"), OpDel("a", std::string(1, '\0'))})))
                .message(),
            "etcdserver: duplicate key given in txn request");
  // A put in a nested txn against a delete outside it.
  EXPECT_EQ(
      s_.ApplyStatus(TxnReq(Txn({}, {OpDel("b"), OpTxn(Txn({}, {OpPut("b", "1")}))}))).message(),
      "etcdserver: duplicate key given in txn request");
  // Two nested txns putting the same key.
  EXPECT_EQ(s_.ApplyStatus(TxnReq(Txn({}, {OpTxn(Txn({}, {OpPut("b", "1")})),
                                           OpTxn(Txn({}, {}, {OpPut("b", "1")}))})))
                .message(),
            "etcdserver: duplicate key given in txn request");
  EXPECT_EQ(s_->Revision(), 3);
}

TEST_F(KvTxn, ThenAndElseOfANestedTxnMayPutTheSameKey) {
  auto inner = Txn({CmpVersion("k", C::EQUAL, 2)}, {OpPut("b", "then")}, {OpPut("b", "else")});
  s_.ApplyOk(TxnReq(Txn({}, {OpTxn(inner)})));
  EXPECT_EQ(Get(*s_, "b").kvs(0).value(), "then");
  // ... and the outer branches are separate requests anyway.
  s_.ApplyOk(TxnReq(Txn({}, {OpPut("c", "1")}, {OpPut("c", "2")})));
}

TEST_F(KvTxn, OverlappingDeletesAreAllowed) {
  s_.ApplyOk(PutReq("a", "1"));
  auto r = s_.ApplyOk(TxnReq(Txn({}, {OpDel("a", "z"), OpDel("k"), OpDel("a")})));
  EXPECT_EQ(r.txn().responses(0).response_delete_range().deleted(), 2);
  EXPECT_EQ(r.txn().responses(1).response_delete_range().deleted(), 0);
  EXPECT_EQ(r.txn().responses(2).response_delete_range().deleted(), 0);
  EXPECT_EQ(s_->Revision(), 5);
}

TEST(KvTxnLimits, MoreOpsThanTheBoundIsTooManyOperations) {
  TestStore s(StoreOptions{.txn_ops_max = 4});
  kvpb::TxnRequest t;
  for (int i = 0; i < 5; ++i) *t.add_success() = OpPut("k" + std::to_string(i), "v");
  Status st = s.ApplyStatus(TxnReq(t));
  EXPECT_EQ(st.message(), "etcdserver: too many operations in txn request");
  EXPECT_EQ(GrpcCodeOf(st), GrpcCode::kInvalidArgument);
  t.mutable_success()->RemoveLast();
  EXPECT_TRUE(s.ApplyStatus(TxnReq(t)).ok());
  // Compares count too, and a nested txn gets what its parent's widest list left.
  kvpb::TxnRequest compares;
  for (int i = 0; i < 5; ++i) *compares.add_compare() = CmpVersion("k", C::EQUAL, 0);
  EXPECT_EQ(s.ApplyStatus(TxnReq(compares)).message(),
            "etcdserver: too many operations in txn request");
  kvpb::TxnRequest nested = Txn({}, {OpPut("n1", "v"), OpPut("n2", "v")});
  EXPECT_EQ(
      s.ApplyStatus(TxnReq(Txn({}, {OpTxn(nested), OpPut("o1", "v"), OpPut("o2", "v")}))).message(),
      "etcdserver: too many operations in txn request");
}

TEST(KvTxnLimits, TheDefaultBoundIs128Operations) {
  TestStore s;
  kvpb::TxnRequest t;
  for (int i = 0; i < 128; ++i) *t.add_success() = OpPut("k" + std::to_string(i), "v");
  EXPECT_TRUE(s.ApplyStatus(TxnReq(t)).ok());
  *t.add_success() = OpPut("k128", "v");
  EXPECT_EQ(s.ApplyStatus(TxnReq(t)).message(), "etcdserver: too many operations in txn request");
}

TEST_F(KvTxn, AnEmptyOperationIsKeyNotFound) {
  kvpb::TxnRequest t;
  t.add_success();
  EXPECT_EQ(s_.ApplyStatus(TxnReq(t)).message(), "etcdserver: key not found");
}

TEST_F(KvTxn, ACompareWithoutAKeyIsRefused) {
  EXPECT_EQ(s_.ApplyStatus(TxnReq(Txn({CmpVersion("", C::EQUAL, 0)}, {}))).message(),
            "etcdserver: key is not provided");
  EXPECT_EQ(s_.ApplyStatus(TxnReq(Txn({}, {OpPut("", "v")}))).message(),
            "etcdserver: key is not provided");
}

TEST_F(KvTxn, AFailedCheckAbortsTheWholeTxn) {
  // The put's lease does not exist: nothing of the txn happens.
  Status st = s_.ApplyStatus(TxnReq(Txn({}, {OpPut("a", "1"), OpPut("b", "2", 77)})));
  EXPECT_EQ(st.message(), "etcdserver: requested lease not found");
  EXPECT_EQ(Get(*s_, "a").kvs_size(), 0);
  EXPECT_EQ(s_->Revision(), 3);
  // ignore_value on a missing key, in a nested txn.
  kvpb::RequestOp put = OpPut("missing", "");
  put.mutable_request_put()->set_ignore_value(true);
  st = s_.ApplyStatus(TxnReq(Txn({}, {OpPut("a", "1"), OpTxn(Txn({}, {put}))})));
  EXPECT_EQ(st.message(), "etcdserver: key not found");
  EXPECT_EQ(Get(*s_, "a").kvs_size(), 0);
  // Only the branch that runs is checked.
  s_.ApplyOk(TxnReq(Txn({CmpVersion("k", C::EQUAL, 2)}, {OpPut("a", "1")}, {put})));
  EXPECT_EQ(Get(*s_, "a").kvs_size(), 1);
}

TEST_F(KvTxn, ARangeAtACompactedOrFutureRevisionFailsTheTxn) {
  s_.ApplyOk(CompactReq(3));
  EXPECT_EQ(s_.ApplyStatus(TxnReq(Txn({}, {OpPut("a", "1"), OpRange("k", "", 2)}))).message(),
            "etcdserver: mvcc: required revision has been compacted");
  EXPECT_EQ(s_.ApplyStatus(TxnReq(Txn({}, {OpPut("a", "1"), OpRange("k", "", 4)}))).message(),
            "etcdserver: mvcc: required revision is a future revision");
  EXPECT_EQ(s_->Revision(), 3);
  EXPECT_TRUE(s_.ApplyStatus(TxnReq(Txn({}, {OpRange("k", "", 3)}))).ok());
}

TEST_F(KvTxn, PutsInATxnMoveKeysBetweenLeases) {
  s_.ApplyOk(GrantReq(1, 60));
  s_.ApplyOk(GrantReq(2, 60));
  s_.ApplyOk(TxnReq(Txn({}, {OpPut("a", "1", 1), OpPut("b", "1", 1)})));
  s_.ApplyOk(TxnReq(Txn({CmpLease("a", C::EQUAL, 1)}, {OpPut("a", "2", 2)})));
  kvpb::LeaseTimeToLiveRequest ttl;
  ttl.set_id(1);
  ttl.set_keys(true);
  EXPECT_EQ(s_->LeaseTimeToLive(ttl, 0).value().keys_size(), 1);
  ttl.set_id(2);
  EXPECT_EQ(s_->LeaseTimeToLive(ttl, 0).value().keys(0), "a");
}

}  // namespace
}  // namespace synod::kv
