// Store: synod's MVCC key-value state machine, with etcd's v3 semantics (docs/kv.md).
//
// The consensus log carries kvpb::Request commands; the node applies each committed entry,
// in log order, with Apply(index, request, now_ms). Everything an entry changes — keys,
// history, leases, alarms — and the entry's index are written in ONE backend batch, so after
// a crash the store holds exactly the entries up to AppliedIndex() and replaying the log from
// there is idempotent (Apply of an index <= AppliedIndex() does nothing).
//
// Durability: by default batches are not fsynced (StoreOptions::sync): the consensus WAL is
// the durability point, and a crash that loses unsynced batches only loses entries that the
// log replays. Before the consensus log is truncated below an index, that index must be
// durable here: call Sync() (or take a snapshot) first.
//
// Threads: Apply, MarkApplied and InstallSnapshot are the writer's (one thread at a time; they
// also serialise among themselves). Every read — Range, EventsSince, the lease queries,
// WriteSnapshot — may run on any thread concurrently with the writer: it reads a consistent
// view (a backend snapshot taken with the revision it belongs to). CompactStep may run on
// another thread too (one call at a time); it only removes versions no read can reach.
//
// Time: the store never reads a clock. Lease expiry is decided by the leader ("primary"): the
// caller passes `now_ms` (any monotonic millisecond clock of this node) and turns expired
// leases into LeaseRevoke commands through the log.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/result.h"
#include "base/status.h"
#include "kv/backend.h"
#include "kv/snapshot.h"
#include "synod/kv.pb.h"

namespace synod::kv {

struct StoreOptions {
  // etcd's --max-request-bytes: a larger request is refused with "request is too large".
  uint64_t request_bytes_max = 1536 * 1024;
  // synod's own bounds on one key and one value (etcd has none beyond the request size, so
  // the defaults are the request bound); exceeding them is also "request is too large".
  uint64_t key_bytes_max = 1536 * 1024;
  uint64_t value_bytes_max = 1536 * 1024;
  // etcd's --max-txn-ops: compares, and operations of each branch, per txn.
  int64_t txn_ops_max = 128;
  // etcd's --quota-backend-bytes (default 2 GiB): past it, writes raise the NOSPACE alarm.
  uint64_t quota_bytes = 2ull << 30;
  // The shortest lease TTL granted (shorter requests are raised to it). etcd derives it
  // from the election timeout: ceil(1.5 * election timeout), 2 s by default.
  int64_t lease_ttl_min_s = 2;
  // The longest TTL accepted (etcd's MaxLeaseTTL).
  int64_t lease_ttl_max_s = 9000000000;
  // The most key and value bytes one Range response (outside a txn) holds in memory;
  // past it the Range fails with ErrRangeTooLarge. etcd has no bound (and can run out of
  // memory on a huge range). 0: no bound.
  uint64_t range_bytes_max = 512ull << 20;
  // fsync every applied batch. Off by default: the WAL is the durability point.
  bool sync = false;
};

struct ApplyResult {
  // The request's outcome, for the client: an etcd error (kv/errors.h) or OK.
  Status status;
  kvpb::Response response;  // when status is OK
  bool skipped = false;     // the index was applied before: nothing was done
};

// A slice of the watch history (EventsSince).
struct WatchEvents {
  std::vector<kvpb::Event> events;
  // Where the next call continues: every event of a revision below it has been looked at.
  int64_t next_revision = 0;
};

struct CompactionProgress {
  int64_t target_revision = 0;  // the compaction revision being worked towards
  uint64_t removed = 0;         // backend entries removed by this step
  bool done = false;            // nothing below the target is left to remove
};

struct SnapshotInfo {
  uint64_t applied_index = 0;  // the last log index the snapshot covers
  int64_t revision = 0;
  uint64_t bytes = 0;
  uint64_t entries = 0;
  uint32_t crc32c = 0;
};

class StoreTestPeer;
class TxnChecker;
class WriteTxn;

class Store {
 public:
  // Opens the store kept in `backend` (an empty backend is a new, empty store at revision 1).
  static Result<std::unique_ptr<Store>> Open(std::unique_ptr<Backend> backend,
                                             StoreOptions options);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // --- Before proposing (any thread) ---

  // The checks etcd's gRPC layer makes before a request reaches the log: empty keys, ignore_*
  // conflicts, txn size and duplicate keys, request size. Apply repeats them, so a request
  // that skipped them fails deterministically on every member.
  Status Validate(const kvpb::Request& request) const;
  // etcd's quota check: false if the request would grow the backend past the quota. The
  // server then proposes AlarmRequest{ACTIVATE, NOSPACE} and answers ErrNoSpace.
  bool QuotaAvailable(const kvpb::Request& request) const;
  // etcd's estimate of what a request adds to the backend (0: does not grow it).
  static int64_t QuotaCost(const kvpb::Request& request);

  // --- Applying the log (the writer) ---

  // Applies the committed entry `index`. The Result is an error only if the backend failed
  // (the store is then unusable: stop the node); the request's own outcome is in
  // ApplyResult::status. `now_ms` sets the expiry of leases granted while primary.
  Result<ApplyResult> Apply(uint64_t index, const kvpb::Request& request, uint64_t now_ms);
  // The same, from the bytes of a log entry (unparsable bytes: InvalidArgument outcome).
  Result<ApplyResult> ApplyBytes(uint64_t index, std::string_view bytes, uint64_t now_ms);
  // Records that `index` (an entry that is not a kv command: a no-op, a membership change)
  // is applied.
  Status MarkApplied(uint64_t index);

  // --- Reads (any thread) ---

  Result<kvpb::RangeResponse> Range(const kvpb::RangeRequest& request) const;
  // One live key's part of etcd's HashKV: `crc` extended by len(key) key len(value) value
  // create_revision mod_revision version lease (lengths and numbers 8 bytes little-endian).
  // Maintenance.HashKV folds it over every live key in key order; the simulator too.
  static uint32_t ExtendKeyValueHash(uint32_t crc, const kvpb::KeyValue& kv);
  // The events of revisions >= start_revision on keys of [key, range_end) (etcd's watch key
  // rules: empty range_end is the single key, "\0" every key >= key), in revision order, at
  // least `events_max` of them when that many exist (a revision is never split). Fails with
  // ErrCompacted if start_revision is below CompactRevision(): the watch is then cancelled
  // with compact_revision = CompactRevision(). prev_kv is filled when that version is still
  // readable (revision - 1 >= CompactRevision()), as etcd does.
  Result<WatchEvents> EventsSince(int64_t start_revision, std::string_view key,
                                  std::string_view range_end, bool prev_kv,
                                  size_t events_max) const;

  int64_t Revision() const;
  int64_t CompactRevision() const;  // -1 before the first compaction (as etcd)
  uint64_t AppliedIndex() const;

  // --- Leases: expiry is leader-local state, never replicated ---

  // This node became the leader: every lease expires `extend_ms` after its full TTL from
  // now (etcd's Promote: a new leader gives clients time to find it and keep alive).
  void Promote(uint64_t now_ms, uint64_t extend_ms);
  // This node is no longer the leader: leases stop expiring here.
  void Demote();
  bool IsPrimary() const;
  // Leases whose time is up (primary only), soonest first, at most `max` of them: the caller
  // proposes a LeaseRevoke for each (bounding `max` rate-limits revocations, as etcd does).
  std::vector<int64_t> ExpiredLeases(uint64_t now_ms, size_t max) const;
  // Refreshes the lease's expiry to now + TTL (primary only: ErrNotPrimary elsewhere).
  Result<kvpb::LeaseKeepAliveResponse> LeaseKeepAlive(const kvpb::LeaseKeepAliveRequest& request,
                                                      uint64_t now_ms);
  // Remaining TTL in seconds (the granted TTL where this node is not primary), and the
  // attached keys if asked. A missing lease answers TTL -1, as etcd does.
  Result<kvpb::LeaseTimeToLiveResponse> LeaseTimeToLive(const kvpb::LeaseTimeToLiveRequest& request,
                                                        uint64_t now_ms) const;
  kvpb::LeaseLeasesResponse LeaseLeases() const;  // sorted by ID

  // --- Maintenance ---

  // Removes up to `entries_max` history entries that compaction made unreachable. Runs
  // without blocking Apply or reads; call it between applies or from a background thread
  // until `done`. Resumes after a restart.
  Result<CompactionProgress> CompactStep(size_t entries_max);
  bool CompactionPending() const;
  // The space the backend takes (local, approximate; what the quota is checked against).
  uint64_t SizeBytes() const;
  // The memory the backend's block cache holds (local): requests' reads fill it, a snapshot's
  // or compaction's scan does not.
  uint64_t CacheBytes() const;
  // Reclaims the space of removed entries now (etcd's defragment).
  Status Defragment();
  // Makes every applied batch durable.
  Status Sync();
  std::vector<kvpb::AlarmMember> Alarms() const;

  // --- Snapshots ---

  // The whole store as it is now, pinned: a consistent view that stays readable while it is
  // held (the backend keeps the versions it sees beside the ones written since), for a
  // dump later. A snapshot whose state is made only when a member needs it holds one, so
  // that the state made is the snapshot's own, at its index. Release it with the store
  // still open.
  class Pinned;
  Result<std::shared_ptr<const Pinned>> Pin() const;
  // Writes a consistent dump of the whole store to `sink`: as it is now (at one backend
  // snapshot), or as `pinned` holds it.
  Result<SnapshotInfo> WriteSnapshot(SnapshotSink& sink, const Pinned* pinned = nullptr) const;
  // Replaces the whole store with the snapshot in `source` (the writer's call). The
  // checksum is verified before anything changes: a damaged snapshot is refused with
  // kCorruption and the store is left as it was. If the process dies during an install, the
  // reopened store refuses everything but InstallSnapshot (NeedsSnapshot()).
  Result<SnapshotInfo> InstallSnapshot(SnapshotSource& source);
  bool NeedsSnapshot() const;

 private:
  friend class StoreTestPeer;
  friend class TxnChecker;
  friend class WriteTxn;
  struct View;
  Result<SnapshotInfo> WriteSnapshotOf(const View& view, SnapshotSink& sink) const;
  struct LeaseState {
    int64_t ttl_s = 0;
    std::optional<uint64_t> expiry_ms;  // none: does not expire here (not primary)
  };
  // What a put needs of a live key's current version (etcd keeps its key index in memory
  // too): with it, a put reads nothing from the backend.
  struct LiveKey {
    int64_t create_revision = 0;
    int64_t version = 0;
    int64_t lease = 0;
  };
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using LiveKeys = std::unordered_map<std::string, LiveKey, StringHash, std::equal_to<>>;

  Store(std::unique_ptr<Backend> backend, StoreOptions options);
  Status LoadState();
  Result<View> TakeView() const;
  Status CheckUsable() const;

  // Apply's parts (store_apply.cc, store_txn.cc, store_lease.cc).
  Status ApplyRequest(WriteTxn& txn, const kvpb::Request& request, uint64_t index, uint64_t now_ms,
                      kvpb::Response* response);
  Status ApplyPut(WriteTxn& txn, const kvpb::PutRequest& request, kvpb::PutResponse* response);
  Status ApplyDeleteRange(WriteTxn& txn, const kvpb::DeleteRangeRequest& request,
                          kvpb::DeleteRangeResponse* response);
  Status ApplyTxn(WriteTxn& txn, const kvpb::TxnRequest& request, kvpb::TxnResponse* response);
  Status ApplyCompaction(WriteTxn& txn, const kvpb::CompactionRequest& request,
                         kvpb::CompactionResponse* response);
  Status ApplyLeaseGrant(WriteTxn& txn, const kvpb::LeaseGrantRequest& request, uint64_t index,
                         uint64_t now_ms, kvpb::LeaseGrantResponse* response);
  Status ApplyLeaseRevoke(WriteTxn& txn, const kvpb::LeaseRevokeRequest& request,
                          kvpb::LeaseRevokeResponse* response);
  Status ApplyAlarm(WriteTxn& txn, const kvpb::AlarmRequest& request,
                    kvpb::AlarmResponse* response);
  Status CompactKey(const std::string& key, int64_t target, WriteBatch* batch, uint64_t* removed);
  bool LeaseExists(int64_t id) const;
  bool AlarmActive(kvpb::AlarmType type) const;

  std::unique_ptr<Backend> backend_;
  const StoreOptions options_;

  // The writer's lock: Apply, MarkApplied, InstallSnapshot.
  std::mutex apply_mu_;
  // One CompactStep at a time.
  std::mutex compact_mu_;
  std::string compact_cursor_;  // guarded by compact_mu_: where the last step stopped

  // Guards the fields below, and is held across each backend Write of Apply so that a
  // reader's view and the revision it records always agree.
  mutable std::mutex mu_;
  uint64_t applied_index_ = 0;
  int64_t revision_ = 1;
  int64_t compact_revision_ = -1;
  int64_t compact_done_ = -1;  // physical compaction finished up to here
  bool needs_snapshot_ = false;
  std::set<std::pair<uint64_t, int>> alarms_;  // (member, AlarmType)

  // Every live key as of the last applied entry: the writer's alone (Apply, LoadState).
  LiveKeys live_keys_;

  // Lease expiry: guarded by lease_mu_ (keep-alives come from other threads).
  mutable std::mutex lease_mu_;
  std::map<int64_t, LeaseState> leases_;
  bool primary_ = false;
};

// A pinned view of a store (Store::Pin): what WriteSnapshot dumps from it.
class Store::Pinned {
 public:
  uint64_t applied_index() const { return applied_index_; }

 private:
  friend class Store;
  std::shared_ptr<const BackendReader> reader_;
  int64_t revision_ = 0;
  int64_t compact_revision_ = -1;
  uint64_t applied_index_ = 0;
};

}  // namespace synod::kv
