#include "consensus/raft/raft_log.h"

#include <algorithm>

#include "base/assert.h"

namespace synod::consensus::raft {

RaftLog::RaftLog(const DurableState& durable) {
  const auto& meta = durable.snapshot.metadata;
  snapshot_index_ = meta.index();
  snapshot_term_ = meta.term();
  for (const auto& e : durable.entries) {
    SYNOD_ASSERT(e.index() == LastIndex() + 1,
                 "durable entries must be contiguous after the snapshot");
    entries_.push_back(e);
  }
  stable_index_ = LastIndex();
  unstable_from_ = LastIndex() + 1;
  committed_ = std::max(durable.hard_state.commit(), snapshot_index_);
  SYNOD_ASSERT(committed_ <= LastIndex(), "durable commit index beyond the durable log");
  applied_ = snapshot_index_;
}

std::optional<Term> RaftLog::TermAt(LogIndex index) const {
  if (index == snapshot_index_) return snapshot_term_;
  if (index < snapshot_index_ || index > LastIndex()) return std::nullopt;
  return entries_[index - snapshot_index_ - 1].term();
}

const pb::Entry& RaftLog::At(LogIndex index) const {
  SYNOD_ASSERT(index > snapshot_index_ && index <= LastIndex(), "entry index out of the log");
  return entries_[index - snapshot_index_ - 1];
}

bool RaftLog::IsUpToDate(LogIndex last_index, Term last_term) const {
  return last_term > LastTerm() || (last_term == LastTerm() && last_index >= LastIndex());
}

void RaftLog::AppendOwn(pb::Entry entry) {
  SYNOD_ASSERT(entry.index() == LastIndex() + 1, "a leader appends at the end of its log");
  entries_.push_back(std::move(entry));
}

std::optional<LogIndex> RaftLog::AppendFromLeader(const std::vector<const pb::Entry*>& entries) {
  std::optional<LogIndex> truncated;
  for (const pb::Entry* e : entries) {
    if (e->index() <= LastIndex()) {
      if (Matches(e->index(), e->term())) continue;  // already have it
#ifdef SYNOD_PLANTED_BUGS
      // A planted bug may make a leader overwrite committed entries; let it happen so
      // the simulator's checkers, not this assertion, are what catch it.
      committed_ = std::min(committed_, e->index() - 1);
#endif
      SYNOD_ASSERT(e->index() > committed_, "a leader never overwrites a committed entry");
      TruncateFrom(e->index());
      truncated = e->index();
    }
    SYNOD_ASSERT(e->index() == LastIndex() + 1, "leader entries must be contiguous");
    entries_.push_back(*e);
  }
  return truncated;
}

void RaftLog::TruncateFrom(LogIndex index) {
  SYNOD_ASSERT(index > snapshot_index_, "cannot truncate into the snapshot");
  entries_.resize(index - snapshot_index_ - 1);
  unstable_from_ = std::min(unstable_from_, index);
  stable_index_ = std::min(stable_index_, index - 1);
}

std::vector<pb::Entry> RaftLog::Slice(LogIndex lo, LogIndex hi, uint64_t bytes_max) const {
  std::vector<pb::Entry> out;
  SYNOD_ASSERT(lo > snapshot_index_, "slice reaches into the snapshot");
  uint64_t bytes = 0;
  for (LogIndex i = lo; i <= std::min(hi, LastIndex()); ++i) {
    const pb::Entry& e = At(i);
    bytes += e.data().size();
    if (!out.empty() && bytes > bytes_max) break;
    out.push_back(e);
  }
  return out;
}

uint64_t RaftLog::BytesOf(LogIndex lo, LogIndex hi) const {
  uint64_t bytes = 0;
  for (LogIndex i = std::max(lo, FirstIndex()); i <= std::min(hi, LastIndex()); ++i) {
    bytes += At(i).data().size();
  }
  return bytes;
}

LogIndex RaftLog::FindConflictByTerm(LogIndex index, Term term) const {
  index = std::min(index, LastIndex());
  while (index > snapshot_index_) {
    if (At(index).term() <= term) return index;
    --index;
  }
  return index;
}

void RaftLog::CommitTo(LogIndex index) {
  if (index <= committed_) return;  // commit never regresses
  SYNOD_ASSERT(index <= LastIndex(), "commit beyond the last entry");
  committed_ = index;
}

bool RaftLog::HasCommittedToApply() const { return applied_ < std::min(committed_, stable_index_); }

std::vector<pb::Entry> RaftLog::NextCommittedToApply(uint64_t bytes_max) {
  auto out = Slice(applied_ + 1, std::min(committed_, stable_index_), bytes_max);
  if (!HasCommittedToApply()) out.clear();
  if (!out.empty()) applied_ = out.back().index();
  return out;
}

std::vector<pb::Entry> RaftLog::TakeUnstable() {
  std::vector<pb::Entry> out;
  for (LogIndex i = unstable_from_; i <= LastIndex(); ++i) out.push_back(At(i));
  unstable_from_ = LastIndex() + 1;
  return out;
}

void RaftLog::StableTo(LogIndex index, Term term) {
  // A truncation after the entries were handed out may have replaced them; only an
  // entry still carrying the same term is the one that was made durable (and then, by
  // log matching, so is every entry before it).
  if (Matches(index, term) && index > stable_index_) stable_index_ = index;
}

void RaftLog::Restore(const pb::SnapshotMetadata& metadata) {
  dropped_.DropFront(entries_, entries_.size());
  snapshot_index_ = metadata.index();
  snapshot_term_ = metadata.term();
  committed_ = snapshot_index_;
  applied_ = snapshot_index_;
  stable_index_ = snapshot_index_;
  unstable_from_ = snapshot_index_ + 1;
}

void RaftLog::CompactTo(LogIndex index) {
  if (index <= snapshot_index_) return;
  SYNOD_ASSERT(index <= applied_ && index <= stable_index_,
               "compact only applied, durable entries");
  snapshot_term_ = *TermAt(index);
  dropped_.DropFront(entries_, index - snapshot_index_);
  snapshot_index_ = index;
}

}  // namespace synod::consensus::raft
