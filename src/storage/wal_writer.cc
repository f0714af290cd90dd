#include "storage/wal_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "base/assert.h"

namespace synod::storage {

SegmentWriter::SegmentWriter(std::string dir, SegmentWriterOptions options, WalIo& io)
    : dir_(std::move(dir)), options_(options), io_(io) {
  SYNOD_ASSERT(options_.segment_bytes > 0, "segment_bytes must be positive");
}

SegmentWriter::~SegmentWriter() {
  CloseCurrent();
  if (dir_fd_ >= 0) ::close(dir_fd_);
}

void SegmentWriter::CloseCurrent() {
  if (current_.fd >= 0) ::close(current_.fd);
  current_.fd = -1;
}

Status SegmentWriter::IoError(const std::string& what, const std::string& path, int err) const {
  return Status(Code::kIoError, IoErrorMessage(what, path, err));
}

Status SegmentWriter::Start(const RecoveryResult& recovery) {
  dir_fd_ = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd_ < 0) return IoError("open directory", dir_, errno);
  last_index_ = recovery.bounds.last_index();
  hard_state_ = recovery.recovered.hard_state;
  snapshot_ = recovery.recovered.snapshot;
  if (recovery.segments.empty()) {
    return CreateSegment(SegmentHeader{.seq = 1, .first_index = last_index_ + 1});
  }
  {
    std::lock_guard lock(closed_mu_);
    closed_.assign(recovery.segments.begin(), recovery.segments.end() - 1);
  }
  return Resume(recovery.segments.back(), recovery.last_segment_end, recovery.last_segment_repair);
}

Status SegmentWriter::Resume(const SegmentInfo& last, uint64_t end_offset, bool repair) {
  const int fd = ::open(last.path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return IoError("open", last.path, errno);
  current_ = Current{.fd = fd,
                     .info = last,
                     .offset = end_offset,
                     .records_end = kRecordHeaderBytes + kSegmentHeaderPayloadBytes};
  if (!repair) return Status::Ok();
  // Cut the torn tail off and zero-fill again, so that no stale bytes ever sit after records
  // we write next. A crash in between leaves a shorter file that recovers the same way.
  if (int err = io_.Truncate(fd, static_cast<off_t>(end_offset)); err != 0) {
    return IoError("truncate torn tail of", last.path, err);
  }
  if (options_.preallocate && end_offset < options_.segment_bytes) {
    if (int err = io_.Allocate(fd, static_cast<off_t>(options_.segment_bytes)); err != 0) {
      return IoError("preallocate", last.path, err);
    }
  }
  if (int err = io_.Fsync(fd); err != 0) return IoError("fsync", last.path, err);
  syncs_.fetch_add(1, std::memory_order_relaxed);
  return Status::Ok();
}

Status SegmentWriter::CreateSegment(const SegmentHeader& header) {
  const std::string path = dir_ + "/" + SegmentFileName(header);
  const std::string tmp = path + std::string(kTempSuffix);
  const int fd = ::open(tmp.c_str(), O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0644);
  if (fd < 0) return IoError("create", tmp, errno);
  auto fail = [&](const std::string& what, int err) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return IoError(what, tmp, err);
  };
  if (options_.preallocate) {
    if (int err = io_.Allocate(fd, static_cast<off_t>(options_.segment_bytes)); err != 0) {
      return fail("preallocate", err);
    }
  }
  std::string bytes;
  AppendRecord(RecordType::kSegmentHeader, EncodeSegmentHeader(header), &bytes);
  if (hard_state_) AppendRecord(RecordType::kHardState, hard_state_->SerializeAsString(), &bytes);
  if (snapshot_) AppendRecord(RecordType::kSnapshot, snapshot_->SerializeAsString(), &bytes);
  const iovec iov{bytes.data(), bytes.size()};
  size_t written = 0;
  if (int err = io_.PwriteAll(fd, &iov, 1, 0, &written); err != 0) return fail("write", err);
  bytes_written_.fetch_add(written, std::memory_order_relaxed);
  if (int err = io_.Fdatasync(fd); err != 0) return fail("fdatasync", err);
  syncs_.fetch_add(1, std::memory_order_relaxed);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail("rename", errno);
  if (Status s = FsyncDir(); !s.ok()) {
    ::close(fd);
    return s;
  }
  current_ = Current{.fd = fd,
                     .info = SegmentInfo{.path = path, .header = header},
                     .offset = bytes.size(),
                     .records_end = bytes.size()};
  segments_created_.fetch_add(1, std::memory_order_relaxed);
  return Status::Ok();
}

Status SegmentWriter::FsyncDir() {
  if (int err = io_.Fsync(dir_fd_); err != 0) return IoError("fsync directory", dir_, err);
  return Status::Ok();
}

Status SegmentWriter::Rotate() {
  // Cut the preallocated zeros so the closed segment ends exactly at its last record, and make
  // it durable before the next segment exists: only the last segment may ever be torn.
  if (int err = io_.Truncate(current_.fd, static_cast<off_t>(current_.offset)); err != 0) {
    return IoError("truncate", current_.info.path, err);
  }
  if (int err = io_.Fsync(current_.fd); err != 0) return IoError("fsync", current_.info.path, err);
  syncs_.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lock(closed_mu_);
    closed_.push_back(current_.info);
  }
  const SegmentHeader next{.seq = current_.info.header.seq + 1, .first_index = last_index_ + 1};
  CloseCurrent();
  return CreateSegment(next);
}

Status SegmentWriter::WriteIov(const std::vector<iovec>& iov, uint64_t offset) {
  size_t written = 0;
  const int err = io_.PwriteAll(current_.fd, iov.data(), static_cast<int>(iov.size()),
                                static_cast<off_t>(offset), &written);
  bytes_written_.fetch_add(written, std::memory_order_relaxed);
  if (err != 0) {
    return IoError("write at byte offset " + std::to_string(offset + written) + " of",
                   current_.info.path, err);
  }
  return Status::Ok();
}

Status SegmentWriter::Write(const std::vector<WalChunk>& chunks) {
  SYNOD_ASSERT(current_.fd >= 0, "Start() succeeded and no earlier write failed");
  std::vector<iovec> iov;
  uint64_t start = current_.offset;
  for (const WalChunk& chunk : chunks) {
    const bool has_records = current_.offset > current_.records_end;
    if (has_records && current_.offset + chunk.bytes.size() > options_.segment_bytes) {
      if (!iov.empty()) {
        if (Status s = WriteIov(iov, start); !s.ok()) return s;
        iov.clear();
      }
      if (Status s = Rotate(); !s.ok()) return s;
      start = current_.offset;
    }
    iov.push_back(iovec{const_cast<char*>(chunk.bytes.data()), chunk.bytes.size()});
    current_.offset += chunk.bytes.size();
    current_.info.max_entry_index = std::max(current_.info.max_entry_index, chunk.max_entry_index);
    last_index_ = chunk.last_index_after;
    if (chunk.hard_state) hard_state_ = chunk.hard_state;
    if (chunk.snapshot) snapshot_ = chunk.snapshot;
  }
  if (iov.empty()) return Status::Ok();
  return WriteIov(iov, start);
}

Status SegmentWriter::Sync() {
  if (int err = io_.Fdatasync(current_.fd); err != 0) {
    return IoError("fdatasync", current_.info.path, err);
  }
  syncs_.fetch_add(1, std::memory_order_relaxed);
  return Status::Ok();
}

Status SegmentWriter::ReleaseBefore(uint64_t index, uint64_t* segments_released) {
  *segments_released = 0;
  std::lock_guard lock(closed_mu_);
  while (!closed_.empty() && closed_.front().max_entry_index <= index) {
    const std::string& path = closed_.front().path;
    // ENOENT: deleted by an earlier call whose directory fsync failed.
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return IoError("unlink", path, errno);
    // One directory fsync per deletion: a crash must never leave a gap in the sequence.
    if (Status s = FsyncDir(); !s.ok()) return s;
    closed_.erase(closed_.begin());
    ++*segments_released;
  }
  return Status::Ok();
}

size_t SegmentWriter::segment_count() const {
  std::lock_guard lock(closed_mu_);
  return closed_.size() + 1;
}

}  // namespace synod::storage
