// Leases: grant, attach, revoke in one revision, the leader-local expiry, restart.
#include <gtest/gtest.h>

#include "kv/errors.h"
#include "kv/kv_test_util.h"

namespace synod::kv {
namespace {

using Strings = std::vector<std::string>;

kvpb::LeaseTimeToLiveResponse TimeToLive(Store& store, int64_t id, uint64_t now_ms,
                                         bool keys = true) {
  kvpb::LeaseTimeToLiveRequest r;
  r.set_id(id);
  r.set_keys(keys);
  auto out = store.LeaseTimeToLive(r, now_ms);
  EXPECT_TRUE(out.ok());
  return out.ok() ? out.value() : kvpb::LeaseTimeToLiveResponse();
}

Result<kvpb::LeaseKeepAliveResponse> KeepAlive(Store& store, int64_t id, uint64_t now_ms) {
  kvpb::LeaseKeepAliveRequest r;
  r.set_id(id);
  return store.LeaseKeepAlive(r, now_ms);
}

TEST(KvLease, AGrantCreatesALeaseWithTheGivenIdAndTtl) {
  TestStore s;
  auto r = s.ApplyOk(GrantReq(42, 30));
  EXPECT_EQ(r.lease_grant().id(), 42);
  EXPECT_EQ(r.lease_grant().ttl(), 30);
  EXPECT_EQ(r.lease_grant().header().revision(), 1);  // a grant is not a key revision
  EXPECT_EQ(s->LeaseLeases().leases_size(), 1);
  auto ttl = TimeToLive(*s, 42, 0);
  EXPECT_EQ(ttl.grantedttl(), 30);
  EXPECT_EQ(ttl.ttl(), 30);  // not primary: the full TTL
}

TEST(KvLease, AShortTtlIsRaisedToTheMinimum) {
  TestStore s(StoreOptions{.lease_ttl_min_s = 5});
  EXPECT_EQ(s.ApplyOk(GrantReq(1, 1)).lease_grant().ttl(), 5);
  EXPECT_EQ(s.ApplyOk(GrantReq(2, -3)).lease_grant().ttl(), 5);
  EXPECT_EQ(s.ApplyOk(GrantReq(3, 6)).lease_grant().ttl(), 6);
  TestStore defaults;
  EXPECT_EQ(defaults.ApplyOk(GrantReq(1, 1)).lease_grant().ttl(), 2);  // etcd's default
}

TEST(KvLease, ATooLargeTtlIsRefused) {
  TestStore s;
  Status st = s.ApplyStatus(GrantReq(1, 9000000001));
  EXPECT_EQ(st.message(), "etcdserver: too large lease TTL");
  EXPECT_EQ(GrpcCodeOf(st), GrpcCode::kOutOfRange);
  EXPECT_TRUE(s.ApplyStatus(GrantReq(1, 9000000000)).ok());
}

TEST(KvLease, GrantingAnExistingIdIsRefused) {
  TestStore s;
  s.ApplyOk(GrantReq(1, 10));
  Status st = s.ApplyStatus(GrantReq(1, 20));
  EXPECT_EQ(st.message(), "etcdserver: lease already exists");
  EXPECT_EQ(GrpcCodeOf(st), GrpcCode::kFailedPrecondition);
  EXPECT_EQ(TimeToLive(*s, 1, 0).grantedttl(), 10);
}

TEST(KvLease, AGrantWithoutIdGetsTheSameIdOnEveryMember) {
  TestStore a, b;
  a.next_index = b.next_index = 17;
  const int64_t id_a = a.ApplyOk(GrantReq(0, 10)).lease_grant().id();
  const int64_t id_b = b.ApplyOk(GrantReq(0, 10)).lease_grant().id();
  EXPECT_NE(id_a, 0);
  EXPECT_GT(id_a, 0);
  EXPECT_EQ(id_a, id_b);
  EXPECT_NE(a.ApplyOk(GrantReq(0, 10)).lease_grant().id(), id_a);
}

TEST(KvLease, RevokeDeletesEveryAttachedKeyInOneRevision) {
  TestStore s;
  s.ApplyOk(GrantReq(9, 60));
  s.ApplyOk(PutReq("b", "1", 9));
  s.ApplyOk(PutReq("a", "1", 9));
  s.ApplyOk(PutReq("c", "1"));  // no lease
  EXPECT_EQ(TimeToLive(*s, 9, 0).keys_size(), 2);
  auto r = s.ApplyOk(RevokeReq(9));
  EXPECT_EQ(r.lease_revoke().header().revision(), 5);
  EXPECT_EQ(s->Revision(), 5);
  EXPECT_EQ(Keys(Get(*s, "a", "z")), (Strings{"c"}));
  EXPECT_EQ(s->LeaseLeases().leases_size(), 0);
  // In key order, as sub-revisions of one revision.
  auto events = s->EventsSince(5, "a", "z", false, 10).value().events;
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kv().key(), "a");
  EXPECT_EQ(events[1].kv().key(), "b");
  EXPECT_EQ(TimeToLive(*s, 9, 0).ttl(), -1);
}

TEST(KvLease, RevokingALeaseWithoutKeysKeepsTheRevision) {
  TestStore s;
  s.ApplyOk(GrantReq(9, 60));
  s.ApplyOk(RevokeReq(9));
  EXPECT_EQ(s->Revision(), 1);
}

TEST(KvLease, RevokingAnUnknownLeaseIsNotFound) {
  TestStore s;
  Status st = s.ApplyStatus(RevokeReq(5));
  EXPECT_EQ(st.message(), "etcdserver: requested lease not found");
  s.ApplyOk(GrantReq(5, 60));
  s.ApplyOk(RevokeReq(5));
  EXPECT_EQ(s.ApplyStatus(RevokeReq(5)).message(), "etcdserver: requested lease not found");
}

TEST(KvLease, AKeyFollowsItsLatestPut) {
  TestStore s;
  s.ApplyOk(GrantReq(1, 60));
  s.ApplyOk(GrantReq(2, 60));
  s.ApplyOk(PutReq("k", "v", 1));
  s.ApplyOk(PutReq("k", "v", 2));  // moves to lease 2
  EXPECT_EQ(TimeToLive(*s, 1, 0).keys_size(), 0);
  EXPECT_EQ(TimeToLive(*s, 2, 0).keys(0), "k");
  s.ApplyOk(PutReq("k", "v"));  // no lease any more
  EXPECT_EQ(TimeToLive(*s, 2, 0).keys_size(), 0);
  s.ApplyOk(PutReq("k", "v", 1));
  s.ApplyOk(DelReq("k"));  // deleting detaches
  EXPECT_EQ(TimeToLive(*s, 1, 0).keys_size(), 0);
  s.ApplyOk(PutReq("k", "again"));
  s.ApplyOk(RevokeReq(1));
  EXPECT_EQ(Get(*s, "k").kvs_size(), 1);  // not attached any more: survives
}

TEST(KvLease, OnlyThePrimaryExpiresLeases) {
  TestStore s;
  s.now_ms = 1000;
  s.ApplyOk(GrantReq(1, 10));
  EXPECT_TRUE(s->ExpiredLeases(1'000'000'000, 10).empty());  // not primary
  s->Promote(2000, 0);
  EXPECT_TRUE(s->ExpiredLeases(11'999, 10).empty());
  EXPECT_EQ(s->ExpiredLeases(12'000, 10), (std::vector<int64_t>{1}));
  s->Demote();
  EXPECT_TRUE(s->ExpiredLeases(1'000'000'000, 10).empty());
}

TEST(KvLease, ExpiredLeasesComeSoonestFirstAndBounded) {
  TestStore s;
  s->Promote(0, 0);
  s.now_ms = 0;
  s.ApplyOk(GrantReq(3, 30));
  s.ApplyOk(GrantReq(1, 10));
  s.ApplyOk(GrantReq(2, 20));
  EXPECT_EQ(s->ExpiredLeases(100'000, 10), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(s->ExpiredLeases(100'000, 2), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(s->ExpiredLeases(20'000, 10), (std::vector<int64_t>{1, 2}));
}

TEST(KvLease, AGrantOnThePrimaryExpiresTtlAfterTheApplyTime) {
  TestStore s;
  s->Promote(0, 0);
  s.now_ms = 50'000;
  s.ApplyOk(GrantReq(1, 10));
  EXPECT_TRUE(s->ExpiredLeases(59'999, 10).empty());
  EXPECT_EQ(s->ExpiredLeases(60'000, 10).size(), 1u);
  EXPECT_EQ(TimeToLive(*s, 1, 55'500).ttl(), 4);  // 4.5 s left: truncated, as etcd does
}

TEST(KvLease, KeepAliveRefreshesTheExpiry) {
  TestStore s;
  s->Promote(0, 0);
  s.now_ms = 0;
  s.ApplyOk(GrantReq(1, 10));
  auto r = KeepAlive(*s, 1, 8'000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value().ttl(), 10);
  EXPECT_EQ(r.value().id(), 1);
  EXPECT_TRUE(s->ExpiredLeases(17'999, 10).empty());
  EXPECT_EQ(s->ExpiredLeases(18'000, 10).size(), 1u);
}

TEST(KvLease, KeepAliveOfAnExpiredOrUnknownLeaseIsNotFound) {
  TestStore s;
  s->Promote(0, 0);
  s.now_ms = 0;
  s.ApplyOk(GrantReq(1, 10));
  EXPECT_EQ(KeepAlive(*s, 1, 10'000).status().message(), "etcdserver: requested lease not found");
  EXPECT_EQ(KeepAlive(*s, 2, 0).status().message(), "etcdserver: requested lease not found");
}

TEST(KvLease, KeepAliveAwayFromThePrimaryIsRefused) {
  TestStore s;
  s.ApplyOk(GrantReq(1, 10));
  auto r = KeepAlive(*s, 1, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotLeader);
}

TEST(KvLease, PromoteGivesEveryLeaseItsFullTtlPlusTheExtension) {
  TestStore s;
  s.ApplyOk(GrantReq(1, 10));
  s.ApplyOk(GrantReq(2, 20));
  s->Promote(100'000, 3'000);
  EXPECT_TRUE(s->ExpiredLeases(112'999, 10).empty());
  EXPECT_EQ(s->ExpiredLeases(113'000, 10), (std::vector<int64_t>{1}));
  EXPECT_EQ(s->ExpiredLeases(123'000, 10), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(TimeToLive(*s, 2, 100'000).ttl(), 23);
}

TEST(KvLease, LeasesAndTheirKeysSurviveARestart) {
  TestStore s;
  s.ApplyOk(GrantReq(1, 10));
  s.ApplyOk(GrantReq(2, 20));
  s.ApplyOk(PutReq("a", "1", 1));
  s.ApplyOk(PutReq("b", "1", 2));
  s->Promote(0, 0);
  s.Reopen();
  EXPECT_FALSE(s->IsPrimary());
  EXPECT_EQ(s->LeaseLeases().leases_size(), 2);
  EXPECT_EQ(TimeToLive(*s, 1, 0).grantedttl(), 10);
  EXPECT_EQ(TimeToLive(*s, 1, 0).keys(0), "a");
  // Restarted leases wait for a promotion before they can expire.
  EXPECT_TRUE(s->ExpiredLeases(1'000'000, 10).empty());
  s->Promote(1'000'000, 0);
  EXPECT_EQ(s->ExpiredLeases(1'010'000, 10), (std::vector<int64_t>{1}));
  s.ApplyOk(RevokeReq(1));
  EXPECT_EQ(Keys(Get(*s, "a", "z")), (Strings{"b"}));
}

TEST(KvLease, TheLeaseListIsSortedById) {
  TestStore s;
  for (int64_t id : {5, -3, 100, 7}) s.ApplyOk(GrantReq(id, 10));
  auto leases = s->LeaseLeases();
  std::vector<int64_t> ids;
  for (const auto& l : leases.leases()) ids.push_back(l.id());
  EXPECT_EQ(ids, (std::vector<int64_t>{-3, 5, 7, 100}));
}

}  // namespace
}  // namespace synod::kv
