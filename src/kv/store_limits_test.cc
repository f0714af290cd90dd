// Limits: request, key and value sizes; the backend quota and etcd's NOSPACE alarm; the
// CORRUPT alarm; the error-code mapping.
#include <gtest/gtest.h>

#include "base/rng.h"
#include "kv/errors.h"
#include "kv/kv_test_util.h"

namespace synod::kv {
namespace {

using A = kvpb::AlarmRequest;

TEST(KvLimits, ARequestLargerThanTheBoundIsTooLarge) {
  TestStore s;  // etcd's default: 1.5 MiB
  Status st = s.ApplyStatus(PutReq("k", std::string(1536 * 1024, 'x')));
  EXPECT_EQ(st.message(), "etcdserver: request is too large");
  EXPECT_EQ(GrpcCodeOf(st), GrpcCode::kInvalidArgument);
  EXPECT_EQ(s->Validate(PutReq("k", std::string(1536 * 1024, 'x'))).code(), Code::kTooLarge);
  EXPECT_TRUE(s.ApplyStatus(PutReq("k", std::string(1500 * 1024, 'x'))).ok());
  // The bound applies to the whole request: a txn of many smaller puts too.
  TestStore small(StoreOptions{.request_bytes_max = 1000});
  kvpb::TxnRequest t;
  for (int i = 0; i < 5; ++i)
    *t.add_success() = OpPut("k" + std::to_string(i), std::string(300, 'v'));
  EXPECT_EQ(small.ApplyStatus(TxnReq(t)).message(), "etcdserver: request is too large");
  EXPECT_EQ(small->Revision(), 1);
}

TEST(KvLimits, KeysAndValuesHaveTheirOwnBounds) {
  TestStore s(StoreOptions{.key_bytes_max = 8, .value_bytes_max = 16});
  EXPECT_TRUE(s.ApplyStatus(PutReq("12345678", std::string(16, 'v'))).ok());
  EXPECT_EQ(s.ApplyStatus(PutReq("123456789", "v")).message(), "etcdserver: request is too large");
  EXPECT_EQ(s.ApplyStatus(PutReq("k", std::string(17, 'v'))).message(),
            "etcdserver: request is too large");
  kvpb::TxnRequest t;
  *t.add_success() = OpPut("123456789", "v");
  EXPECT_EQ(s.ApplyStatus(TxnReq(t)).message(), "etcdserver: request is too large");
}

// One Range may not build an arbitrarily large response (etcd's OOM on huge ranges):
// past range_bytes_max of keys and values it is refused, and a limit makes it fit.
TEST(KvLimits, ARangeLargerThanItsBoundIsRefusedNotBuilt) {
  TestStore s(StoreOptions{.range_bytes_max = 500});
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(s.ApplyStatus(PutReq("k" + std::to_string(i), std::string(98, 'v'))).ok());
  }
  kvpb::RangeRequest all = RangeReq("k", "l").range();
  auto refused = s->Range(all);
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(refused.status().message().starts_with("synod: range response too large"));
  EXPECT_EQ(GrpcCodeOf(refused.status()), GrpcCode::kResourceExhausted);
  all.set_revision(5);  // the past too: keys k0..k3 are 400 bytes, within the bound
  EXPECT_TRUE(s->Range(all).ok());
  all.set_revision(0);
  all.set_limit(4);
  auto page = s->Range(all);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page.value().kvs_size(), 4);
  EXPECT_TRUE(page.value().more());
  EXPECT_EQ(page.value().count(), 10);
  all.set_limit(0);
  all.set_count_only(true);  // counting holds nothing
  EXPECT_TRUE(s->Range(all).ok());
}

TEST(KvLimits, QuotaCostFollowsEtcd) {
  EXPECT_EQ(Store::QuotaCost(PutReq("key", "value")), 256 + 3 + 5);
  EXPECT_EQ(Store::QuotaCost(GrantReq(1, 10)), 64);
  EXPECT_EQ(Store::QuotaCost(DelReq("k")), 0);
  EXPECT_EQ(Store::QuotaCost(RangeReq("k")), 0);
  kvpb::TxnRequest t;
  *t.add_success() = OpPut("a", "1");
  *t.add_success() = OpRange("a");
  *t.add_failure() = OpPut("bb", "22");
  EXPECT_EQ(Store::QuotaCost(TxnReq(t)), 256 + 4);  // the costlier branch
  kvpb::TxnRequest outer;
  *outer.add_success() = OpTxn(t);
  EXPECT_EQ(Store::QuotaCost(TxnReq(outer)), 256 + 4);  // nested puts count
}

class KvQuota : public ::testing::Test {
 protected:
  static constexpr uint64_t kQuota = 1 << 20;
  KvQuota() : s_(StoreOptions{.quota_bytes = kQuota}) {}
  TestStore s_;
};

TEST_F(KvQuota, TheNospaceAlarmStopsWritesThatGrowTheStoreUntilDisarmed) {
  // Incompressible values: RocksDB compresses its files.
  Rng rng(1);
  auto big = [&] {
    std::string v(64 << 10, '\0');
    for (auto& c : v) c = static_cast<char>(rng.Next());
    return v;
  };
  // Fill until the quota check says no (what the server checks before proposing).
  int puts = 0;
  while (s_->QuotaAvailable(PutReq("k", big()))) {
    s_.ApplyOk(PutReq("k" + std::to_string(puts % 4), big()));
    ASSERT_LT(++puts, 100);
  }
  EXPECT_TRUE(s_->QuotaAvailable(DelReq("k")));  // costless requests always pass
  EXPECT_TRUE(s_->QuotaAvailable(RangeReq("k")));
  // The server raises the alarm through the log.
  auto raised = s_.ApplyOk(AlarmReq(A::ACTIVATE, kvpb::NOSPACE, 7));
  ASSERT_EQ(raised.alarm().alarms_size(), 1);
  EXPECT_EQ(raised.alarm().alarms(0).memberid(), 7u);

  const int64_t rev = s_->Revision();
  Status st = s_.ApplyStatus(PutReq("k", "small"));
  EXPECT_EQ(st.message(), "etcdserver: mvcc: database space exceeded");
  EXPECT_EQ(GrpcCodeOf(st), GrpcCode::kResourceExhausted);
  kvpb::TxnRequest with_put;
  *with_put.add_failure() = OpPut("k", "small");
  EXPECT_EQ(s_.ApplyStatus(TxnReq(with_put)).message(),
            "etcdserver: mvcc: database space exceeded");
  EXPECT_EQ(s_.ApplyStatus(GrantReq(1, 10)).message(), "etcdserver: mvcc: database space exceeded");
  EXPECT_EQ(s_->Revision(), rev);
  // Reads, deletes, txns without puts and compaction still work.
  EXPECT_EQ(Get(*s_, "k0").kvs_size(), 1);
  kvpb::TxnRequest no_put;
  *no_put.add_success() = OpRange("k0");
  *no_put.add_success() = OpDel("k3");
  EXPECT_TRUE(s_.ApplyStatus(TxnReq(no_put)).ok());
  EXPECT_TRUE(s_.ApplyStatus(DelReq("k", "l")).ok());
  EXPECT_TRUE(s_.ApplyStatus(CompactReq(s_->Revision())).ok());

  // Compaction and defragmentation bring the size down ...
  while (!s_->CompactStep(64).value().done) {
  }
  ASSERT_TRUE(s_->Defragment().ok());
  EXPECT_LT(s_->SizeBytes(), kQuota / 2);
  EXPECT_TRUE(s_->QuotaAvailable(PutReq("k", "small")));
  // ... but writes stay refused until the alarm is disarmed.
  EXPECT_EQ(s_.ApplyStatus(PutReq("k", "small")).message(),
            "etcdserver: mvcc: database space exceeded");
  auto disarmed = s_.ApplyOk(AlarmReq(A::DEACTIVATE, kvpb::NOSPACE, 7));
  EXPECT_EQ(disarmed.alarm().alarms_size(), 1);
  EXPECT_TRUE(s_.ApplyStatus(PutReq("k", "small")).ok());
  EXPECT_TRUE(s_.ApplyStatus(GrantReq(1, 10)).ok());
}

TEST_F(KvQuota, TheAlarmSurvivesARestart) {
  s_.ApplyOk(AlarmReq(A::ACTIVATE, kvpb::NOSPACE, 7));
  s_.Reopen();
  EXPECT_EQ(s_.ApplyStatus(PutReq("k", "v")).message(),
            "etcdserver: mvcc: database space exceeded");
  ASSERT_EQ(s_->Alarms().size(), 1u);
  EXPECT_EQ(s_->Alarms()[0].alarm(), kvpb::NOSPACE);
}

TEST(KvAlarm, AlarmsAreListedActivatedOnceAndDeactivatedOnce) {
  TestStore s;
  EXPECT_EQ(s.ApplyOk(AlarmReq(A::ACTIVATE, kvpb::NOSPACE, 1)).alarm().alarms_size(), 1);
  EXPECT_EQ(s.ApplyOk(AlarmReq(A::ACTIVATE, kvpb::NOSPACE, 1)).alarm().alarms_size(), 0);
  EXPECT_EQ(s.ApplyOk(AlarmReq(A::ACTIVATE, kvpb::NOSPACE, 2)).alarm().alarms_size(), 1);
  EXPECT_EQ(s.ApplyOk(AlarmReq(A::ACTIVATE, kvpb::NONE, 2)).alarm().alarms_size(), 0);
  EXPECT_EQ(s.ApplyOk(AlarmReq(A::GET, kvpb::NONE)).alarm().alarms_size(), 2);
  EXPECT_EQ(s.ApplyOk(AlarmReq(A::GET, kvpb::CORRUPT)).alarm().alarms_size(), 0);
  EXPECT_EQ(s.ApplyOk(AlarmReq(A::DEACTIVATE, kvpb::NOSPACE, 1)).alarm().alarms_size(), 1);
  EXPECT_EQ(s.ApplyOk(AlarmReq(A::DEACTIVATE, kvpb::NOSPACE, 1)).alarm().alarms_size(), 0);
  // One member's alarm is enough to cap the store.
  EXPECT_FALSE(s.ApplyStatus(PutReq("k", "v")).ok());
  s.ApplyOk(AlarmReq(A::DEACTIVATE, kvpb::NOSPACE, 2));
  EXPECT_TRUE(s.ApplyStatus(PutReq("k", "v")).ok());
}

TEST(KvAlarm, TheCorruptAlarmRefusesEveryKvRequest) {
  TestStore s;
  s.ApplyOk(PutReq("k", "v"));
  s.ApplyOk(GrantReq(1, 10));
  s.ApplyOk(AlarmReq(A::ACTIVATE, kvpb::CORRUPT));
  for (const auto& r : {PutReq("k", "v"), RangeReq("k"), DelReq("k"), CompactReq(2),
                        GrantReq(2, 10), RevokeReq(1), TxnReq(kvpb::TxnRequest())}) {
    Status st = s.ApplyStatus(r);
    EXPECT_EQ(st.message(), "etcdserver: corrupt cluster") << r.ShortDebugString();
    EXPECT_EQ(GrpcCodeOf(st), GrpcCode::kDataLoss);
  }
  s.ApplyOk(AlarmReq(A::DEACTIVATE, kvpb::CORRUPT));
  EXPECT_TRUE(s.ApplyStatus(PutReq("k", "v")).ok());
}

TEST(KvErrors, EveryEtcdErrorMapsToEtcdsGrpcCode) {
  EXPECT_EQ(GrpcCodeOf(ErrEmptyKey()), GrpcCode::kInvalidArgument);
  EXPECT_EQ(GrpcCodeOf(ErrKeyNotFound()), GrpcCode::kInvalidArgument);
  EXPECT_EQ(GrpcCodeOf(ErrValueProvided()), GrpcCode::kInvalidArgument);
  EXPECT_EQ(GrpcCodeOf(ErrLeaseProvided()), GrpcCode::kInvalidArgument);
  EXPECT_EQ(GrpcCodeOf(ErrTooManyOps()), GrpcCode::kInvalidArgument);
  EXPECT_EQ(GrpcCodeOf(ErrDuplicateKey()), GrpcCode::kInvalidArgument);
  EXPECT_EQ(GrpcCodeOf(ErrCompacted()), GrpcCode::kOutOfRange);
  EXPECT_EQ(GrpcCodeOf(ErrFutureRev()), GrpcCode::kOutOfRange);
  EXPECT_EQ(GrpcCodeOf(ErrNoSpace()), GrpcCode::kResourceExhausted);
  EXPECT_EQ(GrpcCodeOf(ErrLeaseNotFound()), GrpcCode::kNotFound);
  EXPECT_EQ(GrpcCodeOf(ErrLeaseExist()), GrpcCode::kFailedPrecondition);
  EXPECT_EQ(GrpcCodeOf(ErrLeaseTTLTooLarge()), GrpcCode::kOutOfRange);
  EXPECT_EQ(GrpcCodeOf(ErrRequestTooLarge()), GrpcCode::kInvalidArgument);
  EXPECT_EQ(GrpcCodeOf(ErrCorrupt()), GrpcCode::kDataLoss);
  EXPECT_EQ(GrpcCodeOf(Status::Ok()), GrpcCode::kOk);
  EXPECT_EQ(GrpcCodeOf(Status(Code::kIoError, "disk")), GrpcCode::kUnknown);
  EXPECT_EQ(GrpcCodeOf(Status(Code::kUnavailable, "x")), GrpcCode::kUnavailable);
}

}  // namespace
}  // namespace synod::kv
