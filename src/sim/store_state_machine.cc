#include "sim/store_state_machine.h"

#include <rocksdb/env.h>

#include "kv/rocksdb_backend.h"
#include "sim/kv_requests.h"
#include "storage/crc32c.h"

namespace synod::sim {
namespace {

// Where the store lives inside its Env.
constexpr char kStorePath[] = "/synod-sim/kv";

}  // namespace

StoreStateMachine::StoreStateMachine(const StateMachineOptions& options)
    : options_(options), env_(rocksdb::NewMemEnv(rocksdb::Env::Default())) {}

StoreStateMachine::~StoreStateMachine() {
  pinned_.reset();  // before the store it reads
  store_.reset();   // before the Env it runs on
}

Status StoreStateMachine::Open(const consensus::Snapshot& kept) {
  pinned_.reset();
  kv::RocksBackendOptions backend_options;
  backend_options.env = env_.get();
  backend_options.disable_wal = true;  // as the server: the consensus log is the durability point
  backend_options.drop_unflushed_on_close = true;
  // A run writes well under a megabyte: no memtable ever fills, so flushes happen only when
  // the simulator asks for them.
  backend_options.write_buffer_bytes = 32ull << 20;
  backend_options.block_cache_bytes = 1ull << 20;
  auto backend = kv::OpenRocksBackend(kStorePath, backend_options);
  if (!backend.ok()) return backend.status();
  auto store = kv::Store::Open(std::move(backend.value()), kv::StoreOptions{});
  if (!store.ok()) return store.status();
  store_ = std::move(store.value());
  const consensus::LogIndex snap = kept.metadata.index();
  if (store_->NeedsSnapshot() || store_->AppliedIndex() < snap) {
    if (snap == 0) return Status(Code::kCorruption, "the store needs a snapshot, none is kept");
    auto state = kept.ReadAll();
    if (!state.ok()) {
      // A deferred snapshot: the store was to hold its state, and the log before it is gone.
      return Status(Code::kCorruption, "the store (applied " +
                                           std::to_string(store_->AppliedIndex()) +
                                           ") is behind the snapshot at " + std::to_string(snap) +
                                           " whose state it was to hold");
    }
    return Install(state.value(), snap);
  }
  return Status::Ok();
}

void StoreStateMachine::Crash() {
  pinned_.reset();  // it reads the store
  store_.reset();
}

Result<std::optional<kv::ApplyResult>> StoreStateMachine::Apply(const pb::Entry& entry,
                                                                uint64_t now_ms) {
  if (entry.type() == pb::ENTRY_NORMAL && !entry.data().empty()) {
    auto r = store_->ApplyBytes(entry.index(), entry.data(), now_ms);
    if (!r.ok()) return r.status();
    return std::optional<kv::ApplyResult>(std::move(r.value()));
  }
  if (Status s = store_->MarkApplied(entry.index()); !s.ok()) return s;
  return std::optional<kv::ApplyResult>();
}

Status StoreStateMachine::AfterApply(bool flush) {
  // Physical compaction goes on between applies, a bounded step at a time.
  if (store_->CompactionPending()) {
    // Mid-compaction snapshots are the point of the option: then compaction crawls.
    auto step =
        store_->CompactStep(options_.snapshot_mid_compaction ? 2 : options_.compact_step_entries);
    if (!step.ok()) return step.status();
  }
  return flush ? store_->Sync() : Status::Ok();
}

Result<std::optional<std::string>> StoreStateMachine::Get(const std::string& key) const {
  auto read = store_->Range(GetRequest(key));
  if (!read.ok()) return read.status();
  return ValueOf(read.value());
}

Result<StoreFingerprint> StoreStateMachine::Fingerprint() const {
  StoreFingerprint fp;
  fp.revision = store_->Revision();
  fp.compact_revision = store_->CompactRevision();
  kvpb::RangeRequest all;
  all.set_key(std::string(1, '\0'));  // with range_end "\0": every key
  all.set_range_end(std::string(1, '\0'));
  all.set_revision(fp.revision);
  auto range = store_->Range(all);
  if (!range.ok()) return range.status();
  const auto& kvs = range.value().kvs();
  fp.hash = HashKeyValues(std::vector<kvpb::KeyValue>(kvs.begin(), kvs.end()));
  return fp;
}

Status StoreStateMachine::FinishCompaction() {
  while (!options_.snapshot_mid_compaction && store_->CompactionPending()) {
    auto step = store_->CompactStep(options_.compact_step_entries);
    if (!step.ok()) return step.status();
  }
  return Status::Ok();
}

Result<consensus::LogIndex> StoreStateMachine::Persist() {
  if (Status s = FinishCompaction(); !s.ok()) return s;
  auto pinned = store_->Pin();
  if (!pinned.ok()) return pinned.status();
  if (Status s = store_->Sync(); !s.ok()) return s;
  pinned_ = std::move(pinned.value());
  return pinned_->applied_index();
}

Result<std::string> StoreStateMachine::Snapshot(consensus::LogIndex* index) {
  if (!pinned_) {
    if (Status s = FinishCompaction(); !s.ok()) return s;
  }
  kv::StringSnapshotSink sink;
  auto info = store_->WriteSnapshot(sink, pinned_.get());
  if (!info.ok()) return info.status();
  *index = info.value().applied_index;
  return std::move(sink.mutable_data());
}

Status StoreStateMachine::Install(const std::string& data, consensus::LogIndex index) {
  pinned_.reset();  // the state of an older snapshot
  kv::StringSnapshotSource source(data);
  auto installed = store_->InstallSnapshot(source);
  if (!installed.ok()) return installed.status();
  if (installed.value().applied_index != index) {
    return Status(Code::kCorruption,
                  "the snapshot holds index " + std::to_string(installed.value().applied_index));
  }
  return Status::Ok();
}

}  // namespace synod::sim
