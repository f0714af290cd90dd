// The real key-value store as a simulated member's state machine: kv::Store on RocksDB,
// kept on an in-memory RocksDB Env of the member's own that plays its disk.
//
// The store is opened as the server opens it (no RocksDB log under the consensus log), and
// a crash closes it without flushing the memtables: every write since the last flush is
// lost, as a crash of the process loses it, while what was flushed survives in the Env and is
// found again at Open. The runtime's restart rule follows: a store behind the member's
// snapshot (or caught in the middle of an install) installs the snapshot again.
//
// Determinism: the store is used from one thread. RocksDB's background threads only compact
// SST files, which never changes what a read returns; memtables are flushed only when the
// simulator asks (the write buffer is far larger than a run writes), never by a background
// decision.
#pragma once

#include <memory>

#include "sim/state_machine.h"

namespace rocksdb {
class Env;
}

namespace synod::sim {

class StoreStateMachine final : public StateMachine {
 public:
  explicit StoreStateMachine(const StateMachineOptions& options);
  ~StoreStateMachine() override;

  Status Open(const consensus::Snapshot& kept) override;
  void Crash() override;
  consensus::LogIndex AppliedIndex() const override { return store_->AppliedIndex(); }
  Result<std::optional<kv::ApplyResult>> Apply(const pb::Entry& entry, uint64_t now_ms) override;
  Status AfterApply(bool flush) override;
  Result<std::optional<std::string>> Get(const std::string& key) const override;
  Result<StoreFingerprint> Fingerprint() const override;
  int64_t Revision() const override { return store_->Revision(); }
  int64_t CompactRevision() const override { return store_->CompactRevision(); }
  Result<consensus::LogIndex> Persist() override;
  Result<std::string> Snapshot(consensus::LogIndex* index) override;
  Status Install(const std::string& data, consensus::LogIndex index) override;

 private:
  const StateMachineOptions options_;
  std::unique_ptr<rocksdb::Env> env_;
  // Physical compaction to the end, unless snapshots may be taken in its middle.
  Status FinishCompaction();

  std::unique_ptr<kv::Store> store_;
  std::shared_ptr<const kv::Store::Pinned> pinned_;  // the last Persist's state; before store_ goes
};

}  // namespace synod::sim
