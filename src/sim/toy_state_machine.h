// The toy state machine: an in-memory map that answers the simulator's key-value requests
// (puts, deletes, compare-and-swap transactions, compactions) with etcd's rules for them,
// keeping only the latest version of each key. It keeps nothing across a crash: a restarted
// member starts from its snapshot and the log replays the rest. Much faster than the real
// store, for long or many runs; the real one (store_state_machine.h) is the default.
#pragma once

#include <map>
#include <string>

#include "sim/state_machine.h"

namespace synod::sim {

class ToyStateMachine final : public StateMachine {
 public:
  Status Open(const consensus::Snapshot& kept) override;
  void Crash() override;
  consensus::LogIndex AppliedIndex() const override { return applied_; }
  Result<std::optional<kv::ApplyResult>> Apply(const pb::Entry& entry, uint64_t now_ms) override;
  Status AfterApply(bool) override { return Status::Ok(); }
  Result<std::optional<std::string>> Get(const std::string& key) const override;
  Result<StoreFingerprint> Fingerprint() const override;
  int64_t Revision() const override { return revision_; }
  int64_t CompactRevision() const override { return compact_revision_; }
  Result<std::string> Snapshot(consensus::LogIndex* index) override;
  Status Install(const std::string& data, consensus::LogIndex index) override;

 private:
  kv::ApplyResult ApplyRequest(const kvpb::Request& request);
  bool Compare(const kvpb::Compare& compare) const;
  // Runs one operation of a request at revision revision_ + 1; sets *wrote if it changed a
  // key.
  void Put(const kvpb::PutRequest& put, kvpb::PutResponse* response, bool* wrote);
  void DeleteRange(const kvpb::DeleteRangeRequest& del, kvpb::DeleteRangeResponse* response,
                   bool* wrote);
  void Range(const kvpb::RangeRequest& range, kvpb::RangeResponse* response) const;
  void Reset();

  std::map<std::string, kvpb::KeyValue> keys_;  // live keys
  consensus::LogIndex applied_ = 0;
  int64_t revision_ = 1;
  int64_t compact_revision_ = -1;
};

}  // namespace synod::sim
