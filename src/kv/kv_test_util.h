// Test helpers for the kv store: a store on an in-memory RocksDB Env (or a directory), that
// can be closed and reopened, and terse request builders.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kv/rocksdb_backend.h"
#include "kv/store.h"

namespace rocksdb {
class Env;
}

namespace synod::kv {

// A store plus its log index counter. By default everything lives in memory
// (rocksdb::NewMemEnv), which survives Close/Open of the store within one TestStore.
class TestStore {
 public:
  explicit TestStore(StoreOptions options = {}, bool on_disk = false);
  ~TestStore();

  Store& operator*() { return *store_; }
  Store* operator->() { return store_.get(); }
  Store* get() { return store_.get(); }

  // Applies at the next log index; returns the outcome.
  ApplyResult Apply(const kvpb::Request& request);
  // Applies and expects success; returns the response.
  kvpb::Response ApplyOk(const kvpb::Request& request);
  // Applies and returns the outcome's status.
  Status ApplyStatus(const kvpb::Request& request) { return Apply(request).status; }

  void Close();
  void Open();
  void Reopen() {
    Close();
    Open();
  }
  // A fresh, empty store on its own Env (for snapshot targets and the like).
  std::unique_ptr<TestStore> Sibling() const { return std::make_unique<TestStore>(options_); }

  uint64_t next_index = 1;
  uint64_t now_ms = 1'000'000;
  const std::string& path() const { return path_; }
  rocksdb::Env* env() { return env_.get(); }

 private:
  StoreOptions options_;
  std::unique_ptr<rocksdb::Env> env_;
  std::string path_;
  bool on_disk_;
  std::unique_ptr<Store> store_;
};

// --- Request builders ---

kvpb::Request PutReq(const std::string& key, const std::string& value, int64_t lease = 0);
kvpb::Request DelReq(const std::string& key, const std::string& end = "");
kvpb::Request RangeReq(const std::string& key, const std::string& end = "", int64_t rev = 0);
kvpb::Request CompactReq(int64_t revision);
kvpb::Request GrantReq(int64_t id, int64_t ttl_s);
kvpb::Request RevokeReq(int64_t id);
kvpb::Request AlarmReq(kvpb::AlarmRequest::AlarmAction action, kvpb::AlarmType type,
                       uint64_t member = 1);
kvpb::Request TxnReq(const kvpb::TxnRequest& txn);

kvpb::RequestOp OpPut(const std::string& key, const std::string& value, int64_t lease = 0);
kvpb::RequestOp OpDel(const std::string& key, const std::string& end = "");
kvpb::RequestOp OpRange(const std::string& key, const std::string& end = "", int64_t rev = 0);
kvpb::RequestOp OpTxn(const kvpb::TxnRequest& txn);

kvpb::Compare CmpValue(const std::string& key, kvpb::Compare::CompareResult result,
                       const std::string& value);
kvpb::Compare CmpVersion(const std::string& key, kvpb::Compare::CompareResult result,
                         int64_t version);
kvpb::Compare CmpCreate(const std::string& key, kvpb::Compare::CompareResult result, int64_t rev);
kvpb::Compare CmpMod(const std::string& key, kvpb::Compare::CompareResult result, int64_t rev);
kvpb::Compare CmpLease(const std::string& key, kvpb::Compare::CompareResult result, int64_t lease);

// Keys (and values) of a range response, for compact assertions.
std::vector<std::string> Keys(const kvpb::RangeResponse& response);
std::vector<std::string> Values(const kvpb::RangeResponse& response);
// Range through Store::Range, expecting success.
kvpb::RangeResponse Get(Store& store, const std::string& key, const std::string& end = "",
                        int64_t rev = 0);

std::string TempDir(const std::string& name);

}  // namespace synod::kv
