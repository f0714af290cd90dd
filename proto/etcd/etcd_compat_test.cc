// Our generated etcd stubs against a real etcd (Debian's etcd-server, 3.4).
//
// If our protos differ from etcd's in a method path, a field number or a type, these
// calls fail or come back with the wrong values: this is the wire check that hand-made
// byte strings cannot give. The test starts its own single-member etcd on free loopback
// ports in a temporary directory and stops it at the end; without an etcd binary
// ($ETCD_BIN or /usr/bin/etcd) it is skipped.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "etcd/etcdserverpb/rpc.grpc.pb.h"
#include "etcd/v3electionpb/v3election.grpc.pb.h"
#include "etcd/v3lockpb/v3lock.grpc.pb.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A port nobody listens on right now (the kernel's pick; etcd binds it a moment later).
int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return 0;
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string EtcdBinary() {
  if (const char* env = std::getenv("ETCD_BIN")) return env;
  return "/usr/bin/etcd";
}

std::unique_ptr<grpc::ClientContext> Context() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + 10s);
  return ctx;
}

class EtcdCompat : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::access(EtcdBinary().c_str(), X_OK) != 0) return;
    dir_ = fs::temp_directory_path() / ("synod-etcd-compat-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    const std::string client = "http://127.0.0.1:" + std::to_string(FreePort());
    const std::string peer = "http://127.0.0.1:" + std::to_string(FreePort());
    const std::string log = (dir_ / "etcd.log").string();
    pid_ = ::fork();
    if (pid_ == 0) {
      // etcd must not outlive a test that crashes or is killed.
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      FILE* out = std::freopen(log.c_str(), "w", stdout);
      (void)out;
      ::dup2(::fileno(stdout), 2);
      const std::string data = (dir_ / "data").string();
      const std::string cluster = "default=" + peer;
      ::execl(EtcdBinary().c_str(), "etcd", "--name", "default", "--data-dir", data.c_str(),
              "--listen-client-urls", client.c_str(), "--advertise-client-urls", client.c_str(),
              "--listen-peer-urls", peer.c_str(), "--initial-advertise-peer-urls", peer.c_str(),
              "--initial-cluster", cluster.c_str(), static_cast<char*>(nullptr));
      std::_Exit(127);
    }
    channel_ = grpc::CreateChannel(client.substr(7), grpc::InsecureChannelCredentials());
    // Ready once Status answers; etcd takes a moment to listen, so this call waits for
    // the connection rather than failing fast.
    auto maintenance = etcdserverpb::Maintenance::NewStub(channel_);
    etcdserverpb::StatusRequest req;
    etcdserverpb::StatusResponse resp;
    grpc::ClientContext ctx;
    ctx.set_wait_for_ready(true);
    ctx.set_deadline(std::chrono::system_clock::now() + 20s);
    if (maintenance->Status(&ctx, req, &resp).ok()) version_ = resp.version();
  }

  static void TearDownTestSuite() {
    channel_.reset();
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      pid_ = 0;
    }
    if (!dir_.empty() && !std::getenv("SYNOD_KEEP_TEST_DIRS")) fs::remove_all(dir_);
  }

  void SetUp() override {
    if (pid_ <= 0) GTEST_SKIP() << "no etcd binary at " << EtcdBinary();
    ASSERT_FALSE(version_.empty()) << "etcd did not start; see " << (dir_ / "etcd.log");
    kv_ = etcdserverpb::KV::NewStub(channel_);
  }

  // Puts through our stub; returns the response's revision.
  int64_t Put(const std::string& key, const std::string& value, int64_t lease = 0) {
    etcdserverpb::PutRequest req;
    req.set_key(key);
    req.set_value(value);
    req.set_lease(lease);
    etcdserverpb::PutResponse resp;
    auto ctx = Context();
    const grpc::Status s = kv_->Put(ctx.get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.header().revision();
  }

  static inline fs::path dir_;
  static inline pid_t pid_ = 0;
  static inline std::shared_ptr<grpc::Channel> channel_;
  static inline std::string version_;
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
};

TEST_F(EtcdCompat, StatusNamesTheVersion) { EXPECT_EQ(version_.substr(0, 4), "3.4.") << version_; }

TEST_F(EtcdCompat, PutThenRangeWithRangeEndLimitAndSort) {
  const int64_t rev1 = Put("range/a", "1");
  Put("range/b", "22");
  const int64_t rev3 = Put("range/c", "333");
  EXPECT_GT(rev3, rev1);

  etcdserverpb::RangeRequest req;
  req.set_key("range/");
  req.set_range_end("range0");  // the prefix "range/"
  req.set_limit(2);
  req.set_sort_order(etcdserverpb::RangeRequest::DESCEND);
  req.set_sort_target(etcdserverpb::RangeRequest::KEY);
  etcdserverpb::RangeResponse resp;
  auto ctx = Context();
  ASSERT_TRUE(kv_->Range(ctx.get(), req, &resp).ok());
  ASSERT_EQ(resp.kvs_size(), 2);
  EXPECT_EQ(resp.kvs(0).key(), "range/c");
  EXPECT_EQ(resp.kvs(0).value(), "333");
  EXPECT_EQ(resp.kvs(0).create_revision(), rev3);
  EXPECT_EQ(resp.kvs(0).mod_revision(), rev3);
  EXPECT_EQ(resp.kvs(0).version(), 1);
  EXPECT_EQ(resp.kvs(1).key(), "range/b");
  EXPECT_TRUE(resp.more());
  EXPECT_EQ(resp.count(), 3);
  EXPECT_NE(resp.header().cluster_id(), 0u);
  EXPECT_NE(resp.header().member_id(), 0u);
  EXPECT_GE(resp.header().revision(), rev3);

  // An old revision, keys only.
  etcdserverpb::RangeRequest old;
  old.set_key("range/");
  old.set_range_end("range0");
  old.set_revision(rev1);
  old.set_keys_only(true);
  etcdserverpb::RangeResponse old_resp;
  auto ctx2 = Context();
  ASSERT_TRUE(kv_->Range(ctx2.get(), old, &old_resp).ok());
  ASSERT_EQ(old_resp.kvs_size(), 1);
  EXPECT_EQ(old_resp.kvs(0).key(), "range/a");
  EXPECT_EQ(old_resp.kvs(0).value(), "");
}

TEST_F(EtcdCompat, TxnTakesTheBranchItsComparesChoose) {
  // Create-if-absent: version("txn/k") == 0 (a zero that must reach the server).
  auto create = [&](const std::string& value) {
    etcdserverpb::TxnRequest txn;
    auto* c = txn.add_compare();
    c->set_key("txn/k");
    c->set_target(etcdserverpb::Compare::VERSION);
    c->set_result(etcdserverpb::Compare::EQUAL);
    c->set_version(0);
    auto* put = txn.add_success()->mutable_request_put();
    put->set_key("txn/k");
    put->set_value(value);
    txn.add_failure()->mutable_request_range()->set_key("txn/k");
    etcdserverpb::TxnResponse resp;
    auto ctx = Context();
    EXPECT_TRUE(kv_->Txn(ctx.get(), txn, &resp).ok());
    return resp;
  };
  const auto first = create("one");
  EXPECT_TRUE(first.succeeded());
  ASSERT_EQ(first.responses_size(), 1);
  EXPECT_TRUE(first.responses(0).has_response_put());
  const auto second = create("two");
  EXPECT_FALSE(second.succeeded());
  ASSERT_EQ(second.responses_size(), 1);
  ASSERT_TRUE(second.responses(0).has_response_range());
  ASSERT_EQ(second.responses(0).response_range().kvs_size(), 1);
  EXPECT_EQ(second.responses(0).response_range().kvs(0).value(), "one");

  // A value compare and a mod-revision compare over a range, then a delete with prev_kv.
  etcdserverpb::TxnRequest txn;
  auto* by_value = txn.add_compare();
  by_value->set_key("txn/k");
  by_value->set_target(etcdserverpb::Compare::VALUE);
  by_value->set_result(etcdserverpb::Compare::EQUAL);
  by_value->set_value("one");
  auto* by_mod = txn.add_compare();
  by_mod->set_key("txn/");
  by_mod->set_range_end("txn0");
  by_mod->set_target(etcdserverpb::Compare::MOD);
  by_mod->set_result(etcdserverpb::Compare::LESS);
  by_mod->set_mod_revision(first.header().revision() + 1);
  auto* del = txn.add_success()->mutable_request_delete_range();
  del->set_key("txn/k");
  del->set_prev_kv(true);
  etcdserverpb::TxnResponse resp;
  auto ctx = Context();
  ASSERT_TRUE(kv_->Txn(ctx.get(), txn, &resp).ok());
  EXPECT_TRUE(resp.succeeded());
  ASSERT_EQ(resp.responses_size(), 1);
  const auto& deleted = resp.responses(0).response_delete_range();
  EXPECT_EQ(deleted.deleted(), 1);
  ASSERT_EQ(deleted.prev_kvs_size(), 1);
  EXPECT_EQ(deleted.prev_kvs(0).value(), "one");
}

TEST_F(EtcdCompat, WatchSeesPutsAndDeletesWithPreviousValues) {
  auto watch = etcdserverpb::Watch::NewStub(channel_);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 20s);
  auto stream = watch->Watch(&ctx);
  etcdserverpb::WatchRequest create;
  auto* c = create.mutable_create_request();
  c->set_key("watch/");
  c->set_range_end("watch0");
  c->set_prev_kv(true);
  c->add_filters(etcdserverpb::WatchCreateRequest::NOPUT);  // deletes only
  ASSERT_TRUE(stream->Write(create));
  etcdserverpb::WatchResponse created;
  ASSERT_TRUE(stream->Read(&created));
  EXPECT_TRUE(created.created());
  const int64_t id = created.watch_id();

  Put("watch/x", "before");
  etcdserverpb::DeleteRangeRequest del;
  del.set_key("watch/x");
  etcdserverpb::DeleteRangeResponse del_resp;
  auto dctx = Context();
  ASSERT_TRUE(kv_->DeleteRange(dctx.get(), del, &del_resp).ok());
  EXPECT_EQ(del_resp.deleted(), 1);

  etcdserverpb::WatchResponse event;
  ASSERT_TRUE(stream->Read(&event));
  EXPECT_EQ(event.watch_id(), id);
  ASSERT_EQ(event.events_size(), 1);  // the put was filtered out
  EXPECT_EQ(event.events(0).type(), mvccpb::Event::DELETE);
  EXPECT_EQ(event.events(0).kv().key(), "watch/x");
  EXPECT_EQ(event.events(0).kv().mod_revision(), del_resp.header().revision());
  EXPECT_EQ(event.events(0).prev_kv().value(), "before");

  etcdserverpb::WatchRequest cancel;
  cancel.mutable_cancel_request()->set_watch_id(id);
  ASSERT_TRUE(stream->Write(cancel));
  etcdserverpb::WatchResponse canceled;
  ASSERT_TRUE(stream->Read(&canceled));
  EXPECT_TRUE(canceled.canceled());
  stream->WritesDone();
  ctx.TryCancel();
  (void)stream->Finish();
}

TEST_F(EtcdCompat, LeasesGrantAttachAndReport) {
  auto lease = etcdserverpb::Lease::NewStub(channel_);
  etcdserverpb::LeaseGrantRequest grant;
  grant.set_ttl(60);
  grant.set_id(0x5e7d);
  etcdserverpb::LeaseGrantResponse granted;
  auto ctx = Context();
  ASSERT_TRUE(lease->LeaseGrant(ctx.get(), grant, &granted).ok());
  EXPECT_EQ(granted.id(), 0x5e7d);
  EXPECT_EQ(granted.ttl(), 60);
  Put("lease/k", "v", granted.id());

  etcdserverpb::LeaseTimeToLiveRequest ttl;
  ttl.set_id(granted.id());
  ttl.set_keys(true);
  etcdserverpb::LeaseTimeToLiveResponse ttl_resp;
  auto ctx2 = Context();
  ASSERT_TRUE(lease->LeaseTimeToLive(ctx2.get(), ttl, &ttl_resp).ok());
  EXPECT_EQ(ttl_resp.grantedttl(), 60);
  EXPECT_GT(ttl_resp.ttl(), 0);
  ASSERT_EQ(ttl_resp.keys_size(), 1);
  EXPECT_EQ(ttl_resp.keys(0), "lease/k");

  grpc::ClientContext kctx;
  kctx.set_deadline(std::chrono::system_clock::now() + 10s);
  auto keepalive = lease->LeaseKeepAlive(&kctx);
  etcdserverpb::LeaseKeepAliveRequest ka;
  ka.set_id(granted.id());
  ASSERT_TRUE(keepalive->Write(ka));
  etcdserverpb::LeaseKeepAliveResponse ka_resp;
  ASSERT_TRUE(keepalive->Read(&ka_resp));
  EXPECT_EQ(ka_resp.id(), granted.id());
  EXPECT_EQ(ka_resp.ttl(), 60);
  keepalive->WritesDone();
  kctx.TryCancel();
  (void)keepalive->Finish();

  etcdserverpb::LeaseRevokeRequest revoke;
  revoke.set_id(granted.id());
  etcdserverpb::LeaseRevokeResponse revoked;
  auto ctx3 = Context();
  ASSERT_TRUE(lease->LeaseRevoke(ctx3.get(), revoke, &revoked).ok());
  etcdserverpb::RangeRequest get;
  get.set_key("lease/k");
  etcdserverpb::RangeResponse got;
  auto ctx4 = Context();
  ASSERT_TRUE(kv_->Range(ctx4.get(), get, &got).ok());
  EXPECT_EQ(got.kvs_size(), 0);  // revoking the lease deleted its key
}

TEST_F(EtcdCompat, ClusterAndMaintenanceDescribeTheMember) {
  auto cluster = etcdserverpb::Cluster::NewStub(channel_);
  etcdserverpb::MemberListRequest req;
  etcdserverpb::MemberListResponse resp;
  auto ctx = Context();
  ASSERT_TRUE(cluster->MemberList(ctx.get(), req, &resp).ok());
  ASSERT_EQ(resp.members_size(), 1);
  EXPECT_EQ(resp.members(0).name(), "default");
  EXPECT_EQ(resp.members(0).id(), resp.header().member_id());
  ASSERT_EQ(resp.members(0).clienturls_size(), 1);

  auto maintenance = etcdserverpb::Maintenance::NewStub(channel_);
  etcdserverpb::StatusRequest sreq;
  etcdserverpb::StatusResponse status;
  auto ctx2 = Context();
  ASSERT_TRUE(maintenance->Status(ctx2.get(), sreq, &status).ok());
  EXPECT_EQ(status.leader(), resp.header().member_id());
  EXPECT_GT(status.dbsize(), 0);
  EXPECT_GT(status.raftindex(), 0u);
}

TEST_F(EtcdCompat, LockAndElectionServices) {
  auto lease = etcdserverpb::Lease::NewStub(channel_);
  etcdserverpb::LeaseGrantRequest grant;
  grant.set_ttl(30);
  etcdserverpb::LeaseGrantResponse granted;
  auto ctx = Context();
  ASSERT_TRUE(lease->LeaseGrant(ctx.get(), grant, &granted).ok());

  auto lock = v3lockpb::Lock::NewStub(channel_);
  v3lockpb::LockRequest lreq;
  lreq.set_name("lock/l");
  lreq.set_lease(granted.id());
  v3lockpb::LockResponse locked;
  auto ctx2 = Context();
  ASSERT_TRUE(lock->Lock(ctx2.get(), lreq, &locked).ok());
  EXPECT_EQ(locked.key().rfind("lock/l/", 0), 0u) << locked.key();
  v3lockpb::UnlockRequest ureq;
  ureq.set_key(locked.key());
  v3lockpb::UnlockResponse unlocked;
  auto ctx3 = Context();
  ASSERT_TRUE(lock->Unlock(ctx3.get(), ureq, &unlocked).ok());

  auto election = v3electionpb::Election::NewStub(channel_);
  v3electionpb::CampaignRequest campaign;
  campaign.set_name("election/e");
  campaign.set_lease(granted.id());
  campaign.set_value("me");
  v3electionpb::CampaignResponse campaigned;
  auto ctx4 = Context();
  ASSERT_TRUE(election->Campaign(ctx4.get(), campaign, &campaigned).ok());
  EXPECT_EQ(campaigned.leader().name(), "election/e");
  EXPECT_EQ(campaigned.leader().lease(), granted.id());
  v3electionpb::LeaderRequest who;
  who.set_name("election/e");
  v3electionpb::LeaderResponse leader;
  auto ctx5 = Context();
  ASSERT_TRUE(election->Leader(ctx5.get(), who, &leader).ok());
  EXPECT_EQ(leader.kv().value(), "me");
  EXPECT_EQ(leader.kv().key(), campaigned.leader().key());
  v3electionpb::ResignRequest resign;
  *resign.mutable_leader() = campaigned.leader();
  v3electionpb::ResignResponse resigned;
  auto ctx6 = Context();
  ASSERT_TRUE(election->Resign(ctx6.get(), resign, &resigned).ok());
}

}  // namespace
