#include "storage/wal_recovery.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "storage/wal_io.h"

namespace synod::storage {
namespace {

Status Corruption(const std::string& path, uint64_t offset, const std::string& why) {
  return Status(Code::kCorruption,
                "wal: corrupt " + path + " at byte offset " + std::to_string(offset) + ": " + why);
}

// Lists segment files sorted by sequence number, deleting unfinished "*.tmp" ones.
Status ListSegments(const std::string& dir, std::vector<SegmentInfo>* segments) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return Status(Code::kIoError, IoErrorMessage("opendir", dir, errno));
  Status status;
  while (dirent* ent = ::readdir(d)) {
    const std::string name = ent->d_name;
    if (name.size() > kTempSuffix.size() && name.ends_with(kTempSuffix)) {
      // A segment whose creation was interrupted: it was never renamed into the log.
      if (::unlink((dir + "/" + name).c_str()) != 0) {
        status = Status(Code::kIoError, IoErrorMessage("unlink", dir + "/" + name, errno));
      }
      continue;
    }
    if (!name.ends_with(kSegmentSuffix)) continue;
    const std::optional<SegmentHeader> header = ParseSegmentFileName(name);
    if (!header) {
      status = Status(Code::kCorruption, "wal: unexpected file name " + dir + "/" + name);
      continue;
    }
    segments->push_back(SegmentInfo{.path = dir + "/" + name, .header = *header});
  }
  ::closedir(d);
  std::sort(segments->begin(), segments->end(),
            [](const SegmentInfo& a, const SegmentInfo& b) { return a.header.seq < b.header.seq; });
  return status;
}

// Returns the offset of the first valid record starting after `offset`, if any. A valid
// record after a bad one means the bad one is not a torn tail but damage in the middle.
std::optional<uint64_t> FindValidRecordAfter(std::string_view data, uint64_t offset,
                                             uint64_t record_bytes_max) {
  for (uint64_t pos = offset + 1; pos + kRecordHeaderBytes <= data.size(); ++pos) {
    if (!IsValidRecordType(static_cast<uint8_t>(data[pos + 8]))) continue;  // cheap filter
    ParsedRecord record;
    std::string why;
    if (ParseRecord(data, pos, record_bytes_max, &record, &why) == ParseStatus::kRecord) {
      return pos;
    }
  }
  return std::nullopt;
}

}  // namespace

std::string ApplyRecord(const ParsedRecord& record, LogReplay* replay, uint64_t* max_entry_index) {
  switch (record.type) {
    case RecordType::kEntry: {
      consensuspb::Entry entry;
      if (!entry.ParseFromArray(record.payload.data(), static_cast<int>(record.payload.size()))) {
        return "entry record does not parse";
      }
      *max_entry_index = std::max(*max_entry_index, entry.index());
      return replay->AddEntry(std::move(entry));
    }
    case RecordType::kHardState: {
      consensuspb::HardState hard_state;
      if (!hard_state.ParseFromArray(record.payload.data(),
                                     static_cast<int>(record.payload.size()))) {
        return "hard state record does not parse";
      }
      replay->SetHardState(hard_state);
      return {};
    }
    case RecordType::kSnapshot: {
      consensuspb::SnapshotMetadata snapshot;
      if (!snapshot.ParseFromArray(record.payload.data(),
                                   static_cast<int>(record.payload.size()))) {
        return "snapshot record does not parse";
      }
      return replay->AddSnapshot(snapshot);
    }
    case RecordType::kSegmentHeader:
      return "segment header record in the middle of a segment";
  }
  return "unknown record type";
}

namespace {

// Checks the header record at offset 0 against the file name and the log so far.
Status CheckHeader(std::string_view data, const SegmentInfo& segment, bool first,
                   const LogReplay& replay, uint64_t record_bytes_max, uint64_t* offset) {
  ParsedRecord record;
  std::string why;
  if (ParseRecord(data, 0, record_bytes_max, &record, &why) != ParseStatus::kRecord) {
    return Corruption(segment.path, 0, "bad segment header: " + why);
  }
  if (record.type != RecordType::kSegmentHeader) {
    return Corruption(segment.path, 0, "segment does not start with a header record");
  }
  const std::optional<SegmentHeader> header = DecodeSegmentHeader(record.payload, &why);
  if (!header) return Corruption(segment.path, 0, why);
  if (header->seq != segment.header.seq || header->first_index != segment.header.first_index) {
    return Corruption(segment.path, 0, "header does not match the file name");
  }
  if (header->first_index == 0) return Corruption(segment.path, 0, "first index 0");
  if (!first && header->first_index != replay.bounds().last_index() + 1) {
    return Corruption(segment.path, 0,
                      "segment starts at index " + std::to_string(header->first_index) +
                          " but the log before it ends at " +
                          std::to_string(replay.bounds().last_index()));
  }
  *offset = record.bytes;
  return Status::Ok();
}

// Handles an unreadable record at `offset`: the clean end of the log, a torn tail, or
// corruption. Sets `*end` to where the log ends in this segment.
Status ClassifyBadRecord(std::string_view data, const SegmentInfo& segment, bool last,
                         uint64_t offset, const std::string& why, uint64_t record_bytes_max,
                         RecoveryResult* result) {
  const std::string_view rest = data.substr(offset);
  if (last && AllZero(rest)) return Status::Ok();  // the untouched preallocated area
  if (!last) return Corruption(segment.path, offset, why + " (not the last segment)");
  if (const auto next = FindValidRecordAfter(data, offset, record_bytes_max)) {
    return Corruption(segment.path, offset,
                      why + ", followed by a valid record at byte offset " + std::to_string(*next));
  }
  const size_t garbage_end = rest.find_last_not_of('\0') + 1;
  result->last_segment_repair = true;
  result->recovered.repaired_tail_bytes = garbage_end;
  result->recovered.repair_note = "torn tail of " + segment.path + " at byte offset " +
                                  std::to_string(offset) + ": " + why + "; cut " +
                                  std::to_string(garbage_end) + " bytes";
  return Status::Ok();
}

Status ScanSegment(SegmentInfo* segment, bool first, bool last, uint64_t record_bytes_max,
                   LogReplay* replay, RecoveryResult* result) {
  std::string data;
  if (Status s = ReadFile(segment->path, &data); !s.ok()) return s;
  uint64_t offset = 0;
  if (Status s = CheckHeader(data, *segment, first, *replay, record_bytes_max, &offset); !s.ok()) {
    return s;
  }
  while (offset < data.size()) {
    ParsedRecord record;
    std::string why;
    if (ParseRecord(data, offset, record_bytes_max, &record, &why) != ParseStatus::kRecord) {
      if (Status s = ClassifyBadRecord(data, *segment, last, offset, why, record_bytes_max, result);
          !s.ok()) {
        return s;
      }
      break;
    }
    if (std::string bad = ApplyRecord(record, replay, &segment->max_entry_index); !bad.empty()) {
      return Corruption(segment->path, offset, bad);
    }
    offset += record.bytes;
  }
  if (last) result->last_segment_end = offset;
  return Status::Ok();
}

}  // namespace

Status ReadFile(const std::string& path, std::string* bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status(Code::kIoError, IoErrorMessage("open", path, errno));
  bytes->clear();
  char buffer[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return Status(Code::kIoError, IoErrorMessage("read", path, err));
    }
    if (n == 0) break;
    bytes->append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return Status::Ok();
}

Status RecoverWal(const std::string& dir, uint64_t record_bytes_max, RecoveryResult* result) {
  std::vector<SegmentInfo> segments;
  if (Status s = ListSegments(dir, &segments); !s.ok()) return s;
  if (segments.empty()) {
    *result = RecoveryResult{};
    return Status::Ok();
  }
  for (size_t i = 1; i < segments.size(); ++i) {
    if (segments[i].header.seq != segments[i - 1].header.seq + 1) {
      return Status(Code::kCorruption, "wal: segment missing between " + segments[i - 1].path +
                                           " and " + segments[i].path);
    }
  }
  LogReplay replay(segments.front().header.first_index);
  for (size_t i = 0; i < segments.size(); ++i) {
    const bool last = i + 1 == segments.size();
    if (Status s = ScanSegment(&segments[i], i == 0, last, record_bytes_max, &replay, result);
        !s.ok()) {
      return s;
    }
  }
  result->bounds = replay.bounds();
  result->recovered.hard_state = replay.hard_state();
  result->recovered.snapshot = replay.snapshot();
  result->recovered.entries = replay.TakeEntries();
  result->segments = std::move(segments);
  return Status::Ok();
}

}  // namespace synod::storage
