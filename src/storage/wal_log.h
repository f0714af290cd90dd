// The log rules shared by the WAL's write path and its recovery: which entry index may come
// next, how an entry overwrites a suffix and how a snapshot marker drops a prefix. The writer
// checks appends against them (a violation is a caller bug) and recovery checks the records
// it reads (a violation is corruption), so the two can never disagree.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "synod/consensus.pb.h"

namespace synod::storage {

// The shape of the log without its contents.
class LogBounds {
 public:
  // `log_start` is the first index the oldest segment present can hold (1 for a new WAL).
  LogBounds() : LogBounds(1) {}
  explicit LogBounds(uint64_t log_start) : log_start_(log_start), last_index_(log_start - 1) {}

  // The lowest index an entry may have: above the snapshot and not below the log start.
  uint64_t lowest_index() const { return std::max(log_start_, snapshot_index_ + 1); }
  uint64_t last_index() const { return last_index_; }
  uint64_t snapshot_index() const { return snapshot_index_; }
  uint64_t log_start() const { return log_start_; }

  // Empty when an entry at `index` may be written now (appending at last + 1 or overwriting a
  // suffix); otherwise why not.
  std::string CheckEntry(uint64_t index) const;
  void ApplyEntry(uint64_t index) { last_index_ = index; }

  // Empty when a snapshot marker at `index` may be written now (markers never move back).
  std::string CheckSnapshot(uint64_t index) const;
  void ApplySnapshot(uint64_t index);

 private:
  uint64_t log_start_;
  uint64_t snapshot_index_ = 0;
  uint64_t last_index_;  // of entries, or the snapshot index when that is higher
};

// Rebuilds the log from records read in write order.
class LogReplay {
 public:
  explicit LogReplay(uint64_t log_start) : bounds_(log_start) {}

  // Each returns an empty string on success, else why the record cannot follow the log.
  std::string AddEntry(consensuspb::Entry entry);
  std::string AddSnapshot(const consensuspb::SnapshotMetadata& snapshot);
  void SetHardState(const consensuspb::HardState& hard_state) { hard_state_ = hard_state; }

  const LogBounds& bounds() const { return bounds_; }
  const std::optional<consensuspb::HardState>& hard_state() const { return hard_state_; }
  const std::optional<consensuspb::SnapshotMetadata>& snapshot() const { return snapshot_; }
  std::vector<consensuspb::Entry> TakeEntries();

 private:
  LogBounds bounds_;
  std::deque<consensuspb::Entry> entries_;  // contiguous, all above the snapshot
  std::optional<consensuspb::HardState> hard_state_;
  std::optional<consensuspb::SnapshotMetadata> snapshot_;
};

}  // namespace synod::storage
