// Internals shared by the store's source files. Not part of the kv API.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kv/backend.h"
#include "kv/keys.h"
#include "kv/store.h"

namespace synod::kv {

// A consistent read view: backend state and the revisions it belongs to.
struct Store::View {
  std::shared_ptr<const BackendReader> reader;
  int64_t revision = 0;
  int64_t compact_revision = -1;
  uint64_t applied_index = 0;  // the last log entry the state includes
};

// A key range with etcd's conventions: `single` (empty range_end) is the key alone;
// otherwise [begin, end), where an empty end means "no end" (range_end "\0").
struct KeyRange {
  std::string begin;
  std::string end;
  bool single = false;

  static KeyRange Make(std::string_view key, std::string_view range_end);
  bool Contains(std::string_view key) const;
};

// Pending changes of the current table inside a write transaction: key -> new live record,
// or nullopt for a deleted key. Reads at the current revision merge it over the backend.
using Overlay = std::map<std::string, std::optional<keys::Record>, std::less<>>;

// Where a range reads from: the backend (latest state or a view), the running
// transaction's overlay (or none), and the revision that state has.
struct ReadSource {
  const BackendReader* reader = nullptr;
  const Overlay* overlay = nullptr;
  int64_t current_revision = 0;
};

kvpb::KeyValue ToKeyValue(std::string_view key, const keys::Record& record);

// The live version of `key` at the current revision (overlay first).
Result<std::optional<keys::Record>> GetCurrent(const ReadSource& source, std::string_view key);
// The newest version or tombstone of `key` at or below `revision`, from history.
Result<std::optional<keys::Record>> GetHistory(const BackendReader& reader, std::string_view key,
                                               int64_t revision);

// etcd's mvcc Range: the live keys of `range` at `revision` (<= 0 or current_revision: the
// current state, overlay included). `count` is the number of live keys in the range; kvs
// holds the first `limit` of them in key order (limit <= 0: all; count_only: none). The
// revision must already be checked against the compaction and current revisions.
struct RangeKeysResult {
  std::vector<kvpb::KeyValue> kvs;
  int64_t count = 0;
  uint64_t bytes = 0;      // key and value bytes in kvs
  uint64_t bytes_max = 0;  // past it the range fails with ErrRangeTooLarge (0: no bound)
};
// `bytes_max`: the most key and value bytes the result may hold (0: no bound).
Result<RangeKeysResult> RangeKeys(const ReadSource& source, const KeyRange& range, int64_t revision,
                                  int64_t limit, bool count_only, uint64_t bytes_max = 0);

// etcd's executeRange on top of RangeKeys: revision checks, filters, sort, limit, keys_only.
// `bytes_max`: the most key and value bytes the response may hold (0: no bound).
Result<kvpb::RangeResponse> ExecuteRange(const ReadSource& source, int64_t compact_revision,
                                         const kvpb::RangeRequest& request, uint64_t bytes_max = 0);

// The write side of one applied entry: etcd's storeTxnWrite. Changes accumulate in a
// backend batch and in the overlay (so later operations of a txn read them); the revision
// rises by one at commit if anything changed.
class WriteTxn {
 public:
  // `index`: the log entry being applied (recorded with every change it makes).
  WriteTxn(Store& store, int64_t begin_revision, uint64_t index);

  int64_t begin_revision() const { return begin_revision_; }
  // The revision a read inside this txn reports (begin + 1 once something changed).
  int64_t revision() const { return begin_revision_ + (changes_ > 0 ? 1 : 0); }
  bool changed() const { return changes_ > 0; }
  ReadSource source() const;
  // The state before this txn, for the checks etcd makes before executing a txn.
  ReadSource begin_source() const;

  // Puts a new version (etcd's put): keeps create_revision and bumps version of a live key,
  // moves the key between leases.
  Status Put(std::string_view key, std::string_view value, int64_t lease);
  // Deletes the live keys of `range` (etcd's deleteRange); returns how many.
  Result<int64_t> DeleteRange(const KeyRange& range, std::vector<kvpb::KeyValue>* prev_kvs);

  WriteBatch& batch() { return batch_; }
  // The keys this txn wrote (nullopt: deleted), for the store's live key index at commit.
  Overlay& overlay() { return overlay_; }
  // Runs after the batch is durable in the backend (in-memory effects: leases, alarms).
  void OnCommit(std::function<void()> fn) { on_commit_.push_back(std::move(fn)); }
  // Forgets every change (the request failed): the batch keeps only what Apply adds next.
  void Discard();
  std::vector<std::function<void()>>& on_commit() { return on_commit_; }

 private:
  Status DeleteKey(const std::string& key, const keys::Record& old);

  Store& store_;
  const int64_t begin_revision_;
  const uint64_t index_;
  int64_t changes_ = 0;
  Overlay overlay_;
  WriteBatch batch_;
  std::vector<std::function<void()>> on_commit_;
};

// Request validation shared by Validate and Apply (store_validate.cc).
Status ValidateRequest(const StoreOptions& options, const kvpb::Request& request);

}  // namespace synod::kv
