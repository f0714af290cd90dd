// Reading keys: etcd's mvcc rangeKeys (RangeKeys) and etcdserver's executeRange.
#include <algorithm>

#include "kv/errors.h"
#include "kv/store_internal.h"

namespace synod::kv {
namespace {

Status CorruptEntry(std::string_view what, std::string_view key) {
  return Status(Code::kCorruption, "kv: malformed " + std::string(what) + " entry " +
                                       std::to_string(key.size()) + " bytes long");
}

// Counts the last key-value taken; false once the result holds more than it may.
bool Account(RangeKeysResult* out) {
  const kvpb::KeyValue& kv = out->kvs.back();
  out->bytes += kv.key().size() + kv.value().size();
  return out->bytes_max == 0 || out->bytes <= out->bytes_max;
}

// Live keys at the current revision: the current table merged with the overlay.
Status RangeCurrent(const ReadSource& source, const KeyRange& range, int64_t limit, bool count_only,
                    RangeKeysResult* out) {
  bool too_large = false;
  auto take = [&](std::string_view key, const keys::Record& record) {
    ++out->count;
    if (!count_only && (limit <= 0 || static_cast<int64_t>(out->kvs.size()) < limit)) {
      out->kvs.push_back(ToKeyValue(key, record));
      too_large = too_large || !Account(out);
    }
  };
  const std::string lower = keys::Current(range.begin);
  const std::string upper = keys::CurrentEnd(range.end);
  auto it = source.reader->NewIterator(lower, upper);
  it->Seek(lower);
  const Overlay* overlay = source.overlay;
  Overlay::const_iterator ov, ov_end;
  if (overlay != nullptr) {
    ov = overlay->lower_bound(range.begin);
    ov_end = range.end.empty() ? overlay->end() : overlay->lower_bound(range.end);
  }
  keys::Record record;
  while (true) {
    const bool db_valid = it->Valid();
    const bool ov_valid = overlay != nullptr && ov != ov_end;
    if (!db_valid && !ov_valid) break;
    std::string_view db_key;
    if (db_valid) db_key = it->key().substr(1);
    if (ov_valid && (!db_valid || std::string_view(ov->first) <= db_key)) {
      // The overlay decides this key (and hides the backend's version of it).
      if (db_valid && std::string_view(ov->first) == db_key) it->Next();
      if (ov->second.has_value()) take(ov->first, *ov->second);
      if (too_large) return ErrRangeTooLarge(out->bytes_max);
      ++ov;
      continue;
    }
    if (count_only || (limit > 0 && static_cast<int64_t>(out->kvs.size()) >= limit)) {
      ++out->count;  // past the limit only the count matters: no need to decode
    } else {
      if (!keys::DecodeRecord(it->value(), &record)) return CorruptEntry("current", db_key);
      take(db_key, record);
      if (too_large) return ErrRangeTooLarge(out->bytes_max);
    }
    it->Next();
  }
  return it->status();
}

// Live keys at a past revision: for each key of the range, the newest history entry at or
// below `revision` (a put: live; a tombstone or nothing: absent).
Status RangeHistory(const BackendReader& reader, const KeyRange& range, int64_t revision,
                    int64_t limit, bool count_only, RangeKeysResult* out) {
  const std::string lower = keys::HistoryKeyBegin(range.begin);
  const std::string upper = keys::HistoryEnd(range.end);
  auto it = reader.NewIterator(lower, upper);
  it->Seek(lower);
  std::string key;
  int64_t rev = 0;
  keys::Record record;
  while (it->Valid()) {
    if (!keys::ParseHistory(it->key(), &key, &rev)) return CorruptEntry("history", it->key());
    if (rev > revision) {
      // Newer than asked: jump to this key's newest version <= revision.
      it->Seek(keys::History(key, revision));
      if (!it->Valid()) break;
      std::string found;
      if (!keys::ParseHistory(it->key(), &found, &rev)) {
        return CorruptEntry("history", it->key());
      }
      if (found != key) continue;  // no version at or below `revision`: next key
    }
    const auto tombstone = keys::IsTombstone(it->value());
    if (!tombstone.has_value()) return CorruptEntry("history", it->key());
    if (!*tombstone) {
      ++out->count;
      if (!count_only && (limit <= 0 || static_cast<int64_t>(out->kvs.size()) < limit)) {
        if (!keys::DecodeRecord(it->value(), &record)) {
          return CorruptEntry("history", it->key());
        }
        out->kvs.push_back(ToKeyValue(key, record));
        if (!Account(out)) return ErrRangeTooLarge(out->bytes_max);
      }
    }
    // On to the next key: one step usually gets there (a key with a single version).
    const std::string key_begin = keys::HistoryKeyBegin(key);
    it->Next();
    if (it->Valid() && it->key().starts_with(key_begin)) it->Seek(keys::HistoryKeyEnd(key));
  }
  return it->status();
}

template <typename Get>
void Prune(std::vector<kvpb::KeyValue>* kvs, Get get, bool (*drop)(int64_t, int64_t),
           int64_t bound) {
  kvs->erase(std::remove_if(kvs->begin(), kvs->end(),
                            [&](const kvpb::KeyValue& kv) { return drop(get(kv), bound); }),
             kvs->end());
}

}  // namespace

KeyRange KeyRange::Make(std::string_view key, std::string_view range_end) {
  KeyRange r;
  r.begin = std::string(key);
  if (range_end.empty()) {
    r.single = true;
  } else if (range_end != std::string_view("\0", 1)) {
    r.end = std::string(range_end);
  }
  return r;
}

bool KeyRange::Contains(std::string_view key) const {
  if (single) return key == begin;
  return key >= std::string_view(begin) && (end.empty() || key < std::string_view(end));
}

kvpb::KeyValue ToKeyValue(std::string_view key, const keys::Record& record) {
  kvpb::KeyValue kv;
  kv.set_key(std::string(key));
  kv.set_create_revision(record.create_revision);
  kv.set_mod_revision(record.mod_revision);
  kv.set_version(record.version);
  kv.set_value(record.value);
  kv.set_lease(record.lease);
  return kv;
}

Result<std::optional<keys::Record>> GetCurrent(const ReadSource& source, std::string_view key) {
  if (source.overlay != nullptr) {
    auto it = source.overlay->find(key);
    if (it != source.overlay->end()) return it->second;
  }
  auto value = source.reader->Get(keys::Current(key));
  if (!value.ok()) return value.status();
  if (!value.value().has_value()) return std::optional<keys::Record>();
  keys::Record record;
  if (!keys::DecodeRecord(*value.value(), &record)) return CorruptEntry("current", key);
  return std::optional<keys::Record>(std::move(record));
}

Result<std::optional<keys::Record>> GetHistory(const BackendReader& reader, std::string_view key,
                                               int64_t revision) {
  auto it = reader.NewIterator(keys::HistoryKeyBegin(key), keys::HistoryKeyEnd(key));
  it->Seek(keys::History(key, revision));
  if (!it->Valid()) {
    if (!it->status().ok()) return it->status();
    return std::optional<keys::Record>();
  }
  keys::Record record;
  if (!keys::DecodeRecord(it->value(), &record)) return CorruptEntry("history", key);
  return std::optional<keys::Record>(std::move(record));
}

Result<RangeKeysResult> RangeKeys(const ReadSource& source, const KeyRange& range, int64_t revision,
                                  int64_t limit, bool count_only, uint64_t bytes_max) {
  RangeKeysResult out;
  out.bytes_max = bytes_max;
  const bool current = revision <= 0 || revision == source.current_revision;
  if (range.single) {
    auto record = current ? GetCurrent(source, range.begin)
                          : GetHistory(*source.reader, range.begin, revision);
    if (!record.ok()) return record.status();
    const auto& r = record.value();
    if (r.has_value() && !r->tombstone) {
      out.count = 1;
      if (!count_only) out.kvs.push_back(ToKeyValue(range.begin, *r));
    }
    return out;
  }
  Status s = current ? RangeCurrent(source, range, limit, count_only, &out)
                     : RangeHistory(*source.reader, range, revision, limit, count_only, &out);
  if (!s.ok()) return s;
  return out;
}

Result<kvpb::RangeResponse> ExecuteRange(const ReadSource& source, int64_t compact_revision,
                                         const kvpb::RangeRequest& r, uint64_t bytes_max) {
  // mvcc's rangeKeys checks, in its order.
  if (r.revision() > source.current_revision) return ErrFutureRev();
  if (r.revision() > 0 && r.revision() < compact_revision) return ErrCompacted();

  int64_t limit = r.limit();
  if (r.sort_order() != kvpb::RangeRequest::NONE || r.min_mod_revision() != 0 ||
      r.max_mod_revision() != 0 || r.min_create_revision() != 0 || r.max_create_revision() != 0) {
    limit = 0;  // fetch everything; sort and truncate afterwards
  }
  if (limit > 0) ++limit;  // one extra for `more`

  auto rr = RangeKeys(source, KeyRange::Make(r.key(), r.range_end()), r.revision(), limit,
                      r.count_only(), bytes_max);
  if (!rr.ok()) return rr.status();
  std::vector<kvpb::KeyValue>& kvs = rr.value().kvs;

  auto greater = [](int64_t v, int64_t bound) { return v > bound; };
  auto less = [](int64_t v, int64_t bound) { return v < bound; };
  auto mod = [](const kvpb::KeyValue& kv) { return kv.mod_revision(); };
  auto create = [](const kvpb::KeyValue& kv) { return kv.create_revision(); };
  if (r.max_mod_revision() != 0) Prune(&kvs, mod, +greater, r.max_mod_revision());
  if (r.min_mod_revision() != 0) Prune(&kvs, mod, +less, r.min_mod_revision());
  if (r.max_create_revision() != 0) Prune(&kvs, create, +greater, r.max_create_revision());
  if (r.min_create_revision() != 0) Prune(&kvs, create, +less, r.min_create_revision());

  auto order = r.sort_order();
  if (r.sort_target() != kvpb::RangeRequest::KEY && order == kvpb::RangeRequest::NONE) {
    order = kvpb::RangeRequest::ASCEND;  // a non-key target sorts ascending by default
  } else if (r.sort_target() == kvpb::RangeRequest::KEY && order == kvpb::RangeRequest::ASCEND) {
    order = kvpb::RangeRequest::NONE;  // already in key order
  }
  if (order != kvpb::RangeRequest::NONE) {
    // Stable, so that equal targets stay in key order (etcd's sort.Sort is not stable; any
    // order of ties is etcd-compatible, this one is deterministic).
    auto by = [&](const kvpb::KeyValue& a, const kvpb::KeyValue& b) {
      switch (r.sort_target()) {
        case kvpb::RangeRequest::VERSION:
          return a.version() < b.version();
        case kvpb::RangeRequest::CREATE:
          return a.create_revision() < b.create_revision();
        case kvpb::RangeRequest::MOD:
          return a.mod_revision() < b.mod_revision();
        case kvpb::RangeRequest::VALUE:
          return a.value() < b.value();
        default:
          return a.key() < b.key();
      }
    };
    if (order == kvpb::RangeRequest::DESCEND) {
      std::stable_sort(kvs.begin(), kvs.end(),
                       [&](const kvpb::KeyValue& a, const kvpb::KeyValue& b) { return by(b, a); });
    } else {
      std::stable_sort(kvs.begin(), kvs.end(), by);
    }
  }

  kvpb::RangeResponse response;
  if (r.limit() > 0 && static_cast<int64_t>(kvs.size()) > r.limit()) {
    kvs.resize(r.limit());
    response.set_more(true);
  }
  response.mutable_header()->set_revision(source.current_revision);
  response.set_count(rr.value().count);
  response.mutable_kvs()->Reserve(static_cast<int>(kvs.size()));
  for (auto& kv : kvs) {
    if (r.keys_only()) kv.clear_value();
    *response.add_kvs() = std::move(kv);
  }
  return response;
}

}  // namespace synod::kv
