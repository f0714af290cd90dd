// Snapshot files: a member's snapshots on disk, written as a stream and read in place.
//
// A snapshot of a large store must not pass through memory whole: the state machine
// streams its state into a SnapshotFileWriter, and the engine then holds the file itself
// (FileSnapshotData) and reads from it only the chunks it sends to a member far behind.
//
// <data dir>/snap/<index as 16 hex digits>.snap:
//
//   [the state: data_bytes bytes]
//   [trailer: a serialized pb::SnapshotFileTrailer (metadata, data_bytes, data CRC-32C)]
//   [u32 trailer length][u32 CRC-32C of the trailer][8 bytes "synodsn1"]     (little-endian)
//
// A snapshot whose state the state machine holds durably itself (StateMachine::Persist)
// is a file with no state and the trailer's state_in_state_machine set; its data, in
// memory, is a DeferredSnapshotData.
//
// A file is written under a temporary name, fsynced, renamed, and its directory fsynced:
// a crash leaves the old files or the new one, never half of it. The newest two are kept.
// Loading checks the trailer's CRC and the state's CRC (read as a stream) before anything
// is trusted. Files of the earlier format ([u32 CRC-32C][serialized pb::Snapshot], the state
// inside) are still read.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/status.h"
#include "consensus/api/snapshot.h"

namespace synod::runtime {

namespace pb = ::synod::consensuspb;

// Where a state machine writes its snapshot.
class SnapshotWriter {
 public:
  virtual ~SnapshotWriter() = default;
  virtual Status Write(std::string_view bytes) = 0;
  // Forgets everything written so far (a state machine that must take its copy again).
  virtual Status Restart() = 0;
};

// The state part of a snapshot file, read in place through its own descriptor (which keeps
// the bytes readable even after the file is replaced or removed).
class FileSnapshotData final : public consensus::SnapshotData {
 public:
  FileSnapshotData(int fd, uint64_t size, std::string path);
  ~FileSnapshotData() override;
  FileSnapshotData(const FileSnapshotData&) = delete;
  FileSnapshotData& operator=(const FileSnapshotData&) = delete;
  uint64_t size() const override { return size_; }
  Status ReadAt(uint64_t offset, uint64_t len, std::string* out) const override;

 private:
  const int fd_;
  const uint64_t size_;
  const std::string path_;  // for messages
};

// A snapshot whose state the state machine holds (consensus::DeferredSnapshotData): the node
// makes its bytes, written to a file, when a member needs them.
using consensus::DeferredSnapshotData;

// Streams one snapshot into <dir>: a temporary file until Finish names it by its index.
class SnapshotFileWriter final : public SnapshotWriter {
 public:
  static Result<std::unique_ptr<SnapshotFileWriter>> Create(const std::string& dir);
  ~SnapshotFileWriter() override;  // a writer never finished removes its temporary file
  SnapshotFileWriter(const SnapshotFileWriter&) = delete;
  SnapshotFileWriter& operator=(const SnapshotFileWriter&) = delete;

  Status Write(std::string_view bytes) override;
  Status Restart() override;
  // The state written so far, readable in place (shared with the engine before Finish).
  Result<std::shared_ptr<const consensus::SnapshotData>> Data();
  // Appends the trailer for `metadata`, makes the file durable under its final name and
  // removes all but the newest two snapshot files.
  Status Finish(const pb::SnapshotMetadata& metadata);
  // The same for a snapshot whose state the state machine holds: nothing was written, and
  // the trailer says so.
  Status FinishWithStateInStateMachine(const pb::SnapshotMetadata& metadata);

 private:
  SnapshotFileWriter(std::string dir, std::string tmp_path, int fd);
  Status FinishFile(const pb::SnapshotFileTrailer& trailer);
  Status Flush();
  // Appends `bytes` to the file, and paces its writeback (below).
  Status Append(std::string_view bytes);
  // Sends the file's pages to the disk as it grows, one step (kBufferBytes) at a time,
  // waiting for the step before: no more than about two steps are ever dirty or in flight.
  // Without it, a snapshot of a large store left its whole file dirty until the final
  // fsync (1-55 ms of writeback at once, measured), for the WAL's fdatasyncs to queue
  // behind.
  void PaceWriteback();

  const std::string dir_;
  const std::string tmp_path_;
  int fd_;
  std::string buffer_;           // bytes not yet written to the file
  uint64_t file_bytes_ = 0;      // written to the file
  uint64_t writeback_from_ = 0;  // the start of the step whose writeback was started last
  uint64_t writeback_to_ = 0;    // its end: writeback was started for everything before
  uint64_t data_bytes_ = 0;
  uint32_t data_crc_ = 0;
  bool finished_ = false;
};

// Writes `snapshot` (its metadata and its data, wherever the data lives) as a snapshot file
// in `dir`. A DeferredSnapshotData is written as such: a file without state. The data of a
// snapshot received into a file (NewSnapshotFileReceiver) is not copied: that file gets its
// trailer and its name (once: a received snapshot is persisted once).
Status WriteSnapshotFile(const std::string& dir, const consensus::Snapshot& snapshot);

// Where a member streams a snapshot it receives from the leader (an engine's
// SnapshotReceiver): a temporary file in `dir`, written as each chunk arrives, so that a
// member never holds a received snapshot in memory. Its data reads that file in place; an
// abandoned transfer removes it.
std::unique_ptr<consensus::SnapshotReceiver> NewSnapshotFileReceiver(std::string dir);

// The newest snapshot file in `dir`, checked (an empty Snapshot at index 0 if there is
// none). Its data is read in place (FileSnapshotData); a file of the earlier format is
// read into memory; a file without state gives a DeferredSnapshotData calling
// `state_wanted`. kCorruption names the file that does not read back.
Result<consensus::Snapshot> LoadLatestSnapshot(const std::string& dir,
                                               std::function<void()> state_wanted = nullptr);

// Removes temporary files left by a crash while a snapshot was being written.
void RemoveUnfinishedSnapshotFiles(const std::string& dir);

}  // namespace synod::runtime
