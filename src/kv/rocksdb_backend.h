// RocksBackend: kv::Backend on RocksDB. The only file of src/kv that sees RocksDB's headers
// is rocksdb_backend.cc; this header keeps them out, so including it stays cheap and pure.
#pragma once

#include <memory>
#include <string>

#include "base/result.h"
#include "kv/backend.h"

namespace rocksdb {
class Env;
}

namespace synod::kv {

struct RocksBackendOptions {
  // The RocksDB Env to run on; null means the default (the real file system). Pass
  // rocksdb::NewMemEnv(rocksdb::Env::Default()) to keep everything in memory (tests, the
  // simulator). Not owned: must outlive the backend.
  rocksdb::Env* env = nullptr;
  bool create_if_missing = true;
  // Size of one memtable; small values make tests flush (and exercise SST reads) often.
  uint64_t write_buffer_bytes = 64ull << 20;
  // Skip RocksDB's own write-ahead log: for a store whose writes can be replayed from
  // elsewhere (the consensus log, with snapshots covering what it released). Writes are
  // then durable once the memtables are flushed: Sync() and a write asked to sync flush
  // them (so what survives a crash is still a prefix of the writes).
  bool disable_wal = false;
  // RocksDB's cache of uncompressed SST blocks.
  uint64_t block_cache_bytes = 64ull << 20;
  // Close without flushing the memtables (RocksDB's avoid_flush_during_shutdown): writes
  // made without RocksDB's log (disable_wal) are then lost at close, exactly as a crash
  // would lose them. The simulator closes a crashed member's store this way.
  bool drop_unflushed_on_close = false;
};

// Opens (creating it if allowed) the RocksDB database in directory `path`.
Result<std::unique_ptr<Backend>> OpenRocksBackend(const std::string& path,
                                                  const RocksBackendOptions& options);

}  // namespace synod::kv
