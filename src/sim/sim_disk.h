// A simulated member's disk: exactly what was fsynced, and nothing else.
//
// The log is kept as the bytes the real write-ahead log writes (storage/wal_format.h): a
// segment header, then CRC-framed records — snapshot markers, entries, hard states — in the
// order the persistence contract gives, each serialized as the WAL serializes it. When the
// member restarts, the bytes are read back with the WAL's own recovery rules
// (storage::ApplyRecord, storage::LogReplay) and must give back exactly the log that was
// written: a bug in the format, the framing or the replay rules shows up as a violation.
//
// A decoded copy of the same log is kept beside the bytes, for the checkers that look at
// every member's durable log after each step, and as the reference the read-back is
// compared with.
//
// Compacting the log (a local snapshot) starts the bytes afresh, as a new segment: its header,
// the newest hard state and marker (as the WAL begins every segment), and the entries the
// snapshot does not cover. The WAL releases whole segments instead; the records are the same.
// State snapshots themselves are kept beside the log, as the node runtime keeps them in files.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "consensus/api/engine.h"

namespace synod::sim {

namespace pb = ::synod::consensuspb;

class SimDiskTestPeer;

class SimDisk {
 public:
  // A founding member's disk: the cluster's index-0 snapshot (its membership), no log.
  explicit SimDisk(const pb::ConfState& initial_membership);

  // One Ready's durable part, in the contract's order: a snapshot from the leader, entries
  // (the first may overwrite a suffix), a hard state. The snapshot is recorded as the node
  // runtime records it, a WAL marker: the entries it covers are dropped, those after it
  // kept.
  void InstallSnapshot(consensus::Snapshot snapshot);
  void Append(std::vector<pb::Entry> entries);
  void SetHardState(const pb::HardState& hard_state);
  // A local snapshot at snapshot.metadata.index (which the log holds or passed): the log
  // before it is dropped, the entries after it are kept.
  void Compact(consensus::Snapshot snapshot);

  // Reads the log back from its bytes (a restart). Fails, saying where, if the bytes do not
  // decode to exactly the log that was written.
  Result<consensus::DurableState> Recover() const;

  const pb::HardState& hard_state() const { return hard_state_; }
  const consensus::Snapshot& snapshot() const { return snapshot_; }
  consensus::LogIndex snapshot_index() const { return snapshot_.metadata.index(); }
  // The durable log after the snapshot, in order.
  const std::vector<pb::Entry>& entries() const { return entries_; }
  // The durable entry at `index`; null at or below the snapshot, or past the log's end.
  const pb::Entry* EntryAt(consensus::LogIndex index) const {
    const consensus::LogIndex base = snapshot_index();
    if (index <= base || index - base > entries_.size()) return nullptr;
    return &entries_[index - base - 1];
  }
  uint64_t log_bytes() const { return wal_.size(); }

 private:
  friend class SimDiskTestPeer;
  void StartSegment();
  void DropCovered(consensus::LogIndex index);
  void AppendRecord(int type, const google::protobuf::MessageLite& message);

  // The decoded copy.
  pb::HardState hard_state_;
  bool has_hard_state_ = false;
  consensus::Snapshot snapshot_;
  std::vector<pb::Entry> entries_;

  // The bytes: one segment.
  std::string wal_;
  uint64_t segment_seq_ = 0;
  uint64_t segment_first_index_ = 1;
};

}  // namespace synod::sim
