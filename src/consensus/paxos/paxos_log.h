// PaxosLog: one member's accepted values, slot by slot, and which part is durable.
//
//   [ snapshot ] [ first_index ... commit ... last_index ]
//
// Each entry is the value this member accepted at its slot (Entry.index), with the
// ballot it accepted it in (Entry.ballot) and the proposal's identity (Entry.term: the
// ballot of the value's first proposer, kept when a new leader re-proposes it).
// Slots up to the chosen index (`Committed()`) hold chosen values. The log is
// contiguous, as the persistence contract wants (a Ready's entries overwrite a suffix
// of the durable log); unlike a Raft log it is never truncated: an acceptor must not
// forget a value it accepted, so overwriting one slot in the middle re-persists the
// suffix after it unchanged.
#pragma once

#include <deque>
#include <optional>
#include <vector>

#include "consensus/api/dropped_entries.h"
#include "consensus/api/engine.h"

namespace synod::consensus::paxos {

class PaxosLog {
 public:
  explicit PaxosLog(const DurableState& durable);

  LogIndex FirstIndex() const { return snapshot_index_ + 1; }
  LogIndex LastIndex() const { return snapshot_index_ + entries_.size(); }
  // The last slot compacted away: the engine's snapshot's, or up to
  // Config::catchup_entries before it (those chosen values are still here).
  LogIndex SnapshotIndex() const { return snapshot_index_; }
  Term SnapshotTerm() const { return snapshot_term_; }
  LogIndex Committed() const { return committed_; }
  LogIndex Applied() const { return applied_; }
  LogIndex StableIndex() const { return stable_index_; }

  // The entry at `index`, or nullptr if it is compacted or beyond the end.
  const pb::Entry* Find(LogIndex index) const;
  const pb::Entry& At(LogIndex index) const;
  // The proposal identity (Entry.term) at `index`; the snapshot's index answers with
  // the snapshot's term.
  std::optional<Term> TermAt(LogIndex index) const;

  // Accepts `entry` at its slot (at most LastIndex() + 1), replacing what was there.
  void Write(pb::Entry entry);
  // Planted bug kSkipRecovery only: forget the values from `index` on.
  void TruncateFrom(LogIndex index);

  std::vector<pb::Entry> Slice(LogIndex lo, LogIndex hi, uint64_t bytes_max) const;
  uint64_t BytesOf(LogIndex lo, LogIndex hi) const;

  void CommitTo(LogIndex index);
  std::vector<pb::Entry> NextCommittedToApply(uint64_t bytes_max);
  bool HasCommittedToApply() const;

  // Entries not yet handed to the caller for persistence (from the lowest slot written
  // since, to the end); marks them handed.
  std::vector<pb::Entry> TakeUnstable();
  bool HasUnstable() const { return unstable_from_ <= LastIndex(); }
  // The caller made the entries handed out up to `handed_last` durable.
  void StableTo(LogIndex handed_last);

  // Install a snapshot from the leader: the slots it covers are chosen; the accepted
  // values after it are kept (and handed out again, since installing a snapshot
  // replaces the durable log).
  void Restore(const pb::SnapshotMetadata& metadata);
  // Discard entries up to `index` (which must be applied and durable).
  void CompactTo(LogIndex index);
  // Frees some of the entries compaction and snapshots dropped (DroppedEntries): the
  // engine calls it once per Ready.
  void FreeSomeDropped() { dropped_.FreeSome(); }
  size_t DroppedPending() const { return dropped_.pending(); }

 private:
  LogIndex snapshot_index_ = 0;
  Term snapshot_term_ = 0;
  std::deque<pb::Entry> entries_;  // entries_[0] has index snapshot_index_ + 1
  DroppedEntries dropped_;         // dropped from entries_, not yet freed
  LogIndex committed_ = 0;
  LogIndex applied_ = 0;
  LogIndex stable_index_ = 0;   // every entry up to here is durable as it is in memory
  LogIndex unstable_from_ = 1;  // first index not yet handed out for persistence
};

}  // namespace synod::consensus::paxos
