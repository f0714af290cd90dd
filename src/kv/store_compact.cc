// Physical compaction: removing the history that a Compact(rev) made unreachable.
//
// Compact(C) is applied from the log at once and only records C: from then on reads below C
// fail (ErrCompacted). The removal happens here, in bounded steps, concurrently with Apply
// and reads. It walks the revision index below C in order; for each change of a key it
// removes the key's history that no read at a revision >= C can see (CompactKey), then the
// index entry. It only touches revisions < C, which nothing writes any more, so it needs no
// lock against the writer; and a tombstone is only ever removed in the same batch as every
// older version of its key, so no intermediate state exposes an old version in its place.
#include "base/assert.h"
#include "kv/store_internal.h"

namespace synod::kv {

// Removes what compaction at `target` made unreachable of `key`: every version older than
// the one a read at `target` sees, and that one too if it is a tombstone older than `target`
// (a tombstone at `target` stays: it is an event a watch from `target` must see). Older
// versions go whichever change of the key is being looked at, so a version kept by one
// compaction is removed by a later one although its index entry is gone by then.
Status Store::CompactKey(const std::string& key, int64_t target, WriteBatch* batch,
                         uint64_t* removed) {
  auto visible = GetHistory(*backend_, key, target);
  if (!visible.ok()) return visible.status();
  const auto& v = visible.value();
  if (!v.has_value()) return Status::Ok();  // already removed by an earlier step
  auto older =
      backend_->NewIterator(keys::History(key, v->mod_revision - 1), keys::HistoryKeyEnd(key));
  for (older->SeekToFirst(); older->Valid(); older->Next()) {
    batch->Delete(std::string(older->key()));
    ++*removed;
  }
  if (!older->status().ok()) return older->status();
  if (v->tombstone && v->mod_revision < target) {
    batch->Delete(keys::History(key, v->mod_revision));
    ++*removed;
  }
  return Status::Ok();
}

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
  auto it = backend_->NewIterator(lower, keys::Revision(target, 0), ScanKind::kOnePass);
  WriteBatch batch;
  std::string last;
  int64_t main = 0, sub = 0;
  keys::EventEntry event;
  for (it->SeekToFirst(); it->Valid() && progress.removed < entries_max; it->Next()) {
    if (!keys::ParseRevision(it->key(), &main, &sub) || !keys::DecodeEvent(it->value(), &event)) {
      return Status(Code::kCorruption, "kv: malformed revision index entry");
    }
    Status s = CompactKey(event.key, target, &batch, &progress.removed);
    if (!s.ok()) return s;
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
