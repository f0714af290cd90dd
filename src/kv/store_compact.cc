// Physical compaction: removing the history that a Compact(rev) made unreachable.
//
// Compact(C) is applied from the log at once and only records C: from then on reads below C
// fail (ErrCompacted). The removal happens here, in bounded steps, concurrently with Apply
// and reads. It walks the revision index below C in order; for each change (key, m) it
// removes the history entry unless it is the version a read at C sees (the newest at or
// below C, and a put), and removes the index entry. What it removes is never visible to a
// read at a revision >= C, and it only touches revisions < C, which nothing writes any more —
// so it needs no lock against the writer. Entries are removed oldest first, so no
// intermediate state can expose an old version in place of a removed newer tombstone.
#include "base/assert.h"
#include "kv/store_internal.h"

namespace synod::kv {

Result<CompactionProgress> Store::CompactStep(size_t entries_max) {
  SYNOD_ASSERT(entries_max > 0, "a compaction step removes at least one entry");
  std::lock_guard compact_lock(compact_mu_);
  CompactionProgress progress;
  int64_t done = 0;
  {
    std::lock_guard lock(mu_);
    if (needs_snapshot_) {
      return Status(Code::kUnavailable, "kv: the store needs a snapshot");
    }
    progress.target_revision = compact_revision_;
    done = compact_done_;
  }
  const int64_t target = progress.target_revision;
  if (target <= done || target <= 0) {
    progress.done = true;
    return progress;
  }
  const std::string lower = compact_cursor_.empty() ? keys::Revision(0, 0) : compact_cursor_;
  auto it = backend_->NewIterator(lower, keys::Revision(target, 0));
  WriteBatch batch;
  std::string last;
  int64_t main = 0, sub = 0;
  keys::EventEntry event;
  for (it->SeekToFirst(); it->Valid() && progress.removed < entries_max; it->Next()) {
    if (!keys::ParseRevision(it->key(), &main, &sub) || !keys::DecodeEvent(it->value(), &event)) {
      return Status(Code::kCorruption, "kv: malformed revision index entry");
    }
    auto visible = GetHistory(*backend_, event.key, target);
    if (!visible.ok()) return visible.status();
    const auto& v = visible.value();
    const bool keep = v.has_value() && !v->tombstone && v->mod_revision == main;
    if (!keep) {
      batch.Delete(keys::History(event.key, main));
      ++progress.removed;
    }
    batch.Delete(std::string(it->key()));
    ++progress.removed;
    last = std::string(it->key());
  }
  if (!it->status().ok()) return it->status();
  progress.done = !it->Valid();
  if (progress.done) {
    batch.Put(std::string(keys::kMetaCompactDone), keys::EncodeU64(static_cast<uint64_t>(target)));
  }
  if (!batch.empty()) {
    Status s = backend_->Write(batch, /*sync=*/false);
    if (!s.ok()) return s;
  }
  // The next step starts after the last entry removed (skipping the deletion markers left
  // behind is what makes a step cost what it removes, not what was removed before).
  if (!last.empty()) compact_cursor_ = last + '\0';
  if (progress.done) {
    std::lock_guard lock(mu_);
    compact_done_ = target;
  }
  return progress;
}

bool Store::CompactionPending() const {
  std::lock_guard lock(mu_);
  return compact_revision_ > 0 && compact_done_ < compact_revision_;
}

}  // namespace synod::kv
