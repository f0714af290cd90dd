#include "consensus/paxos/paxos_log.h"

#include <algorithm>

#include "base/assert.h"

namespace synod::consensus::paxos {

PaxosLog::PaxosLog(const DurableState& durable) {
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
  SYNOD_ASSERT(committed_ <= LastIndex(), "durable chosen index beyond the durable log");
  applied_ = snapshot_index_;
}

const pb::Entry* PaxosLog::Find(LogIndex index) const {
  if (index <= snapshot_index_ || index > LastIndex()) return nullptr;
  return &entries_[index - snapshot_index_ - 1];
}

const pb::Entry& PaxosLog::At(LogIndex index) const {
  const pb::Entry* e = Find(index);
  SYNOD_ASSERT(e != nullptr, "slot out of the log");
  return *e;
}

std::optional<Term> PaxosLog::TermAt(LogIndex index) const {
  if (index == snapshot_index_) return snapshot_term_;
  const pb::Entry* e = Find(index);
  if (e == nullptr) return std::nullopt;
  return e->term();
}

void PaxosLog::Write(pb::Entry entry) {
  const LogIndex index = entry.index();
  SYNOD_ASSERT(index > snapshot_index_ && index <= LastIndex() + 1,
               "a write must keep the log contiguous");
  if (index == LastIndex() + 1) {
    entries_.push_back(std::move(entry));
  } else {
    entries_[index - snapshot_index_ - 1] = std::move(entry);
    stable_index_ = std::min(stable_index_, index - 1);
  }
  unstable_from_ = std::min(unstable_from_, index);
}

void PaxosLog::TruncateFrom(LogIndex index) {
  if (index > LastIndex()) return;
  SYNOD_ASSERT(index > snapshot_index_, "cannot truncate into the snapshot");
  entries_.resize(index - snapshot_index_ - 1);
  committed_ = std::min(committed_, LastIndex());
  stable_index_ = std::min(stable_index_, LastIndex());
  unstable_from_ = std::min(unstable_from_, index);
}

std::vector<pb::Entry> PaxosLog::Slice(LogIndex lo, LogIndex hi, uint64_t bytes_max) const {
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

uint64_t PaxosLog::BytesOf(LogIndex lo, LogIndex hi) const {
  uint64_t bytes = 0;
  for (LogIndex i = std::max(lo, FirstIndex()); i <= std::min(hi, LastIndex()); ++i) {
    bytes += At(i).data().size();
  }
  return bytes;
}

void PaxosLog::CommitTo(LogIndex index) {
  if (index <= committed_) return;  // the chosen index never regresses
  SYNOD_ASSERT(index <= LastIndex(), "chosen index beyond the last entry");
  committed_ = index;
}

bool PaxosLog::HasCommittedToApply() const {
  return applied_ < std::min(committed_, stable_index_);
}

std::vector<pb::Entry> PaxosLog::NextCommittedToApply(uint64_t bytes_max) {
  if (!HasCommittedToApply()) return {};
  auto out = Slice(applied_ + 1, std::min(committed_, stable_index_), bytes_max);
  if (!out.empty()) applied_ = out.back().index();
  return out;
}

std::vector<pb::Entry> PaxosLog::TakeUnstable() {
  std::vector<pb::Entry> out;
  for (LogIndex i = unstable_from_; i <= LastIndex(); ++i) out.push_back(At(i));
  unstable_from_ = LastIndex() + 1;
  return out;
}

void PaxosLog::StableTo(LogIndex handed_last) {
  // A slot written again after the entries were handed out is durable only in its old
  // form: stop below it (it is handed out with the next Ready).
  const LogIndex durable = std::min(handed_last, unstable_from_ - 1);
  stable_index_ = std::max(stable_index_, std::min(durable, LastIndex()));
}

void PaxosLog::Restore(const pb::SnapshotMetadata& metadata) {
  const LogIndex index = metadata.index();
  SYNOD_ASSERT(index > snapshot_index_, "a snapshot must move the log forward");
  dropped_.DropFront(entries_, index - snapshot_index_);  // all of them if index >= LastIndex()
  snapshot_index_ = index;
  snapshot_term_ = metadata.term();
  committed_ = std::max(committed_, index);
  applied_ = index;
  stable_index_ = index;
  unstable_from_ = index + 1;  // the kept suffix is written again after the snapshot
}

void PaxosLog::CompactTo(LogIndex index) {
  if (index <= snapshot_index_) return;
  SYNOD_ASSERT(index <= applied_ && index <= stable_index_,
               "compact only applied, durable entries");
  snapshot_term_ = *TermAt(index);
  dropped_.DropFront(entries_, index - snapshot_index_);
  snapshot_index_ = index;
}

}  // namespace synod::consensus::paxos
