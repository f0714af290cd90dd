#include "runtime/snapshot_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "storage/crc32c.h"
#include "storage/durable_file.h"

namespace synod::runtime {

namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'s', 'y', 'n', 'o', 'd', 's', 'n', '1'};
constexpr size_t kTailBytes = 4 + 4 + sizeof kMagic;  // trailer length, its CRC, magic
constexpr size_t kBufferBytes = 1 << 20;              // writes and reads go by this much
constexpr const char* kTmpPrefix = "writing-";

Status IoError(const std::string& what, const std::string& path) {
  return Status(Code::kIoError, what + " " + path + ": " + std::strerror(errno));
}

Status Corrupt(const std::string& path, const std::string& why) {
  return Status(Code::kCorruption, "snapshot file " + path + " is corrupt (" + why + ")");
}

std::string SnapshotPath(const std::string& dir, uint64_t index) {
  char name[32];
  std::snprintf(name, sizeof name, "%016llx.snap", static_cast<unsigned long long>(index));
  return dir + "/" + name;
}

Status WriteAll(int fd, std::string_view bytes, const std::string& path) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return IoError("write", path);
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

Status ReadAllAt(int fd, uint64_t offset, char* out, size_t len, const std::string& path) {
  while (len > 0) {
    const ssize_t n = ::pread(fd, out, len, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return IoError("read", path);
    if (n == 0) return Corrupt(path, "shorter than it says");
    out += n;
    offset += static_cast<uint64_t>(n);
    len -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

std::vector<std::string> SnapshotFiles(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".snap") names.push_back(e.path().string());
  }
  std::sort(names.begin(), names.end());  // fixed-width hex: by index
  return names;
}

// A file of the earlier format: [u32 CRC-32C of the rest][serialized pb::Snapshot].
Result<consensus::Snapshot> LoadEarlierFormat(int fd, uint64_t size, const std::string& path) {
  std::string bytes(size, '\0');
  if (Status s = ReadAllAt(fd, 0, bytes.data(), bytes.size(), path); !s.ok()) return s;
  uint32_t crc = 0;
  if (bytes.size() >= 4) std::memcpy(&crc, bytes.data(), 4);
  pb::Snapshot old;
  if (bytes.size() < 4 || storage::Crc32c(0, bytes.data() + 4, bytes.size() - 4) != crc ||
      !old.ParseFromArray(bytes.data() + 4, static_cast<int>(bytes.size() - 4))) {
    return Corrupt(path, "checksum mismatch");
  }
  return consensus::Snapshot::InMemory(old.metadata(), std::move(*old.mutable_data()));
}

// One file: the new format if it ends with the magic, else the earlier one.
Result<consensus::Snapshot> LoadFile(const std::string& path,
                                     const std::function<void()>& state_wanted) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return IoError("open", path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const Status s = IoError("stat", path);
    ::close(fd);
    return s;
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  char tail[kTailBytes];
  if (size < kTailBytes || !ReadAllAt(fd, size - kTailBytes, tail, kTailBytes, path).ok() ||
      std::memcmp(tail + 8, kMagic, sizeof kMagic) != 0) {
    auto old = LoadEarlierFormat(fd, size, path);
    ::close(fd);
    return old;
  }
  auto fail = [&](const Status& s) -> Result<consensus::Snapshot> {
    ::close(fd);
    return s;
  };
  uint32_t trailer_len = 0, trailer_crc = 0;
  std::memcpy(&trailer_len, tail, 4);
  std::memcpy(&trailer_crc, tail + 4, 4);
  if (trailer_len > size - kTailBytes) return fail(Corrupt(path, "trailer length"));
  std::string trailer_bytes(trailer_len, '\0');
  if (Status s =
          ReadAllAt(fd, size - kTailBytes - trailer_len, trailer_bytes.data(), trailer_len, path);
      !s.ok())
    return fail(s);
  pb::SnapshotFileTrailer trailer;
  if (storage::Crc32c(0, trailer_bytes.data(), trailer_bytes.size()) != trailer_crc ||
      !trailer.ParseFromString(trailer_bytes)) {
    return fail(Corrupt(path, "trailer checksum mismatch"));
  }
  if (trailer.data_bytes() != size - kTailBytes - trailer_len) {
    return fail(Corrupt(path, "the state is not the size the trailer gives"));
  }
  // The state is checked as a stream: a snapshot is never read into memory whole.
  std::string buf(kBufferBytes, '\0');
  uint32_t crc = 0;
  for (uint64_t at = 0; at < trailer.data_bytes();) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), trailer.data_bytes() - at));
    if (Status s = ReadAllAt(fd, at, buf.data(), n, path); !s.ok()) return fail(s);
    crc = storage::Crc32c(crc, buf.data(), n);
    at += n;
  }
  if (crc != trailer.data_crc32c()) return fail(Corrupt(path, "state checksum mismatch"));
  consensus::Snapshot snapshot;
  snapshot.metadata = trailer.metadata();
  if (trailer.state_in_state_machine()) {
    if (trailer.data_bytes() != 0) return fail(Corrupt(path, "state where none belongs"));
    ::close(fd);
    snapshot.data = std::make_shared<const DeferredSnapshotData>(state_wanted);
    return snapshot;
  }
  snapshot.data = std::make_shared<const FileSnapshotData>(fd, trailer.data_bytes(), path);
  return snapshot;
}

}  // namespace

// ---------------------------------------------------------------------------------

FileSnapshotData::FileSnapshotData(int fd, uint64_t size, std::string path)
    : fd_(fd), size_(size), path_(std::move(path)) {}

FileSnapshotData::~FileSnapshotData() { ::close(fd_); }

Status FileSnapshotData::ReadAt(uint64_t offset, uint64_t len, std::string* out) const {
  const size_t old = out->size();
  out->resize(old + len);
  Status s = ReadAllAt(fd_, offset, out->data() + old, len, path_);
  if (!s.ok()) out->resize(old);
  return s;
}

// ---------------------------------------------------------------------------------

SnapshotFileWriter::SnapshotFileWriter(std::string dir, std::string tmp_path, int fd)
    : dir_(std::move(dir)), tmp_path_(std::move(tmp_path)), fd_(fd) {}

Result<std::unique_ptr<SnapshotFileWriter>> SnapshotFileWriter::Create(const std::string& dir) {
  std::string path = dir + "/" + kTmpPrefix + "XXXXXX";
  const int fd = ::mkostemp(path.data(), O_CLOEXEC);
  if (fd < 0) return IoError("create a snapshot file in", dir);
  return std::unique_ptr<SnapshotFileWriter>(new SnapshotFileWriter(dir, std::move(path), fd));
}

SnapshotFileWriter::~SnapshotFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!finished_) ::unlink(tmp_path_.c_str());
}

Status SnapshotFileWriter::Write(std::string_view bytes) {
  data_crc_ = storage::Crc32c(data_crc_, bytes.data(), bytes.size());
  data_bytes_ += bytes.size();
  if (buffer_.size() + bytes.size() < kBufferBytes) {
    buffer_.append(bytes);
    return Status::Ok();
  }
  if (Status s = Flush(); !s.ok()) return s;
  return Append(bytes);
}

Status SnapshotFileWriter::Flush() {
  Status s = Append(buffer_);
  buffer_.clear();
  return s;
}

Status SnapshotFileWriter::Append(std::string_view bytes) {
  if (Status s = WriteAll(fd_, bytes, tmp_path_); !s.ok()) return s;
  file_bytes_ += bytes.size();
  PaceWriteback();
  return Status::Ok();
}

void SnapshotFileWriter::PaceWriteback() {
  if (file_bytes_ - writeback_to_ < kBufferBytes) return;
  // Advisory: an error here shows again at the fsync that makes the file durable.
  if (writeback_to_ > writeback_from_) {
    (void)::sync_file_range(
        fd_, static_cast<off_t>(writeback_from_),
        static_cast<off_t>(writeback_to_ - writeback_from_),
        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
  }
  (void)::sync_file_range(fd_, static_cast<off_t>(writeback_to_),
                          static_cast<off_t>(file_bytes_ - writeback_to_), SYNC_FILE_RANGE_WRITE);
  writeback_from_ = writeback_to_;
  writeback_to_ = file_bytes_;
}

Status SnapshotFileWriter::Restart() {
  buffer_.clear();
  file_bytes_ = writeback_from_ = writeback_to_ = 0;
  data_bytes_ = 0;
  data_crc_ = 0;
  if (::ftruncate(fd_, 0) != 0 || ::lseek(fd_, 0, SEEK_SET) != 0) {
    return IoError("truncate", tmp_path_);
  }
  return Status::Ok();
}

Result<std::shared_ptr<const consensus::SnapshotData>> SnapshotFileWriter::Data() {
  if (Status s = Flush(); !s.ok()) return s;
  const int fd = ::open(tmp_path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return IoError("open", tmp_path_);
  return std::shared_ptr<const consensus::SnapshotData>(
      std::make_shared<const FileSnapshotData>(fd, data_bytes_, tmp_path_));
}

Status SnapshotFileWriter::Finish(const pb::SnapshotMetadata& metadata) {
  pb::SnapshotFileTrailer trailer;
  *trailer.mutable_metadata() = metadata;
  trailer.set_data_bytes(data_bytes_);
  trailer.set_data_crc32c(data_crc_);
  return FinishFile(trailer);
}

Status SnapshotFileWriter::FinishWithStateInStateMachine(const pb::SnapshotMetadata& metadata) {
  if (data_bytes_ != 0) {
    return Status(Code::kInvalidArgument, "a snapshot file with state cannot leave it out");
  }
  pb::SnapshotFileTrailer trailer;
  *trailer.mutable_metadata() = metadata;
  trailer.set_state_in_state_machine(true);
  return FinishFile(trailer);
}

Status SnapshotFileWriter::FinishFile(const pb::SnapshotFileTrailer& trailer) {
  const pb::SnapshotMetadata& metadata = trailer.metadata();
  const std::string trailer_bytes = trailer.SerializeAsString();
  const auto trailer_len = static_cast<uint32_t>(trailer_bytes.size());
  const uint32_t trailer_crc = storage::Crc32c(0, trailer_bytes.data(), trailer_bytes.size());
  char tail[kTailBytes];
  std::memcpy(tail, &trailer_len, 4);
  std::memcpy(tail + 4, &trailer_crc, 4);
  std::memcpy(tail + 8, kMagic, sizeof kMagic);
  buffer_.append(trailer_bytes);
  buffer_.append(tail, kTailBytes);
  if (Status s = Flush(); !s.ok()) return s;
  if (::fsync(fd_) != 0) return IoError("fsync", tmp_path_);
  ::close(fd_);
  fd_ = -1;
  const std::string path = SnapshotPath(dir_, metadata.index());
  if (::rename(tmp_path_.c_str(), path.c_str()) != 0) return IoError("rename", tmp_path_);
  finished_ = true;
  if (Status s = storage::SyncDirectory(dir_); !s.ok()) return s;
  // Keep the newest two: the one just written, and the one before it in case this one is
  // damaged later.
  const std::vector<std::string> names = SnapshotFiles(dir_);
  for (size_t i = 0; i + 2 < names.size(); ++i) {
    std::error_code ec;
    fs::remove(names[i], ec);
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------

namespace {

// The state of a snapshot received into a file: read in place, until the file is finished.
class ReceivedSnapshotData final : public consensus::SnapshotData {
 public:
  ReceivedSnapshotData(std::shared_ptr<SnapshotFileWriter> writer,
                       std::shared_ptr<const consensus::SnapshotData> file)
      : writer_(std::move(writer)), file_(std::move(file)) {}
  uint64_t size() const override { return file_->size(); }
  Status ReadAt(uint64_t offset, uint64_t len, std::string* out) const override {
    return file_->ReadAt(offset, len, out);
  }
  SnapshotFileWriter& writer() const { return *writer_; }

 private:
  const std::shared_ptr<SnapshotFileWriter> writer_;
  const std::shared_ptr<const consensus::SnapshotData> file_;
};

// A transfer that fails (a full disk) is abandoned and the leader sends the snapshot again
// at its heartbeats: said on stderr, at most once every ten seconds.
void WarnReceiveFailed(const Status& s) {
  static std::atomic<int64_t> last_warned{-100};
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  int64_t last = last_warned.load();
  if (now - last < 10 || !last_warned.compare_exchange_strong(last, now)) return;
  std::fprintf(stderr,
               "synod: cannot write the snapshot being received from the leader (%s); the "
               "transfer starts over\n",
               s.ToString().c_str());
}

class SnapshotFileReceiver final : public consensus::SnapshotReceiver {
 public:
  explicit SnapshotFileReceiver(std::string dir) : dir_(std::move(dir)) {}
  uint64_t size() const override { return size_; }
  Status Append(std::string_view chunk) override {
    Status s = Open();
    if (s.ok()) s = writer_->Write(chunk);
    if (!s.ok()) {
      WarnReceiveFailed(s);
      return s;
    }
    size_ += chunk.size();
    return Status::Ok();
  }
  Result<std::shared_ptr<const consensus::SnapshotData>> Finish() override {
    if (Status s = Open(); !s.ok()) {
      WarnReceiveFailed(s);
      return s;
    }
    auto file = writer_->Data();
    if (!file.ok()) {
      WarnReceiveFailed(file.status());
      return file.status();
    }
    return std::shared_ptr<const consensus::SnapshotData>(
        std::make_shared<const ReceivedSnapshotData>(std::move(writer_), std::move(file.value())));
  }

 private:
  Status Open() {
    if (writer_) return Status::Ok();
    auto writer = SnapshotFileWriter::Create(dir_);
    if (!writer.ok()) return writer.status();
    writer_ = std::move(writer.value());
    return Status::Ok();
  }

  const std::string dir_;
  std::shared_ptr<SnapshotFileWriter> writer_;
  uint64_t size_ = 0;
};

}  // namespace

std::unique_ptr<consensus::SnapshotReceiver> NewSnapshotFileReceiver(std::string dir) {
  return std::make_unique<SnapshotFileReceiver>(std::move(dir));
}

Status WriteSnapshotFile(const std::string& dir, const consensus::Snapshot& snapshot) {
  if (const auto* received = dynamic_cast<const ReceivedSnapshotData*>(snapshot.data.get())) {
    return received->writer().Finish(snapshot.metadata);
  }
  auto writer = SnapshotFileWriter::Create(dir);
  if (!writer.ok()) return writer.status();
  const consensus::SnapshotData& data = *snapshot.data;
  if (DeferredSnapshotData::Is(data))
    return writer.value()->FinishWithStateInStateMachine(snapshot.metadata);
  std::string chunk;
  for (uint64_t at = 0; at < data.size();) {
    const uint64_t n = std::min<uint64_t>(kBufferBytes, data.size() - at);
    chunk.clear();
    if (Status s = data.ReadAt(at, n, &chunk); !s.ok()) return s;
    if (Status s = writer.value()->Write(chunk); !s.ok()) return s;
    at += n;
  }
  return writer.value()->Finish(snapshot.metadata);
}

Result<consensus::Snapshot> LoadLatestSnapshot(const std::string& dir,
                                               std::function<void()> state_wanted) {
  const std::vector<std::string> names = SnapshotFiles(dir);
  if (names.empty()) return consensus::Snapshot{};
  return LoadFile(names.back(), state_wanted);
}

void RemoveUnfinishedSnapshotFiles(const std::string& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const bool unfinished = e.path().filename().string().rfind(kTmpPrefix, 0) == 0 ||
                            e.path().extension() == ".tmp";  // the earlier format's
    if (unfinished) fs::remove(e.path(), ec);
  }
}

}  // namespace synod::runtime
