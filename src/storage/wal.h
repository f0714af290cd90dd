// Wal: the write-ahead log of one consensus group, with group commit.
//
// Usage (the engine's persistence step):
//   std::unique_ptr<Wal> wal;  WalRecovered recovered;
//   Status s = Wal::Open(dir, options, &wal, &recovered);   // rebuilds the log from disk
//   WalTicket ticket;
//   s = wal->Append(WalWrite{.entries = ..., .hard_state = ...}, &ticket);  // any thread
//   s = wal->WaitDurable(ticket);        // or options.on_durable, from the storage thread
//   s = wal->Append(write, [](const Status& durable) {...});  // told on the storage thread
//
// Group commit: Append only encodes the records (on the caller's thread) and queues them. A
// dedicated storage thread takes everything queued while its previous fdatasync ran, writes
// it with one pwritev, runs one fdatasync and then publishes the new durable position. Under
// load one fdatasync therefore covers many appends.
//
// Appends are ordered by the order of their Append calls, and each must fit the log as left
// by the appends before it (see WalWrite); callers appending from several threads serialise
// their choice of indexes themselves (a consensus engine has one persistence step anyway).
//
// Errors: once a write, fdatasync or segment rotation fails (disk full, I/O error), the WAL
// is failed for good: every waiter and every later Append gets the same kIoError status. An
// fdatasync is never retried after a failure, because the kernel may already have dropped the
// dirty pages it failed to write. What was durable before stays intact on disk.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "storage/wal_io.h"
#include "storage/wal_log.h"
#include "storage/wal_recovery.h"
#include "storage/wal_writer.h"
#include "synod/consensus.pb.h"

namespace synod::storage {

struct WalOptions {
  // Segments are preallocated to this size; a new one starts when the next append does not
  // fit (an append larger than a segment gets a segment of its own, grown past the size).
  uint64_t segment_bytes = 64ull << 20;
  bool preallocate = true;
  // Largest payload of one record: an entry larger than this is refused with kTooLarge.
  uint64_t record_bytes_max = 32ull << 20;
  // Append blocks while this many encoded bytes wait for the storage thread (backpressure).
  uint64_t queue_bytes_max = 64ull << 20;
  // Called on the storage thread after each fdatasync with the last index of the log as it
  // is now durable. Must not call back into the Wal's Append/WaitDurable from here.
  std::function<void(uint64_t last_durable_index)> on_durable;
  // Told about torn tails repaired on open (default: a line on stderr).
  std::function<void(const std::string& message)> log;
  // System calls used to write; null means the real ones. Tests inject faults here. Not
  // owned: must outlive the Wal.
  WalIo* io = nullptr;
};

// One append: written in the order snapshot marker, entries, hard state.
struct WalWrite {
  // Entries of consecutive indexes. The first must be at most last_index() + 1 and above the
  // snapshot; if it is at or below last_index(), the log from there on is replaced (Raft's
  // overwrite of a conflicting suffix). Violations are caller bugs and abort.
  std::vector<consensuspb::Entry> entries;
  std::optional<consensuspb::HardState> hard_state;
  // Entries <= snapshot->index are covered by a snapshot kept elsewhere; entries after it are
  // kept. Markers never move back.
  std::optional<consensuspb::SnapshotMetadata> snapshot;
};

using WalTicket = uint64_t;  // increases by one per Append, starting at 1

struct WalCounters {
  uint64_t records_written = 0;  // records made durable (entries, hard states, markers)
  uint64_t appends_written = 0;  // Append calls made durable
  uint64_t syncs = 0;            // fdatasync/fsync calls on segment files
  uint64_t group_commits = 0;    // batches written by the storage thread (one fdatasync each)
  uint64_t bytes_written = 0;
  uint64_t segments_created = 0;
  uint64_t segments_released = 0;
};

class Wal {
 public:
  // Opens (creating if needed) the WAL in `dir`, recovers it into `recovered` and starts the
  // storage thread. Fails with kCorruption on damage other than a torn tail, with
  // kUnavailable if another process has the directory open.
  static Status Open(const std::string& dir, WalOptions options, std::unique_ptr<Wal>* wal,
                     WalRecovered* recovered);

  // Writes everything still queued, then stops the storage thread.
  ~Wal();
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // Queues `write`; `*ticket` identifies it for WaitDurable. Fails with the failed state's
  // kIoError, or kTooLarge for an oversized entry (nothing queued then).
  Status Append(const WalWrite& write, WalTicket* ticket);
  // Queues `write`; `on_durable` runs on the storage thread once it (and every append before
  // it) is durable, with Ok, or with the WAL's error if it fails first. It must be quick
  // and must not call Append or WaitDurable. No thread waits: the caller hears back.
  // Fails at once (without calling `on_durable`) as the Append above does.
  Status Append(const WalWrite& write, std::function<void(const Status&)> on_durable);
  // Blocks until the append with `ticket` (and all before it) is durable, or the WAL failed.
  Status WaitDurable(WalTicket ticket);
  // Append + WaitDurable: the synchronous path.
  Status AppendSync(const WalWrite& write);

  // Deletes whole segments, oldest first, all of whose entries are <= `index`, never going
  // above the newest durable snapshot marker (entries it does not cover are never deleted)
  // and never deleting the current segment. Each segment starts with copies of the newest
  // hard state and marker, so no needed state goes with a deleted one.
  Status ReleaseBefore(uint64_t index, uint64_t* segments_released = nullptr);

  uint64_t last_index() const;     // of the log including queued appends
  uint64_t durable_index() const;  // last index of the durable log
  uint64_t durable_snapshot_index() const;
  Status status() const;  // Ok, or why the WAL failed
  WalCounters counters() const;
  size_t segment_count() const { return writer_.segment_count(); }

 private:
  Wal(const std::string& dir, WalOptions options, const RecoveryResult& recovery, int lock_fd);
  Status Encode(const WalWrite& write, WalChunk* chunk) const;
  // Encodes `write` and queues it (the two Appends).
  Status Enqueue(const WalWrite& write, std::function<void(const Status&)> on_durable,
                 WalTicket* ticket);
  void CheckAndApply(const WalWrite& write);
  void Run();
  void Publish(const std::vector<WalChunk>& batch);
  void Fail(const Status& status);

  const std::string dir_;
  const WalOptions options_;
  SegmentWriter writer_;
  const int lock_fd_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_;     // storage thread: queue not empty, or stopping
  std::condition_variable space_cv_;    // appenders: the queue has room
  std::condition_variable durable_cv_;  // waiters: durable position moved, or failed
  std::vector<WalChunk> queue_;         // guarded by mu_
  uint64_t queue_bytes_ = 0;
  LogBounds bounds_;  // the log including queued appends
  WalTicket next_ticket_ = 1;
  WalTicket durable_ticket_ = 0;
  uint64_t durable_index_ = 0;
  uint64_t durable_snapshot_index_ = 0;
  Status failed_;
  bool stopping_ = false;
  WalCounters counters_;  // records/appends/group_commits/segments_released; under mu_

  std::thread thread_;  // last: starts after everything above is initialised
};

}  // namespace synod::storage
