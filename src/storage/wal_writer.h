// SegmentWriter: appends encoded records to the segment files of one WAL directory. Not
// thread-safe except where noted: the Wal's storage thread is its only writer.
//
// Durability protocol (the reasons are in docs/wal.md):
//  - a segment is created as "<name>.tmp", preallocated, given its header plus copies of the
//    newest hard state and snapshot marker, fdatasync'ed, renamed into place, and the
//    directory fsync'ed: a segment file either does not exist or starts with a valid header;
//  - before the next segment is created, the full one is cut to its used length and fsync'ed,
//    so a crash can only ever tear the last segment;
//  - segments are deleted oldest first, with a directory fsync after each, so a crash leaves
//    a contiguous run of segments.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "storage/wal_io.h"
#include "storage/wal_recovery.h"
#include "synod/consensus.pb.h"

namespace synod::storage {

// The encoded records of one Append, and the state of the log after them.
struct WalChunk {
  std::string bytes;
  uint64_t ticket = 0;
  uint64_t records = 0;
  uint64_t max_entry_index = 0;   // highest entry index in the chunk (0: no entries)
  uint64_t last_index_after = 0;  // last index of the log once the chunk is applied
  std::optional<consensuspb::HardState> hard_state;       // set when the chunk logs one
  std::optional<consensuspb::SnapshotMetadata> snapshot;  // set when the chunk logs one
  // Told once the chunk is durable (Ok) or can never be (the WAL's failure); may be empty.
  std::function<void(const Status&)> on_durable;
};

struct SegmentWriterOptions {
  uint64_t segment_bytes = 0;
  bool preallocate = true;
};

class SegmentWriter {
 public:
  SegmentWriter(std::string dir, SegmentWriterOptions options, WalIo& io);
  ~SegmentWriter();
  SegmentWriter(const SegmentWriter&) = delete;
  SegmentWriter& operator=(const SegmentWriter&) = delete;

  // Starts writing after recovery: creates the first segment of a new WAL, or continues the
  // last recovered one (cutting off a torn tail first).
  Status Start(const RecoveryResult& recovery);

  // Writes the chunks in order, rotating to a new segment whenever the next chunk does not
  // fit. Not durable until Sync().
  Status Write(const std::vector<WalChunk>& chunks);
  // fdatasync of the current segment: makes everything written so far durable.
  Status Sync();

  // Deletes the oldest closed segments while all their entries are <= `index`. Never deletes
  // the current segment. Thread-safe against a concurrent Write.
  Status ReleaseBefore(uint64_t index, uint64_t* segments_released);

  // Counters, readable from any thread.
  uint64_t syncs() const { return syncs_.load(std::memory_order_relaxed); }
  uint64_t bytes_written() const { return bytes_written_.load(std::memory_order_relaxed); }
  uint64_t segments_created() const { return segments_created_.load(std::memory_order_relaxed); }
  size_t segment_count() const;

 private:
  struct Current {
    int fd = -1;
    SegmentInfo info;
    uint64_t offset = 0;       // where the next record goes
    uint64_t records_end = 0;  // end of header and copied state: a segment holding nothing
                               // more takes any chunk, however large
  };

  Status CreateSegment(const SegmentHeader& header);
  Status Resume(const SegmentInfo& last, uint64_t end_offset, bool repair);
  Status Rotate();
  Status WriteIov(const std::vector<iovec>& iov, uint64_t offset);
  Status FsyncDir();
  Status IoError(const std::string& what, const std::string& path, int err) const;
  void CloseCurrent();

  const std::string dir_;
  const SegmentWriterOptions options_;
  WalIo& io_;
  int dir_fd_ = -1;
  Current current_;
  // The log state as of the last chunk written, copied into each new segment.
  uint64_t last_index_ = 0;
  std::optional<consensuspb::HardState> hard_state_;
  std::optional<consensuspb::SnapshotMetadata> snapshot_;

  mutable std::mutex closed_mu_;  // guards closed_ (Write rotates, ReleaseBefore deletes)
  std::vector<SegmentInfo> closed_;

  std::atomic<uint64_t> syncs_{0};
  std::atomic<uint64_t> bytes_written_{0};
  std::atomic<uint64_t> segments_created_{0};
};

}  // namespace synod::storage
