// Recovery: reads every segment of a WAL directory in order and rebuilds the log.
//
// The rules (docs/wal.md has the reasons):
//  - every segment starts with a valid header matching its file name; sequence numbers are
//    consecutive and each segment's first index continues the log of the one before;
//  - in the last segment, an unreadable record (partial, or with a bad checksum or type) with
//    no valid record anywhere after it is a torn tail: the log ends before it, and the bytes
//    are reported so that the writer can cut them off;
//  - anything else unreadable, in any segment, is corruption: Status kCorruption naming the
//    file and byte offset. Nothing is ever skipped silently.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "storage/wal_format.h"
#include "storage/wal_log.h"
#include "synod/consensus.pb.h"

namespace synod::storage {

// What Wal::Open hands back: the log as it was last made durable.
struct WalRecovered {
  std::optional<consensuspb::HardState> hard_state;       // the newest one logged
  std::optional<consensuspb::SnapshotMetadata> snapshot;  // the newest marker logged
  std::vector<consensuspb::Entry> entries;                // after the snapshot, contiguous
  uint64_t repaired_tail_bytes = 0;  // garbage cut off the end of the last segment
  std::string repair_note;           // where and why, when repaired_tail_bytes > 0
};

// One segment file as the writer tracks it.
struct SegmentInfo {
  std::string path;
  SegmentHeader header;
  uint64_t max_entry_index = 0;  // highest entry index written in it (0: none)
};

struct RecoveryResult {
  WalRecovered recovered;
  std::vector<SegmentInfo> segments;  // in log order; empty for a new WAL
  uint64_t last_segment_end = 0;      // byte offset just past the last good record
  bool last_segment_repair = false;   // garbage lies after last_segment_end
  LogBounds bounds;
};

// Applies one record of a segment (any but its header) to `replay`: parses the payload and
// checks it against the log rules. Returns why it cannot follow the log, or "" on success;
// an entry record raises `*max_entry_index` to its index. Recovery reads every record with
// it; the simulator reads back the records it encoded with it too.
std::string ApplyRecord(const ParsedRecord& record, LogReplay* replay, uint64_t* max_entry_index);

// Removes leftover "*.tmp" files (segments whose creation never finished) and recovers.
Status RecoverWal(const std::string& dir, uint64_t record_bytes_max, RecoveryResult* result);

// Reads a whole file; used by recovery and by tests.
Status ReadFile(const std::string& path, std::string* bytes);

}  // namespace synod::storage
