#include "kv/snapshot.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace synod::kv {
namespace {
Status IoError(const std::string& what, const std::string& path) {
  return Status(Code::kIoError, what + " " + path + ": " + std::strerror(errno));
}
}  // namespace

Status StringSnapshotSource::Read(size_t max_bytes, std::string* out) {
  const size_t n = std::min(max_bytes, data_.size() - pos_);
  out->append(data_, pos_, n);
  pos_ += n;
  return Status::Ok();
}

FileSnapshotSink::~FileSnapshotSink() {
  if (file_ != nullptr) std::fclose(file_);
}

Status FileSnapshotSink::Write(std::string_view bytes) {
  if (file_ == nullptr) {
    file_ = std::fopen(path_.c_str(), "wb");
    if (file_ == nullptr) return IoError("cannot create snapshot file", path_);
  }
  if (std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size()) {
    return IoError("cannot write snapshot file", path_);
  }
  return Status::Ok();
}

Status FileSnapshotSink::Finish() {
  if (file_ == nullptr) {
    Status s = Write({});
    if (!s.ok()) return s;
  }
  if (std::fflush(file_) != 0 || ::fsync(fileno(file_)) != 0) {
    return IoError("cannot sync snapshot file", path_);
  }
  if (std::fclose(file_) != 0) {
    file_ = nullptr;
    return IoError("cannot close snapshot file", path_);
  }
  file_ = nullptr;
  return Status::Ok();
}

FileSnapshotSource::~FileSnapshotSource() {
  if (file_ != nullptr) std::fclose(file_);
}

Status FileSnapshotSource::Read(size_t max_bytes, std::string* out) {
  if (file_ == nullptr) {
    file_ = std::fopen(path_.c_str(), "rb");
    if (file_ == nullptr) return IoError("cannot open snapshot file", path_);
  }
  const size_t old = out->size();
  out->resize(old + max_bytes);
  const size_t n = std::fread(out->data() + old, 1, max_bytes, file_);
  out->resize(old + n);
  if (n < max_bytes && std::ferror(file_)) return IoError("cannot read snapshot file", path_);
  return Status::Ok();
}

Status FileSnapshotSource::Rewind() {
  if (file_ != nullptr) {
    std::fclose(file_);
    file_ = nullptr;
  }
  return Status::Ok();
}

}  // namespace synod::kv
