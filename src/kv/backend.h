// Backend: the small ordered key-value interface the MVCC store runs on.
//
// The store (kv/store.h) never includes RocksDB: it sees only this interface, so the MVCC
// logic stays free of storage-engine details and a test or the simulator can swap the engine
// (RocksDB on a directory, RocksDB on an in-memory Env, ...). The one shipped implementation
// is RocksBackend (kv/rocksdb_backend.h, its own CMake target).
//
// What the store needs, and therefore what an implementation must provide:
//   - atomic batches: every Write applies all of its operations or none, also across a crash;
//   - prefix-consistent recovery: after a crash the backend holds the effect of a prefix of
//     the acknowledged Writes (the ones written with sync=true are in that prefix);
//   - consistent views: a View sees exactly the Writes that completed before it was taken;
//   - thread safety: Write, View and the iterators may be used from several threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/status.h"

namespace synod::kv {

// A batch of writes, applied atomically by Backend::Write.
class WriteBatch {
 public:
  enum class OpKind : uint8_t { kPut, kDelete, kDeleteRange };
  struct Op {
    OpKind kind;
    std::string key;    // kDeleteRange: the first key removed
    std::string value;  // kPut: the value; kDeleteRange: the end of the range (exclusive)
  };

  void Put(std::string key, std::string value) {
    bytes_ += key.size() + value.size();
    ops_.push_back(Op{OpKind::kPut, std::move(key), std::move(value)});
  }
  void Delete(std::string key) {
    bytes_ += key.size();
    ops_.push_back(Op{OpKind::kDelete, std::move(key), {}});
  }
  // Removes every key in [begin, end).
  void DeleteRange(std::string begin, std::string end) {
    bytes_ += begin.size() + end.size();
    ops_.push_back(Op{OpKind::kDeleteRange, std::move(begin), std::move(end)});
  }

  const std::vector<Op>& ops() const { return ops_; }
  bool empty() const { return ops_.empty(); }
  uint64_t bytes() const { return bytes_; }  // keys and values, a size estimate
  void Clear() {
    ops_.clear();
    bytes_ = 0;
  }

 private:
  std::vector<Op> ops_;
  uint64_t bytes_ = 0;
};

// An iterator over the keys of [lower, upper) in bytewise order. Positions and keys are valid
// until the next call that moves it.
class BackendIterator {
 public:
  virtual ~BackendIterator() = default;
  virtual void Seek(std::string_view target) = 0;  // first key >= target (and >= lower)
  virtual void SeekToFirst() = 0;
  virtual void SeekToLast() = 0;  // the last key < upper (and >= lower)
  virtual bool Valid() const = 0;
  virtual void Next() = 0;
  virtual std::string_view key() const = 0;
  virtual std::string_view value() const = 0;
  // An I/O or corruption error met while iterating (Valid() is then false).
  virtual Status status() const = 0;
};

// What an iterator is for, which decides whether the blocks it reads stay cached. A request
// reads what other requests will read again (kRequest). A scan that reads much of the
// database once — a snapshot, the key index built at start, compaction — passes kOnePass
// and reads past the block cache: through it, the scan would evict what requests keep
// reading and leave the cache full, to its configured size, of blocks nobody reads again.
enum class ScanKind { kRequest, kOnePass };

// Reads: either a consistent view (Backend::View) or the latest state (the Backend itself).
class BackendReader {
 public:
  virtual ~BackendReader() = default;
  virtual Result<std::optional<std::string>> Get(std::string_view key) const = 0;
  // `upper` empty: no upper bound.
  virtual std::unique_ptr<BackendIterator> NewIterator(
      std::string_view lower, std::string_view upper, ScanKind kind = ScanKind::kRequest) const = 0;
};

class Backend : public BackendReader {
 public:
  // Applies `batch` atomically. sync=true: durable (fsynced) before returning; otherwise the
  // write survives a process crash but not necessarily a machine crash.
  virtual Status Write(const WriteBatch& batch, bool sync) = 0;
  // Makes every Write so far durable.
  virtual Status Sync() = 0;
  // A consistent read-only view of the state now; it pins that state until released.
  virtual std::shared_ptr<const BackendReader> View() const = 0;
  // The space the data takes on disk and in memory, approximately (local to this node).
  virtual uint64_t SizeBytes() const = 0;
  // The memory the backend's cache of read blocks holds now (local).
  virtual uint64_t CacheBytes() const = 0;
  // Reclaims the space of deleted data now (etcd's "defragment").
  virtual Status Defragment() = 0;
};

}  // namespace synod::kv
