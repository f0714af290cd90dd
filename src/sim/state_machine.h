// What a simulated member applies its log to. The log carries key-value requests
// (kvpb::Request, kv_requests.h); two state machines answer them:
//
//   kv    the real key-value store, kv::Store on RocksDB, each member on an in-memory
//         RocksDB Env of its own that plays its disk (store_state_machine.h). The default.
//   toy   a map that answers the same requests the same way, for fast runs: it keeps
//         nothing across a crash and starts again from the member's snapshot
//         (toy_state_machine.h).
//
// Both are driven the way the node runtime drives its state machine: Open at every start
// (a state machine behind the member's snapshot starts from it), Apply for each committed
// entry in order (entries it already holds are skipped), snapshots taken and installed.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "consensus/api/engine.h"
#include "kv/store.h"

namespace synod::sim {

namespace pb = ::synod::consensuspb;

// What the replicas of a state machine must agree on once they have applied the same index.
struct StoreFingerprint {
  int64_t revision = 0;
  int64_t compact_revision = 0;
  // CRC32C over every live key at the current revision, in key order, each as its key,
  // value, create and mod revisions, version and lease (the fields the server's HashKV
  // hashes).
  uint32_t hash = 0;
};
// The hash of `kvs`, live keys in key order.
uint32_t HashKeyValues(const std::vector<kvpb::KeyValue>& kvs);

class StateMachine {
 public:
  virtual ~StateMachine() = default;

  // Starts (or restarts after Crash) from what survived on the member's disk; if that is
  // behind `kept`, the member's newest snapshot, starts from the snapshot.
  virtual Status Open(const consensus::Snapshot& kept) = 0;
  // The member crashed: whatever had not reached its disk is lost.
  virtual void Crash() = 0;

  virtual consensus::LogIndex AppliedIndex() const = 0;
  // Applies the committed entry at AppliedIndex() + 1: its request, if it carries one (the
  // outcome is returned), else it is only marked applied (nullopt). An error means the
  // state machine itself failed.
  virtual Result<std::optional<kv::ApplyResult>> Apply(const pb::Entry& entry, uint64_t now_ms) = 0;
  // Between applies: a bounded step of background work; with `flush`, everything applied so
  // far is made to survive a crash.
  virtual Status AfterApply(bool flush) = 0;

  // The value of `key` now (nullopt: absent).
  virtual Result<std::optional<std::string>> Get(const std::string& key) const = 0;
  virtual Result<StoreFingerprint> Fingerprint() const = 0;
  virtual int64_t Revision() const = 0;
  virtual int64_t CompactRevision() const = 0;

  // Deferred snapshots (kv): makes everything applied durable and keeps the state as it is
  // now for Snapshot, as the server's state machine does (runtime::StateMachine::Persist);
  // returns the index it covers. kUnimplemented where the state is not durable (toy).
  virtual Result<consensus::LogIndex> Persist() {
    return Status(Code::kUnimplemented, "this state machine keeps nothing on disk");
  }
  // A snapshot of the whole state, at the index it covers: the state kept by the last
  // Persist, if any (until a crash or an Install), else the state now.
  virtual Result<std::string> Snapshot(consensus::LogIndex* index) = 0;
  // Replaces the whole state with a snapshot (from the leader) covering `index`.
  virtual Status Install(const std::string& data, consensus::LogIndex index) = 0;
};

struct StateMachineOptions {
  std::string kind = "kv";  // "kv" or "toy"
  // History entries one physical compaction step may remove (kv).
  size_t compact_step_entries = 64;
  // Take snapshots while physical compaction is under way (kv). Members' snapshots at one
  // index then differ in the history they still hold; off, a snapshot waits for the
  // compaction to finish, which makes them byte-identical (see docs/simulator.md).
  bool snapshot_mid_compaction = false;
};

std::unique_ptr<StateMachine> MakeStateMachine(const StateMachineOptions& options);
bool KnownStateMachine(const std::string& kind);

}  // namespace synod::sim
