#include "storage/wal_log.h"

#include <algorithm>

namespace synod::storage {

std::string LogBounds::CheckEntry(uint64_t index) const {
  if (index < lowest_index() || index > last_index_ + 1) {
    return "entry index " + std::to_string(index) + " outside [" + std::to_string(lowest_index()) +
           ", " + std::to_string(last_index_ + 1) + "] (snapshot at " +
           std::to_string(snapshot_index_) + ", log start " + std::to_string(log_start_) + ")";
  }
  return {};
}

std::string LogBounds::CheckSnapshot(uint64_t index) const {
  if (index < snapshot_index_) {
    return "snapshot marker at " + std::to_string(index) + " is older than the marker at " +
           std::to_string(snapshot_index_);
  }
  return {};
}

void LogBounds::ApplySnapshot(uint64_t index) {
  snapshot_index_ = index;
  last_index_ = std::max(last_index_, index);
}

std::string LogReplay::AddEntry(consensuspb::Entry entry) {
  const uint64_t index = entry.index();
  if (std::string why = bounds_.CheckEntry(index); !why.empty()) return why;
  // Raft's overwrite: an entry at `index` replaces everything logged at or after it.
  while (!entries_.empty() && entries_.back().index() >= index) entries_.pop_back();
  entries_.push_back(std::move(entry));
  bounds_.ApplyEntry(index);
  return {};
}

std::string LogReplay::AddSnapshot(const consensuspb::SnapshotMetadata& snapshot) {
  if (std::string why = bounds_.CheckSnapshot(snapshot.index()); !why.empty()) return why;
  // Entries the snapshot covers are dropped; entries after it are kept (a marker written for
  // local compaction does not touch the suffix).
  while (!entries_.empty() && entries_.front().index() <= snapshot.index()) entries_.pop_front();
  bounds_.ApplySnapshot(snapshot.index());
  snapshot_ = snapshot;
  return {};
}

std::vector<consensuspb::Entry> LogReplay::TakeEntries() {
  std::vector<consensuspb::Entry> out(std::make_move_iterator(entries_.begin()),
                                      std::make_move_iterator(entries_.end()));
  entries_.clear();
  return out;
}

}  // namespace synod::storage
