// Where a state snapshot of the key-value store goes to and comes from.
//
// A snapshot is a byte stream (format in docs/kv.md): a header, every backend key-value pair
// in key order, and a trailer carrying the count and a CRC32C of everything before it. The
// store writes it through a SnapshotSink and reads it back through a SnapshotSource, so the
// bytes can live in a file, in memory (tests, the simulator) or be streamed by the transport.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

#include "base/status.h"

namespace synod::kv {

class SnapshotSink {
 public:
  virtual ~SnapshotSink() = default;
  virtual Status Write(std::string_view bytes) = 0;
  // Called once after the last Write: make the bytes durable (a file fsyncs here).
  virtual Status Finish() = 0;
};

// Installing reads the stream twice: once to verify the checksum before anything is
// changed, once to load it. Hence Rewind.
class SnapshotSource {
 public:
  virtual ~SnapshotSource() = default;
  // Appends up to `max_bytes` to *out; appends nothing at the end of the stream.
  virtual Status Read(size_t max_bytes, std::string* out) = 0;
  virtual Status Rewind() = 0;
};

class StringSnapshotSink final : public SnapshotSink {
 public:
  Status Write(std::string_view bytes) override {
    data_.append(bytes);
    return Status::Ok();
  }
  Status Finish() override { return Status::Ok(); }
  const std::string& data() const { return data_; }
  std::string& mutable_data() { return data_; }

 private:
  std::string data_;
};

class StringSnapshotSource final : public SnapshotSource {
 public:
  explicit StringSnapshotSource(std::string data) : data_(std::move(data)) {}
  Status Read(size_t max_bytes, std::string* out) override;
  Status Rewind() override {
    pos_ = 0;
    return Status::Ok();
  }

 private:
  std::string data_;
  size_t pos_ = 0;
};

// Writes a snapshot file; Finish fsyncs it. The file is created (or truncated) on the first
// Write.
class FileSnapshotSink final : public SnapshotSink {
 public:
  explicit FileSnapshotSink(std::string path) : path_(std::move(path)) {}
  ~FileSnapshotSink() override;
  Status Write(std::string_view bytes) override;
  Status Finish() override;

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

class FileSnapshotSource final : public SnapshotSource {
 public:
  explicit FileSnapshotSource(std::string path) : path_(std::move(path)) {}
  ~FileSnapshotSource() override;
  Status Read(size_t max_bytes, std::string* out) override;
  Status Rewind() override;

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace synod::kv
