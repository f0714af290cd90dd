// The watch history: every change since the compaction revision, from the revision index.
#include "kv/errors.h"
#include "kv/store_internal.h"

namespace synod::kv {

Result<WatchEvents> Store::EventsSince(int64_t start_revision, std::string_view key,
                                       std::string_view range_end, bool prev_kv,
                                       size_t events_max) const {
  auto view = TakeView();
  if (!view.ok()) return view.status();
  const View& v = view.value();
  if (start_revision < v.compact_revision) return ErrCompacted();
  start_revision = std::max<int64_t>(start_revision, 1);
  const KeyRange range = KeyRange::Make(key, range_end);
  WatchEvents out;
  out.next_revision = std::max(start_revision, v.revision + 1);
  if (start_revision > v.revision) return out;

  auto it =
      v.reader->NewIterator(keys::Revision(start_revision, 0), keys::Revision(v.revision + 1, 0));
  int64_t main = 0, sub = 0, last_main = -1;
  keys::EventEntry entry;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (!keys::ParseRevision(it->key(), &main, &sub) || !keys::DecodeEvent(it->value(), &entry)) {
      return Status(Code::kCorruption, "kv: malformed revision index entry");
    }
    if (main != last_main && out.events.size() >= events_max) {
      out.next_revision = main;  // never split a revision
      return out;
    }
    last_main = main;
    if (!range.Contains(entry.key)) continue;
    kvpb::Event event;
    if (entry.is_delete) {
      event.set_type(kvpb::Event::DELETE);
      event.mutable_kv()->set_key(entry.key);
      event.mutable_kv()->set_mod_revision(main);
    } else {
      auto record = GetHistory(*v.reader, entry.key, main);
      if (!record.ok()) return record.status();
      const auto& r = record.value();
      if (!r.has_value() || r->tombstone || r->mod_revision != main) {
        return Status(Code::kCorruption, "kv: the history misses a version the index names");
      }
      event.set_type(kvpb::Event::PUT);
      *event.mutable_kv() = ToKeyValue(entry.key, *r);
    }
    // As etcd: the previous version is read at revision - 1, which must not be compacted.
    if (prev_kv && main - 1 >= v.compact_revision) {
      auto prev = GetHistory(*v.reader, entry.key, main - 1);
      if (!prev.ok()) return prev.status();
      if (prev.value().has_value() && !prev.value()->tombstone) {
        *event.mutable_prev_kv() = ToKeyValue(entry.key, *prev.value());
      }
    }
    out.events.push_back(std::move(event));
  }
  if (!it->status().ok()) return it->status();
  return out;
}

}  // namespace synod::kv
