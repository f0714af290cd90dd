// Our etcd protos against the bytes etcd puts on the wire.
//
// The expected encodings are written out by hand from the protobuf encoding rules
// (tag = field_number << 3 | wire_type; varint 0, length-delimited 2) and etcd's field
// numbers, so a renumbered or retyped field fails here even though our own code would
// happily round-trip it. The service and method tables are etcd 3.4's: they make up the
// gRPC paths (/etcdserverpb.KV/Range).
#include <gtest/gtest.h>

#include <string>
#include <tuple>
#include <vector>

#include "etcd/etcdserverpb/rpc.grpc.pb.h"
#include "etcd/etcdserverpb/rpc.pb.h"
#include "etcd/v3electionpb/v3election.grpc.pb.h"
#include "etcd/v3electionpb/v3election.pb.h"
#include "etcd/v3lockpb/v3lock.grpc.pb.h"
#include "etcd/v3lockpb/v3lock.pb.h"
#include "google/protobuf/descriptor.h"

namespace {

using Bytes = std::vector<unsigned char>;

Bytes Encode(const google::protobuf::Message& m) {
  std::string s;
  EXPECT_TRUE(m.SerializeToString(&s));
  return Bytes(s.begin(), s.end());
}

std::string Str(const Bytes& b) { return std::string(b.begin(), b.end()); }

TEST(EtcdWire, PutRequest) {
  etcdserverpb::PutRequest put;
  put.set_key("foo");
  put.set_value("bar");
  put.set_lease(300);
  put.set_prev_kv(true);
  put.set_ignore_lease(true);
  const Bytes want = {
      0x0A, 3,    'f',  'o', 'o',  // 1 key
      0x12, 3,    'b',  'a', 'r',  // 2 value
      0x18, 0xAC, 0x02,            // 3 lease = 300
      0x20, 1,                     // 4 prev_kv
      0x30, 1,                     // 6 ignore_lease
  };
  EXPECT_EQ(Encode(put), want);
}

TEST(EtcdWire, RangeRequestWithRangeEndLimitAndSort) {
  etcdserverpb::RangeRequest range;
  range.set_key("a");
  range.set_range_end("b");
  range.set_limit(10);
  range.set_sort_order(etcdserverpb::RangeRequest::DESCEND);
  range.set_sort_target(etcdserverpb::RangeRequest::MOD);
  range.set_serializable(true);
  range.set_min_mod_revision(-1);  // int64, not sint64: ten bytes
  range.set_max_create_revision(13);
  const Bytes want = {
      0x0A, 1,    'a',                                                   // 1 key
      0x12, 1,    'b',                                                   // 2 range_end
      0x18, 10,                                                          // 3 limit
      0x28, 2,                                                           // 5 sort_order = DESCEND
      0x30, 3,                                                           // 6 sort_target = MOD
      0x38, 1,                                                           // 7 serializable
      0x50, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01,  // 10 = -1
      0x68, 13,                                                          // 13
  };
  EXPECT_EQ(Encode(range), want);
}

TEST(EtcdWire, TxnRequestWithCompares) {
  etcdserverpb::TxnRequest txn;
  auto* c0 = txn.add_compare();  // value("k") == "v"
  c0->set_result(etcdserverpb::Compare::EQUAL);
  c0->set_target(etcdserverpb::Compare::VALUE);
  c0->set_key("k");
  c0->set_value("v");
  auto* c1 = txn.add_compare();  // mod(["k", "l")) > 5
  c1->set_result(etcdserverpb::Compare::GREATER);
  c1->set_target(etcdserverpb::Compare::MOD);
  c1->set_key("k");
  c1->set_mod_revision(5);
  c1->set_range_end("l");
  auto* put = txn.add_success()->mutable_request_put();
  put->set_key("k");
  put->set_value("x");
  txn.add_failure()->mutable_request_range()->set_key("k");
  const Bytes want = {
      0x0A, 8,                        // 1 compare
      0x10, 3,                        //   2 target = VALUE
      0x1A, 1,    'k',                //   3 key
      0x3A, 1,    'v',                //   7 value
      0x0A, 13,                       // 1 compare
      0x08, 1,                        //   1 result = GREATER
      0x10, 2,                        //   2 target = MOD
      0x1A, 1,    'k',                //   3 key
      0x30, 5,                        //   6 mod_revision
      0x82, 0x04, 1,   'l',           //   64 range_end: tag 514 is two varint bytes
      0x12, 8,                        // 2 success
      0x12, 6,                        //   2 request_put
      0x0A, 1,    'k', 0x12, 1, 'x',  //     key, value
      0x1A, 5,                        // 3 failure
      0x0A, 3,                        //   1 request_range
      0x0A, 1,    'k',                //     key
  };
  EXPECT_EQ(Encode(txn), want);
}

TEST(EtcdWire, AZeroInACompareOneofIsStillSent) {
  // version("k") = 0 means "k does not exist"; the zero must reach the server.
  etcdserverpb::Compare c;
  c.set_key("k");
  c.set_version(0);
  EXPECT_EQ(Encode(c), (Bytes{0x1A, 1, 'k', 0x20, 0}));
}

TEST(EtcdWire, WatchCreateAndCancelRequests) {
  etcdserverpb::WatchRequest create;
  auto* w = create.mutable_create_request();
  w->set_key("w");
  w->set_range_end("x");
  w->set_start_revision(42);
  w->set_progress_notify(true);
  w->add_filters(etcdserverpb::WatchCreateRequest::NODELETE);
  w->set_prev_kv(true);
  const Bytes want = {
      0x0A, 15,       // 1 create_request
      0x0A, 1,  'w',  //   1 key
      0x12, 1,  'x',  //   2 range_end
      0x18, 42,       //   3 start_revision
      0x20, 1,        //   4 progress_notify
      0x2A, 1,  1,    //   5 filters, packed: [NODELETE]
      0x30, 1,        //   6 prev_kv
  };
  EXPECT_EQ(Encode(create), want);

  etcdserverpb::WatchRequest cancel;
  cancel.mutable_cancel_request()->set_watch_id(3);
  EXPECT_EQ(Encode(cancel), (Bytes{0x12, 2, 0x08, 3}));

  etcdserverpb::WatchRequest progress;
  progress.mutable_progress_request();
  EXPECT_EQ(Encode(progress), (Bytes{0x1A, 0}));
}

TEST(EtcdWire, LeaseGrantRequest) {
  etcdserverpb::LeaseGrantRequest grant;
  grant.set_ttl(60);
  grant.set_id(1000);
  EXPECT_EQ(Encode(grant), (Bytes{0x08, 60, 0x10, 0xE8, 0x07}));
}

TEST(EtcdWire, RangeResponseFromEtcdDecodes) {
  const Bytes from_etcd = {
      0x0A, 2,  0x18, 5,  // 1 header { 3 revision = 5 }
      0x12, 12,           // 2 kvs
      0x0A, 1,  'a',      //   1 key
      0x10, 2,            //   2 create_revision
      0x18, 5,            //   3 mod_revision
      0x20, 1,            //   4 version
      0x2A, 1,  '1',      //   5 value
      0x20, 1,            // 4 count
  };
  etcdserverpb::RangeResponse r;
  ASSERT_TRUE(r.ParseFromString(Str(from_etcd)));
  EXPECT_EQ(r.header().revision(), 5);
  ASSERT_EQ(r.kvs_size(), 1);
  EXPECT_EQ(r.kvs(0).key(), "a");
  EXPECT_EQ(r.kvs(0).value(), "1");
  EXPECT_EQ(r.kvs(0).create_revision(), 2);
  EXPECT_EQ(r.kvs(0).mod_revision(), 5);
  EXPECT_EQ(r.kvs(0).version(), 1);
  EXPECT_EQ(r.count(), 1);
}

TEST(EtcdWire, WatchResponseEventsAreField11) {
  etcdserverpb::WatchResponse resp;
  resp.set_watch_id(1);
  auto* ev = resp.add_events();
  ev->set_type(mvccpb::Event::DELETE);
  ev->mutable_kv()->set_key("k");
  const Bytes want = {
      0x10, 1,               // 2 watch_id
      0x5A, 7,               // 11 events
      0x08, 1,               //   1 type = DELETE
      0x12, 3, 0x0A, 1, 'k'  //   2 kv { key }
  };
  EXPECT_EQ(Encode(resp), want);
}

// service, method, client streams, server streams
using Method = std::tuple<const char*, const char*, bool, bool>;

const std::vector<Method> kEtcdMethods = {
    {"etcdserverpb.KV", "Range", false, false},
    {"etcdserverpb.KV", "Put", false, false},
    {"etcdserverpb.KV", "DeleteRange", false, false},
    {"etcdserverpb.KV", "Txn", false, false},
    {"etcdserverpb.KV", "Compact", false, false},
    {"etcdserverpb.Watch", "Watch", true, true},
    {"etcdserverpb.Lease", "LeaseGrant", false, false},
    {"etcdserverpb.Lease", "LeaseRevoke", false, false},
    {"etcdserverpb.Lease", "LeaseKeepAlive", true, true},
    {"etcdserverpb.Lease", "LeaseTimeToLive", false, false},
    {"etcdserverpb.Lease", "LeaseLeases", false, false},
    {"etcdserverpb.Cluster", "MemberAdd", false, false},
    {"etcdserverpb.Cluster", "MemberRemove", false, false},
    {"etcdserverpb.Cluster", "MemberUpdate", false, false},
    {"etcdserverpb.Cluster", "MemberList", false, false},
    {"etcdserverpb.Cluster", "MemberPromote", false, false},
    {"etcdserverpb.Maintenance", "Alarm", false, false},
    {"etcdserverpb.Maintenance", "Status", false, false},
    {"etcdserverpb.Maintenance", "Defragment", false, false},
    {"etcdserverpb.Maintenance", "Hash", false, false},
    {"etcdserverpb.Maintenance", "HashKV", false, false},
    {"etcdserverpb.Maintenance", "Snapshot", false, true},
    {"etcdserverpb.Maintenance", "MoveLeader", false, false},
    {"etcdserverpb.Auth", "AuthEnable", false, false},
    {"etcdserverpb.Auth", "AuthDisable", false, false},
    {"etcdserverpb.Auth", "Authenticate", false, false},
    {"etcdserverpb.Auth", "UserAdd", false, false},
    {"etcdserverpb.Auth", "UserGet", false, false},
    {"etcdserverpb.Auth", "UserList", false, false},
    {"etcdserverpb.Auth", "UserDelete", false, false},
    {"etcdserverpb.Auth", "UserChangePassword", false, false},
    {"etcdserverpb.Auth", "UserGrantRole", false, false},
    {"etcdserverpb.Auth", "UserRevokeRole", false, false},
    {"etcdserverpb.Auth", "RoleAdd", false, false},
    {"etcdserverpb.Auth", "RoleGet", false, false},
    {"etcdserverpb.Auth", "RoleList", false, false},
    {"etcdserverpb.Auth", "RoleDelete", false, false},
    {"etcdserverpb.Auth", "RoleGrantPermission", false, false},
    {"etcdserverpb.Auth", "RoleRevokePermission", false, false},
    {"v3lockpb.Lock", "Lock", false, false},
    {"v3lockpb.Lock", "Unlock", false, false},
    {"v3electionpb.Election", "Campaign", false, false},
    {"v3electionpb.Election", "Proclaim", false, false},
    {"v3electionpb.Election", "Leader", false, false},
    {"v3electionpb.Election", "Observe", false, true},
    {"v3electionpb.Election", "Resign", false, false},
};

TEST(EtcdServices, FullNamesAreEtcds) {
  EXPECT_STREQ(etcdserverpb::KV::service_full_name(), "etcdserverpb.KV");
  EXPECT_STREQ(etcdserverpb::Watch::service_full_name(), "etcdserverpb.Watch");
  EXPECT_STREQ(etcdserverpb::Lease::service_full_name(), "etcdserverpb.Lease");
  EXPECT_STREQ(etcdserverpb::Cluster::service_full_name(), "etcdserverpb.Cluster");
  EXPECT_STREQ(etcdserverpb::Maintenance::service_full_name(), "etcdserverpb.Maintenance");
  EXPECT_STREQ(etcdserverpb::Auth::service_full_name(), "etcdserverpb.Auth");
  EXPECT_STREQ(v3lockpb::Lock::service_full_name(), "v3lockpb.Lock");
  EXPECT_STREQ(v3electionpb::Election::service_full_name(), "v3electionpb.Election");
}

// The generated pool knows a file once its code is linked in: touch one message of each.
const google::protobuf::DescriptorPool* Pool() {
  (void)etcdserverpb::RangeRequest::descriptor();
  (void)v3lockpb::LockRequest::descriptor();
  (void)v3electionpb::LeaderKey::descriptor();
  return google::protobuf::DescriptorPool::generated_pool();
}

TEST(EtcdServices, EveryMethodInEtcdsOrderWithItsStreaming) {
  const auto* pool = Pool();
  // Walk our services and compare with the table, in order, both ways.
  std::vector<Method> ours;
  for (const char* name : {"etcdserverpb.KV", "etcdserverpb.Watch", "etcdserverpb.Lease",
                           "etcdserverpb.Cluster", "etcdserverpb.Maintenance", "etcdserverpb.Auth",
                           "v3lockpb.Lock", "v3electionpb.Election"}) {
    const auto* service = pool->FindServiceByName(name);
    ASSERT_NE(service, nullptr) << name;
    for (int i = 0; i < service->method_count(); ++i) {
      const auto* m = service->method(i);
      ours.emplace_back(name, m->name().c_str(), m->client_streaming(), m->server_streaming());
    }
  }
  ASSERT_EQ(ours.size(), kEtcdMethods.size());
  for (size_t i = 0; i < ours.size(); ++i) {
    const auto& [s, m, cs, ss] = ours[i];
    const auto& [ws, wm, wcs, wss] = kEtcdMethods[i];
    EXPECT_STREQ(s, ws);
    EXPECT_STREQ(m, wm);
    EXPECT_EQ(cs, wcs) << ws << "/" << wm;
    EXPECT_EQ(ss, wss) << ws << "/" << wm;
  }
}

TEST(EtcdServices, MethodTypesAreEtcds) {
  const auto* pool = Pool();
  auto method = [&](const char* service, const char* name) {
    return pool->FindServiceByName(service)->FindMethodByName(name);
  };
  EXPECT_EQ(method("etcdserverpb.KV", "Compact")->input_type()->full_name(),
            "etcdserverpb.CompactionRequest");
  EXPECT_EQ(method("etcdserverpb.Auth", "UserAdd")->input_type()->full_name(),
            "etcdserverpb.AuthUserAddRequest");
  EXPECT_EQ(method("v3electionpb.Election", "Observe")->input_type()->full_name(),
            "v3electionpb.LeaderRequest");
  EXPECT_EQ(method("v3electionpb.Election", "Observe")->output_type()->full_name(),
            "v3electionpb.LeaderResponse");
}

}  // namespace
