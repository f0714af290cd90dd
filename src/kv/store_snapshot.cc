// State snapshots: a checksummed dump of every backend entry at one backend snapshot.
//
//   header   "SYNODKVS" | u64 format | u64 applied index | u64 revision     (big-endian)
//   entries  'R' | varint key length | key | varint value length | value     (key order)
//   trailer  'E' | u64 entry count | u32 CRC32C of every byte before the CRC
#include <algorithm>

#include "base/assert.h"
#include "kv/store_internal.h"
#include "storage/crc32c.h"

namespace synod::kv {
namespace {

constexpr std::string_view kMagic = "SYNODKVS";
constexpr uint64_t kSnapshotFormat = 1;
constexpr size_t kChunkBytes = 1 << 20;
constexpr uint64_t kEntryBytesMax = 1ull << 30;  // a larger length can only be damage
constexpr uint64_t kInstallBatchBytes = 4 << 20;

Status Corrupt(const std::string& why) { return Status(Code::kCorruption, "kv snapshot: " + why); }

// Buffers output into chunks and checksums it.
class SnapshotWriter {
 public:
  explicit SnapshotWriter(SnapshotSink& sink) : sink_(sink) {}
  Status Append(std::string_view bytes, bool checksummed = true) {
    if (checksummed) crc_ = storage::Crc32c(crc_, bytes.data(), bytes.size());
    buffer_.append(bytes);
    bytes_ += bytes.size();
    if (buffer_.size() >= kChunkBytes) return Flush();
    return Status::Ok();
  }
  Status Flush() {
    if (buffer_.empty()) return Status::Ok();
    Status s = sink_.Write(buffer_);
    buffer_.clear();
    return s;
  }
  uint32_t crc() const { return crc_; }
  uint64_t bytes() const { return bytes_; }

 private:
  SnapshotSink& sink_;
  std::string buffer_;
  uint32_t crc_ = 0;
  uint64_t bytes_ = 0;
};

// Reads a snapshot stream, checksumming what it consumes.
class SnapshotReader {
 public:
  explicit SnapshotReader(SnapshotSource& source) : source_(source) {}

  // The next `n` bytes, valid until the next call.
  Status Take(size_t n, std::string_view* out, bool checksummed = true) {
    while (buffer_.size() - pos_ < n) {
      buffer_.erase(0, pos_);
      pos_ = 0;
      const size_t before = buffer_.size();
      Status s = source_.Read(std::max(kChunkBytes, n), &buffer_);
      if (!s.ok()) return s;
      if (buffer_.size() == before) return Corrupt("truncated");
    }
    *out = std::string_view(buffer_).substr(pos_, n);
    pos_ += n;
    if (checksummed) crc_ = storage::Crc32c(crc_, out->data(), out->size());
    bytes_ += n;
    return Status::Ok();
  }
  Status U64(uint64_t* v) {
    std::string_view b;
    Status s = Take(8, &b);
    if (s.ok()) *v = keys::GetBig64(b);
    return s;
  }
  Status Varint(uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift <= 63; shift += 7) {
      std::string_view b;
      Status s = Take(1, &b);
      if (!s.ok()) return s;
      const uint8_t byte = static_cast<uint8_t>(b[0]);
      *v |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return Status::Ok();
    }
    return Corrupt("bad varint");
  }
  Status AtEnd() {
    if (pos_ < buffer_.size()) return Corrupt("bytes after the trailer");
    std::string more;
    Status s = source_.Read(1, &more);
    if (!s.ok()) return s;
    if (!more.empty()) return Corrupt("bytes after the trailer");
    return Status::Ok();
  }
  uint32_t crc() const { return crc_; }
  uint64_t bytes() const { return bytes_; }

 private:
  SnapshotSource& source_;
  std::string buffer_;
  size_t pos_ = 0;
  uint32_t crc_ = 0;
  uint64_t bytes_ = 0;
};

struct Header {
  uint64_t applied_index = 0;
  uint64_t revision = 0;
};

Status ReadHeader(SnapshotReader& reader, Header* header) {
  std::string_view magic;
  Status s = reader.Take(kMagic.size(), &magic);
  if (!s.ok()) return s;
  if (magic != kMagic) return Corrupt("not a synod kv snapshot");
  uint64_t format = 0;
  s = reader.U64(&format);
  if (s.ok() && format != kSnapshotFormat) {
    return Corrupt("unknown format " + std::to_string(format));
  }
  if (s.ok()) s = reader.U64(&header->applied_index);
  if (s.ok()) s = reader.U64(&header->revision);
  return s;
}

// Walks the entries; `fn(key, value)` sees each one. Ends after checking count and CRC.
template <typename Fn>
Status ReadEntries(SnapshotReader& reader, Fn fn, uint64_t* count) {
  std::string previous;
  *count = 0;
  while (true) {
    std::string_view tag;
    Status s = reader.Take(1, &tag);
    if (!s.ok()) return s;
    if (tag[0] == 'E') break;
    if (tag[0] != 'R') return Corrupt("bad entry tag");
    uint64_t key_len = 0, value_len = 0;
    s = reader.Varint(&key_len);
    if (!s.ok()) return s;
    if (key_len == 0 || key_len > kEntryBytesMax) return Corrupt("bad key length");
    std::string_view key;
    s = reader.Take(key_len, &key);
    if (!s.ok()) return s;
    std::string key_copy(key);
    if (*count > 0 && key_copy <= previous) return Corrupt("entries out of order");
    s = reader.Varint(&value_len);
    if (!s.ok()) return s;
    if (value_len > kEntryBytesMax) return Corrupt("bad value length");
    std::string_view value;
    s = reader.Take(value_len, &value);
    if (!s.ok()) return s;
    s = fn(key_copy, value);
    if (!s.ok()) return s;
    previous = std::move(key_copy);
    ++*count;
  }
  uint64_t stated = 0;
  Status s = reader.U64(&stated);
  if (!s.ok()) return s;
  if (stated != *count) return Corrupt("entry count mismatch");
  const uint32_t computed = reader.crc();
  std::string_view crc;
  s = reader.Take(4, &crc, /*checksummed=*/false);
  if (!s.ok()) return s;
  uint32_t stored = 0;
  for (char c : crc) stored = (stored << 8) | static_cast<uint8_t>(c);
  if (stored != computed) return Corrupt("checksum mismatch");
  return reader.AtEnd();
}

}  // namespace

Result<std::shared_ptr<const Store::Pinned>> Store::Pin() const {
  auto view = TakeView();
  if (!view.ok()) return view.status();
  auto pinned = std::make_shared<Pinned>();
  pinned->reader_ = std::move(view.value().reader);
  pinned->revision_ = view.value().revision;
  pinned->compact_revision_ = view.value().compact_revision;
  pinned->applied_index_ = view.value().applied_index;
  return std::shared_ptr<const Pinned>(std::move(pinned));
}

Result<SnapshotInfo> Store::WriteSnapshot(SnapshotSink& sink, const Pinned* pinned) const {
  if (pinned != nullptr) {
    return WriteSnapshotOf(View{.reader = pinned->reader_,
                                .revision = pinned->revision_,
                                .compact_revision = pinned->compact_revision_,
                                .applied_index = pinned->applied_index_},
                           sink);
  }
  auto view = TakeView();
  if (!view.ok()) return view.status();
  return WriteSnapshotOf(view.value(), sink);
}

Result<SnapshotInfo> Store::WriteSnapshotOf(const View& v, SnapshotSink& sink) const {
  SnapshotInfo info;
  info.revision = v.revision;
  info.applied_index = v.applied_index;
  SnapshotWriter writer(sink);
  std::string header(kMagic);
  keys::PutBig64(&header, kSnapshotFormat);
  keys::PutBig64(&header, info.applied_index);
  keys::PutBig64(&header, static_cast<uint64_t>(info.revision));
  Status s = writer.Append(header);
  auto it = v.reader->NewIterator("", "", ScanKind::kOnePass);
  std::string entry;
  for (it->SeekToFirst(); s.ok() && it->Valid(); it->Next()) {
    entry.assign(1, 'R');
    keys::PutVarint(&entry, it->key().size());
    entry.append(it->key());
    keys::PutVarint(&entry, it->value().size());
    entry.append(it->value());
    s = writer.Append(entry);
    ++info.entries;
  }
  if (!s.ok()) return s;
  if (!it->status().ok()) return it->status();
  std::string trailer(1, 'E');
  keys::PutBig64(&trailer, info.entries);
  s = writer.Append(trailer);
  if (!s.ok()) return s;
  info.crc32c = writer.crc();
  const uint32_t crc = info.crc32c;
  const char crc_bytes[4] = {static_cast<char>(crc >> 24), static_cast<char>(crc >> 16),
                             static_cast<char>(crc >> 8), static_cast<char>(crc)};
  s = writer.Append(std::string_view(crc_bytes, 4), /*checksummed=*/false);
  if (s.ok()) s = writer.Flush();
  if (s.ok()) s = sink.Finish();
  if (!s.ok()) return s;
  info.bytes = writer.bytes();
  return info;
}

Result<SnapshotInfo> Store::InstallSnapshot(SnapshotSource& source) {
  std::lock_guard apply_lock(apply_mu_);
  std::lock_guard compact_lock(compact_mu_);

  // Pass 1: verify everything before touching the store.
  SnapshotInfo info;
  {
    Status s = source.Rewind();
    if (!s.ok()) return s;
    SnapshotReader reader(source);
    Header header;
    s = ReadHeader(reader, &header);
    if (!s.ok()) return s;
    s = ReadEntries(
        reader, [](const std::string&, std::string_view) { return Status::Ok(); }, &info.entries);
    if (!s.ok()) return s;
    info.applied_index = header.applied_index;
    info.revision = static_cast<int64_t>(header.revision);
    info.bytes = reader.bytes();
    info.crc32c = reader.crc();
  }

  // Pass 2: replace the store. The "installing" marker goes in with the wipe and leaves with
  // the last entries, so a crash in between leaves a store that knows it is incomplete.
  Status s = source.Rewind();
  if (!s.ok()) return s;
  {
    std::lock_guard lock(mu_);
    needs_snapshot_ = true;  // readers refuse from now on
  }
  WriteBatch batch;
  batch.DeleteRange(std::string(1, '\0'), std::string(1, '\xff'));
  batch.Put(std::string(keys::kMetaInstalling), "");
  s = backend_->Write(batch, /*sync=*/false);
  if (!s.ok()) return s;
  batch.Clear();
  SnapshotReader reader(source);
  Header header;
  s = ReadHeader(reader, &header);
  uint64_t count = 0;
  if (s.ok()) {
    s = ReadEntries(
        reader,
        [&](const std::string& key, std::string_view value) {
          if (key == keys::kMetaInstalling) return Status::Ok();
          batch.Put(key, std::string(value));
          if (batch.bytes() < kInstallBatchBytes) return Status::Ok();
          Status w = backend_->Write(batch, /*sync=*/false);
          batch.Clear();
          return w;
        },
        &count);
  }
  if (!s.ok()) return s;  // the source changed under us: the marker stays, the store refuses
  batch.Delete(std::string(keys::kMetaInstalling));
  s = backend_->Write(batch, /*sync=*/true);
  if (!s.ok()) return s;
  compact_cursor_.clear();
  s = LoadState();
  if (!s.ok()) return s;
  return info;
}

}  // namespace synod::kv
