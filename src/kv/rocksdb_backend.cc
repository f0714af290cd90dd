#include "kv/rocksdb_backend.h"

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <utility>

#include "base/assert.h"

namespace synod::kv {
namespace {

Status FromRocks(const rocksdb::Status& s, const char* what) {
  if (s.ok()) return Status::Ok();
  const std::string message = std::string("rocksdb ") + what + ": " + s.ToString();
  if (s.IsCorruption()) return Status(Code::kCorruption, message);
  if (s.IsInvalidArgument()) return Status(Code::kInvalidArgument, message);
  return Status(Code::kIoError, message);
}

rocksdb::Slice ToSlice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }
std::string_view ToView(const rocksdb::Slice& s) { return std::string_view(s.data(), s.size()); }

class RocksIterator final : public BackendIterator {
 public:
  RocksIterator(rocksdb::DB* db, const rocksdb::Snapshot* snapshot, std::string_view lower,
                std::string_view upper, ScanKind kind)
      : lower_(lower), upper_(upper), lower_slice_(lower_), upper_slice_(upper_) {
    rocksdb::ReadOptions options;
    options.snapshot = snapshot;
    options.fill_cache = kind == ScanKind::kRequest;
    if (!lower_.empty()) options.iterate_lower_bound = &lower_slice_;
    if (!upper_.empty()) options.iterate_upper_bound = &upper_slice_;
    it_.reset(db->NewIterator(options));
  }
  void Seek(std::string_view target) override {
    if (target < lower_) target = lower_;
    it_->Seek(ToSlice(target));
  }
  void SeekToFirst() override { it_->SeekToFirst(); }
  void SeekToLast() override { it_->SeekToLast(); }
  bool Valid() const override { return it_->Valid(); }
  void Next() override { it_->Next(); }
  std::string_view key() const override { return ToView(it_->key()); }
  std::string_view value() const override { return ToView(it_->value()); }
  Status status() const override { return FromRocks(it_->status(), "iterate"); }

 private:
  // The bounds must outlive the iterator: RocksDB keeps pointers to the slices.
  std::string lower_, upper_;
  rocksdb::Slice lower_slice_, upper_slice_;
  std::unique_ptr<rocksdb::Iterator> it_;
};

Result<std::optional<std::string>> GetAt(rocksdb::DB* db, const rocksdb::Snapshot* snapshot,
                                         std::string_view key) {
  rocksdb::ReadOptions options;
  options.snapshot = snapshot;
  std::string value;
  rocksdb::Status s = db->Get(options, ToSlice(key), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return FromRocks(s, "get");
  return std::optional<std::string>(std::move(value));
}

// A RocksDB snapshot, released with the view.
class RocksView final : public BackendReader {
 public:
  explicit RocksView(rocksdb::DB* db) : db_(db), snapshot_(db->GetSnapshot()) {}
  ~RocksView() override { db_->ReleaseSnapshot(snapshot_); }
  Result<std::optional<std::string>> Get(std::string_view key) const override {
    return GetAt(db_, snapshot_, key);
  }
  std::unique_ptr<BackendIterator> NewIterator(std::string_view lower, std::string_view upper,
                                               ScanKind kind) const override {
    return std::make_unique<RocksIterator>(db_, snapshot_, lower, upper, kind);
  }

 private:
  rocksdb::DB* db_;
  const rocksdb::Snapshot* snapshot_;
};

class RocksBackend final : public Backend {
 public:
  RocksBackend(std::unique_ptr<rocksdb::DB> db, bool disable_wal)
      : db_(std::move(db)), disable_wal_(disable_wal) {}

  Result<std::optional<std::string>> Get(std::string_view key) const override {
    return GetAt(db_.get(), nullptr, key);
  }
  std::unique_ptr<BackendIterator> NewIterator(std::string_view lower, std::string_view upper,
                                               ScanKind kind) const override {
    return std::make_unique<RocksIterator>(db_.get(), nullptr, lower, upper, kind);
  }
  Status Write(const WriteBatch& batch, bool sync) override {
    rocksdb::WriteBatch rb;
    for (const auto& op : batch.ops()) {
      rocksdb::Status s;
      switch (op.kind) {
        case WriteBatch::OpKind::kPut:
          s = rb.Put(ToSlice(op.key), ToSlice(op.value));
          break;
        case WriteBatch::OpKind::kDelete:
          s = rb.Delete(ToSlice(op.key));
          break;
        case WriteBatch::OpKind::kDeleteRange:
          s = rb.DeleteRange(ToSlice(op.key), ToSlice(op.value));
          break;
      }
      if (!s.ok()) return FromRocks(s, "batch");
    }
    rocksdb::WriteOptions options;
    if (disable_wal_) {
      // Without RocksDB's log, writes become durable when their memtable is flushed, all
      // together. A synced write sent through the log instead would survive a crash that
      // loses the unlogged writes before it: recovery would not be a prefix of the writes
      // (an interrupted snapshot install, say, would keep its last batch without the wipe
      // before it).
      options.disableWAL = true;
      Status s = FromRocks(db_->Write(options, &rb), "write");
      if (!s.ok() || !sync) return s;
      return Sync();
    }
    options.sync = sync;
    return FromRocks(db_->Write(options, &rb), "write");
  }
  Status Sync() override {
    if (disable_wal_) {
      rocksdb::FlushOptions flush;
      flush.wait = true;
      return FromRocks(db_->Flush(flush), "flush");
    }
    return FromRocks(db_->FlushWAL(/*sync=*/true), "sync");
  }
  std::shared_ptr<const BackendReader> View() const override {
    return std::make_shared<RocksView>(db_.get());
  }
  uint64_t SizeBytes() const override {
    uint64_t sst = 0, mem = 0;
    db_->GetIntProperty("rocksdb.live-sst-files-size", &sst);
    db_->GetIntProperty("rocksdb.cur-size-all-mem-tables", &mem);
    return sst + mem;
  }
  uint64_t CacheBytes() const override {
    uint64_t cached = 0;
    db_->GetIntProperty("rocksdb.block-cache-usage", &cached);
    return cached;
  }
  Status Defragment() override {
    Status s = FromRocks(db_->Flush(rocksdb::FlushOptions()), "flush");
    if (!s.ok()) return s;
    rocksdb::CompactRangeOptions options;
    options.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
    return FromRocks(db_->CompactRange(options, nullptr, nullptr), "compact range");
  }

 private:
  std::unique_ptr<rocksdb::DB> db_;
  const bool disable_wal_;
};

}  // namespace

Result<std::unique_ptr<Backend>> OpenRocksBackend(const std::string& path,
                                                  const RocksBackendOptions& options) {
  rocksdb::Options ro;
  ro.create_if_missing = options.create_if_missing;
  if (options.env != nullptr) ro.env = options.env;
  ro.write_buffer_size = options.write_buffer_bytes;
  // Puts look the current version of their key up, mostly in memtables or not at all (new
  // keys): a bloom filter spares those lookups the SST blocks.
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  ro.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  ro.max_background_jobs = 2;
  ro.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  ro.keep_log_file_num = 2;
  // Point-in-time recovery: after a crash the database holds a prefix of the writes, which
  // is what lets the store replay the consensus log from its applied index.
  ro.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  ro.avoid_flush_during_shutdown = options.drop_unflushed_on_close;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(ro, path, &raw);
  if (!s.ok()) return FromRocks(s, "open");
  SYNOD_ASSERT(raw != nullptr, "rocksdb::DB::Open succeeded without a database");
  return std::unique_ptr<Backend>(
      new RocksBackend(std::unique_ptr<rocksdb::DB>(raw), options.disable_wal));
}

}  // namespace synod::kv
