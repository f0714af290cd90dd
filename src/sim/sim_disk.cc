#include "sim/sim_disk.h"

#include "base/assert.h"
#include "storage/wal_format.h"
#include "storage/wal_log.h"
#include "storage/wal_recovery.h"

namespace synod::sim {
namespace {

using storage::RecordType;

// The WAL's default bound on one record (storage::WalOptions::record_bytes_max).
constexpr uint64_t kRecordBytesMax = 32ull << 20;

std::string Describe(const pb::Entry& e) {
  return "entry " + std::to_string(e.index()) + " (term " + std::to_string(e.term()) + ")";
}

}  // namespace

SimDisk::SimDisk(const pb::ConfState& initial_membership) {
  *snapshot_.metadata.mutable_conf_state() = initial_membership;
  StartSegment();
}

void SimDisk::AppendRecord(int type, const google::protobuf::MessageLite& message) {
  // As the WAL encodes a record: the message serialized in place after the header.
  const size_t payload_bytes = message.ByteSizeLong();
  SYNOD_ASSERT(payload_bytes <= kRecordBytesMax, "a simulated record fits the WAL's bound");
  const size_t at = wal_.size();
  wal_.resize(at + storage::kRecordHeaderBytes + payload_bytes);
  char* record = wal_.data() + at;
  message.SerializeWithCachedSizesToArray(
      reinterpret_cast<uint8_t*>(record + storage::kRecordHeaderBytes));
  storage::FillRecordHeader(static_cast<RecordType>(type), payload_bytes, record);
}

void SimDisk::StartSegment() {
  wal_.clear();
  segment_first_index_ = snapshot_index() + 1;
  const storage::SegmentHeader header{.seq = ++segment_seq_, .first_index = segment_first_index_};
  storage::AppendRecord(RecordType::kSegmentHeader, storage::EncodeSegmentHeader(header), &wal_);
  if (has_hard_state_) AppendRecord(static_cast<int>(RecordType::kHardState), hard_state_);
  if (snapshot_index() > 0) {
    AppendRecord(static_cast<int>(RecordType::kSnapshot), snapshot_.metadata);
  }
  for (const auto& e : entries_) AppendRecord(static_cast<int>(RecordType::kEntry), e);
}

void SimDisk::InstallSnapshot(consensus::Snapshot snapshot) {
  SYNOD_ASSERT(snapshot.metadata.index() >= snapshot_index(), "snapshots never move back");
  // As the node runtime records a leader's snapshot: the snapshot file, then a WAL marker.
  // The marker drops the entries it covers and keeps those after it (the engine, which
  // forgot its whole log, gets them back at a restart).
  DropCovered(snapshot.metadata.index());
  snapshot_ = std::move(snapshot);
  AppendRecord(static_cast<int>(RecordType::kSnapshot), snapshot_.metadata);
}

void SimDisk::Append(std::vector<pb::Entry> entries) {
  if (entries.empty()) return;
  const consensus::LogIndex first = entries.front().index();
  const consensus::LogIndex base = snapshot_index();
  SYNOD_ASSERT(first > base, "entries to persist must follow the snapshot");
  SYNOD_ASSERT(first - base - 1 <= entries_.size(), "persisted entries must be contiguous");
  entries_.resize(first - base - 1);  // an overwrite truncates the suffix first
  for (auto& e : entries) {
    AppendRecord(static_cast<int>(RecordType::kEntry), e);
    entries_.push_back(std::move(e));
  }
}

void SimDisk::SetHardState(const pb::HardState& hard_state) {
  hard_state_ = hard_state;
  has_hard_state_ = true;
  AppendRecord(static_cast<int>(RecordType::kHardState), hard_state_);
}

void SimDisk::Compact(consensus::Snapshot snapshot) {
  SYNOD_ASSERT(snapshot.metadata.index() >= snapshot_index(), "snapshots never move back");
  DropCovered(snapshot.metadata.index());
  snapshot_ = std::move(snapshot);
  StartSegment();
}

void SimDisk::DropCovered(consensus::LogIndex index) {
  const size_t covered = std::min<size_t>(entries_.size(), index - snapshot_index());
  entries_.erase(entries_.begin(), entries_.begin() + static_cast<long>(covered));
}

Result<consensus::DurableState> SimDisk::Recover() const {
  auto corrupt = [](const std::string& why) {
    return Status(Code::kCorruption, "wal round trip: " + why);
  };
  storage::ParsedRecord record;
  std::string why;
  if (storage::ParseRecord(wal_, 0, kRecordBytesMax, &record, &why) !=
          storage::ParseStatus::kRecord ||
      record.type != RecordType::kSegmentHeader) {
    return corrupt("no segment header: " + why);
  }
  const auto header = storage::DecodeSegmentHeader(record.payload, &why);
  if (!header) return corrupt("bad segment header: " + why);
  if (header->seq != segment_seq_ || header->first_index != segment_first_index_) {
    return corrupt("the segment header does not say what was written");
  }
  storage::LogReplay replay(header->first_index);
  uint64_t max_entry_index = 0;
  for (size_t offset = record.bytes; offset < wal_.size(); offset += record.bytes) {
    if (storage::ParseRecord(wal_, offset, kRecordBytesMax, &record, &why) !=
        storage::ParseStatus::kRecord) {
      return corrupt("record at byte " + std::to_string(offset) + ": " + why);
    }
    if (std::string bad = storage::ApplyRecord(record, &replay, &max_entry_index); !bad.empty()) {
      return corrupt("record at byte " + std::to_string(offset) + ": " + bad);
    }
  }

  consensus::DurableState durable;
  durable.hard_state = replay.hard_state().value_or(pb::HardState());
  if (durable.hard_state.SerializeAsString() != hard_state_.SerializeAsString()) {
    return corrupt("hard state " + durable.hard_state.ShortDebugString() + " read back, " +
                   hard_state_.ShortDebugString() + " written");
  }
  const pb::SnapshotMetadata marker = replay.snapshot().value_or(pb::SnapshotMetadata());
  if (marker.index() != snapshot_index() ||
      (replay.snapshot() && marker.SerializeAsString() != snapshot_.metadata.SerializeAsString())) {
    return corrupt("snapshot marker at " + std::to_string(marker.index()) +
                   " read back, the snapshot kept is at " + std::to_string(snapshot_index()));
  }
  durable.snapshot = snapshot_;
  durable.entries = replay.TakeEntries();
  if (durable.entries.size() != entries_.size()) {
    return corrupt(std::to_string(durable.entries.size()) + " entries read back, " +
                   std::to_string(entries_.size()) + " written");
  }
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (durable.entries[i].SerializeAsString() != entries_[i].SerializeAsString()) {
      return corrupt(Describe(durable.entries[i]) + " read back where " + Describe(entries_[i]) +
                     " was written");
    }
  }
  return durable;
}

}  // namespace synod::sim
