// RaftLog: the in-memory view of one member's log, and which part of it is durable.
//
//   [ snapshot ] [ first_index ... stable_index ] [ ... last_index ]
//                 durable (the caller has fsynced)  not yet durable
//
// Entries at or below the snapshot index are compacted away. The log remembers which
// entries were already handed to the caller for persistence (`unstable_from_`) and which
// the caller has confirmed durable (`stable_index_`), so that a leader counts only its
// durable entries towards a quorum and a member applies only durable committed entries.
#pragma once

#include <deque>
#include <optional>
#include <vector>

#include "consensus/api/dropped_entries.h"
#include "consensus/api/engine.h"

namespace synod::consensus::raft {

class RaftLog {
 public:
  explicit RaftLog(const DurableState& durable);

  LogIndex FirstIndex() const { return snapshot_index_ + 1; }
  LogIndex LastIndex() const { return snapshot_index_ + entries_.size(); }
  Term LastTerm() const { return *TermAt(LastIndex()); }
  LogIndex SnapshotIndex() const { return snapshot_index_; }
  Term SnapshotTerm() const { return snapshot_term_; }
  LogIndex Committed() const { return committed_; }
  LogIndex Applied() const { return applied_; }
  LogIndex StableIndex() const { return stable_index_; }

  // The term of the entry at `index`, or nullopt if it is compacted or beyond the end.
  // The snapshot's own index answers with the snapshot's term.
  std::optional<Term> TermAt(LogIndex index) const;
  bool Matches(LogIndex index, Term term) const { return TermAt(index) == term; }
  const pb::Entry& At(LogIndex index) const;

  // §5.4.1: a candidate's log is at least as up to date as ours.
  bool IsUpToDate(LogIndex last_index, Term last_term) const;

  // Leader: appends its own new entry (index must be LastIndex() + 1).
  void AppendOwn(pb::Entry entry);
  // Follower: entries from the leader that follow (prev_index, prev_term), which the
  // caller checked match. Skips entries already present, truncates at the first
  // conflict, appends the rest. Returns the index of the first entry truncated, if any.
  std::optional<LogIndex> AppendFromLeader(const std::vector<const pb::Entry*>& entries);

  // Entries in [lo, hi], at least one (if any exist) and at most about `bytes_max` bytes.
  std::vector<pb::Entry> Slice(LogIndex lo, LogIndex hi, uint64_t bytes_max) const;

  // Fast back-tracking (thesis §3.5 optimisation): the largest index <= `index` whose
  // term is <= `term`. The entries above it cannot match a log whose entry at `index`
  // has `term`.
  LogIndex FindConflictByTerm(LogIndex index, Term term) const;

  void CommitTo(LogIndex index);
  // Committed entries that are durable and not yet handed out for applying.
  std::vector<pb::Entry> NextCommittedToApply(uint64_t bytes_max);
  bool HasCommittedToApply() const;

  // Entries not yet handed to the caller for persistence; marks them handed.
  std::vector<pb::Entry> TakeUnstable();
  bool HasUnstable() const { return unstable_from_ <= LastIndex(); }
  // The caller made entries up to (index, term) durable.
  void StableTo(LogIndex index, Term term);

  // Replace the whole log by a snapshot (a follower installing the leader's snapshot).
  void Restore(const pb::SnapshotMetadata& metadata);
  // Discard entries up to `index` (which must be applied), after the caller snapshotted.
  void CompactTo(LogIndex index);
  // Frees some of the entries compaction and snapshots dropped (DroppedEntries): the
  // engine calls it once per Ready.
  void FreeSomeDropped() { dropped_.FreeSome(); }
  size_t DroppedPending() const { return dropped_.pending(); }

  // Truncations invalidate indexes; the engine uses this to keep derived state honest.
  uint64_t BytesOf(LogIndex lo, LogIndex hi) const;

 private:
  void TruncateFrom(LogIndex index);

  LogIndex snapshot_index_ = 0;
  Term snapshot_term_ = 0;
  std::deque<pb::Entry> entries_;  // entries_[0] has index snapshot_index_ + 1
  DroppedEntries dropped_;         // dropped from entries_, not yet freed
  LogIndex committed_ = 0;
  LogIndex applied_ = 0;        // highest index handed out for applying
  LogIndex stable_index_ = 0;   // highest index the caller has made durable
  LogIndex unstable_from_ = 1;  // first index not yet handed out for persistence
};

}  // namespace synod::consensus::raft
