#include "kv/kv_test_util.h"

#include <rocksdb/env.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>

namespace synod::kv {

std::string TempDir(const std::string& name) {
  static std::atomic<int> counter{0};
  const auto dir =
      std::filesystem::temp_directory_path() /
      ("synod-kv-" + name + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

TestStore::TestStore(StoreOptions options, bool on_disk) : options_(options), on_disk_(on_disk) {
  if (on_disk_) {
    path_ = TempDir("store");
  } else {
    env_.reset(rocksdb::NewMemEnv(rocksdb::Env::Default()));
    path_ = "/kv";
  }
  Open();
}

TestStore::~TestStore() {
  Close();
  if (on_disk_) std::filesystem::remove_all(path_);
}

void TestStore::Close() { store_.reset(); }

void TestStore::Open() {
  RocksBackendOptions backend_options;
  backend_options.env = env_.get();
  backend_options.write_buffer_bytes = 256 << 10;  // flush often: SST reads get exercised
  auto backend = OpenRocksBackend(path_, backend_options);
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  auto store = Store::Open(std::move(backend.value()), options_);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  store_ = std::move(store.value());
  next_index = store_->AppliedIndex() + 1;
}

ApplyResult TestStore::Apply(const kvpb::Request& request) {
  auto result = store_->Apply(next_index++, request, now_ms);
  EXPECT_TRUE(result.ok()) << result.status().ToString();
  if (!result.ok()) return ApplyResult{.status = result.status()};
  return std::move(result.value());
}

kvpb::Response TestStore::ApplyOk(const kvpb::Request& request) {
  ApplyResult result = Apply(request);
  EXPECT_TRUE(result.status.ok()) << result.status.ToString() << " for "
                                  << request.ShortDebugString();
  return std::move(result.response);
}

kvpb::Request PutReq(const std::string& key, const std::string& value, int64_t lease) {
  kvpb::Request r;
  r.mutable_put()->set_key(key);
  r.mutable_put()->set_value(value);
  r.mutable_put()->set_lease(lease);
  return r;
}

kvpb::Request DelReq(const std::string& key, const std::string& end) {
  kvpb::Request r;
  r.mutable_delete_range()->set_key(key);
  r.mutable_delete_range()->set_range_end(end);
  return r;
}

kvpb::Request RangeReq(const std::string& key, const std::string& end, int64_t rev) {
  kvpb::Request r;
  r.mutable_range()->set_key(key);
  r.mutable_range()->set_range_end(end);
  r.mutable_range()->set_revision(rev);
  return r;
}

kvpb::Request CompactReq(int64_t revision) {
  kvpb::Request r;
  r.mutable_compaction()->set_revision(revision);
  return r;
}

kvpb::Request GrantReq(int64_t id, int64_t ttl_s) {
  kvpb::Request r;
  r.mutable_lease_grant()->set_id(id);
  r.mutable_lease_grant()->set_ttl(ttl_s);
  return r;
}

kvpb::Request RevokeReq(int64_t id) {
  kvpb::Request r;
  r.mutable_lease_revoke()->set_id(id);
  return r;
}

kvpb::Request AlarmReq(kvpb::AlarmRequest::AlarmAction action, kvpb::AlarmType type,
                       uint64_t member) {
  kvpb::Request r;
  r.mutable_alarm()->set_action(action);
  r.mutable_alarm()->set_alarm(type);
  r.mutable_alarm()->set_memberid(member);
  return r;
}

kvpb::Request TxnReq(const kvpb::TxnRequest& txn) {
  kvpb::Request r;
  *r.mutable_txn() = txn;
  return r;
}

kvpb::RequestOp OpPut(const std::string& key, const std::string& value, int64_t lease) {
  kvpb::RequestOp op;
  *op.mutable_request_put() = PutReq(key, value, lease).put();
  return op;
}

kvpb::RequestOp OpDel(const std::string& key, const std::string& end) {
  kvpb::RequestOp op;
  *op.mutable_request_delete_range() = DelReq(key, end).delete_range();
  return op;
}

kvpb::RequestOp OpRange(const std::string& key, const std::string& end, int64_t rev) {
  kvpb::RequestOp op;
  *op.mutable_request_range() = RangeReq(key, end, rev).range();
  return op;
}

kvpb::RequestOp OpTxn(const kvpb::TxnRequest& txn) {
  kvpb::RequestOp op;
  *op.mutable_request_txn() = txn;
  return op;
}

namespace {
kvpb::Compare Cmp(const std::string& key, kvpb::Compare::CompareResult result,
                  kvpb::Compare::CompareTarget target) {
  kvpb::Compare c;
  c.set_key(key);
  c.set_result(result);
  c.set_target(target);
  return c;
}
}  // namespace

kvpb::Compare CmpValue(const std::string& key, kvpb::Compare::CompareResult result,
                       const std::string& value) {
  auto c = Cmp(key, result, kvpb::Compare::VALUE);
  c.set_value(value);
  return c;
}
kvpb::Compare CmpVersion(const std::string& key, kvpb::Compare::CompareResult result,
                         int64_t version) {
  auto c = Cmp(key, result, kvpb::Compare::VERSION);
  c.set_version(version);
  return c;
}
kvpb::Compare CmpCreate(const std::string& key, kvpb::Compare::CompareResult result, int64_t rev) {
  auto c = Cmp(key, result, kvpb::Compare::CREATE);
  c.set_create_revision(rev);
  return c;
}
kvpb::Compare CmpMod(const std::string& key, kvpb::Compare::CompareResult result, int64_t rev) {
  auto c = Cmp(key, result, kvpb::Compare::MOD);
  c.set_mod_revision(rev);
  return c;
}
kvpb::Compare CmpLease(const std::string& key, kvpb::Compare::CompareResult result, int64_t lease) {
  auto c = Cmp(key, result, kvpb::Compare::LEASE);
  c.set_lease(lease);
  return c;
}

std::vector<std::string> Keys(const kvpb::RangeResponse& response) {
  std::vector<std::string> out;
  for (const auto& kv : response.kvs()) out.push_back(kv.key());
  return out;
}

std::vector<std::string> Values(const kvpb::RangeResponse& response) {
  std::vector<std::string> out;
  for (const auto& kv : response.kvs()) out.push_back(kv.value());
  return out;
}

kvpb::RangeResponse Get(Store& store, const std::string& key, const std::string& end, int64_t rev) {
  auto r = store.Range(RangeReq(key, end, rev).range());
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  if (!r.ok()) return {};
  return r.value();
}

}  // namespace synod::kv
