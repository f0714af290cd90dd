// Writes: etcd's storeTxnWrite (put, deleteRange) and etcdserver's Put, DeleteRange and Txn
// appliers.
#include "base/assert.h"
#include "kv/errors.h"
#include "kv/store_internal.h"

namespace synod::kv {

// --- WriteTxn ---

WriteTxn::WriteTxn(Store& store, int64_t begin_revision, uint64_t index)
    : store_(store), begin_revision_(begin_revision), index_(index) {}

ReadSource WriteTxn::source() const {
  return ReadSource{store_.backend_.get(), &overlay_, revision()};
}

ReadSource WriteTxn::begin_source() const {
  return ReadSource{store_.backend_.get(), nullptr, begin_revision_};
}

void WriteTxn::Discard() {
  changes_ = 0;
  overlay_.clear();
  batch_.Clear();
  on_commit_.clear();
}

Status WriteTxn::Put(std::string_view key, std::string_view value, int64_t lease) {
  SYNOD_ASSERT(!overlay_.contains(key),
               "a key is written at most once per revision (the txn duplicate-key check)");
  // The key's live version before this revision, as the last applied entry left it (the
  // overlay cannot have it: asserted above): from the store's live key index, not the
  // backend.
  std::optional<Store::LiveKey> prev;
  if (auto live = store_.live_keys_.find(key); live != store_.live_keys_.end()) {
    prev = live->second;
  }
  const int64_t rev = begin_revision_ + 1;
  keys::Record record;
  record.mod_revision = rev;
  record.sub = changes_;
  record.create_revision = rev;
  record.version = 1;
  record.lease = lease;
  record.value = std::string(value);
  if (prev.has_value()) {
    record.create_revision = prev->create_revision;
    record.version = prev->version + 1;
  }
  const std::string encoded = keys::EncodeRecord(record);
  batch_.Put(keys::Current(key), encoded);
  batch_.Put(keys::History(key, rev), encoded);
  batch_.Put(keys::Revision(rev, changes_),
             keys::EncodeEvent({.is_delete = false, .key = std::string(key), .index = index_}));
  const int64_t old_lease = prev.has_value() ? prev->lease : 0;
  if (old_lease != 0 && old_lease != lease) batch_.Delete(keys::LeaseKey(old_lease, key));
  if (lease != 0 && old_lease != lease) batch_.Put(keys::LeaseKey(lease, key), "");
  overlay_.emplace(std::string(key), std::move(record));
  ++changes_;
  return Status::Ok();
}

Status WriteTxn::DeleteKey(const std::string& key, const keys::Record& old) {
  SYNOD_ASSERT(!overlay_.contains(key),
               "a key is written at most once per revision (the txn duplicate-key check)");
  const int64_t rev = begin_revision_ + 1;
  keys::Record tombstone;
  tombstone.tombstone = true;
  tombstone.mod_revision = rev;
  tombstone.sub = changes_;
  batch_.Delete(keys::Current(key));
  batch_.Put(keys::History(key, rev), keys::EncodeRecord(tombstone));
  batch_.Put(keys::Revision(rev, changes_),
             keys::EncodeEvent({.is_delete = true, .key = key, .index = index_}));
  if (old.lease != 0) batch_.Delete(keys::LeaseKey(old.lease, key));
  overlay_.emplace(key, std::nullopt);
  ++changes_;
  return Status::Ok();
}

Result<int64_t> WriteTxn::DeleteRange(const KeyRange& range,
                                      std::vector<kvpb::KeyValue>* prev_kvs) {
  auto live = RangeKeys(source(), range, /*revision=*/0, /*limit=*/0, /*count_only=*/false);
  if (!live.ok()) return live.status();
  for (const auto& kv : live.value().kvs) {
    keys::Record old;
    old.lease = kv.lease();
    Status s = DeleteKey(kv.key(), old);
    if (!s.ok()) return s;
  }
  const int64_t deleted = live.value().count;
  if (prev_kvs != nullptr) *prev_kvs = std::move(live.value().kvs);
  return deleted;
}

// --- Put, DeleteRange ---

namespace {

// etcdserver's put(): the previous version is read only when a flag needs it.
Status DoPut(WriteTxn& txn, const kvpb::PutRequest& p, kvpb::PutResponse* response) {
  std::string_view value = p.value();
  int64_t lease = p.lease();
  std::optional<keys::Record> prev;
  if (p.ignore_value() || p.ignore_lease() || p.prev_kv()) {
    auto old = GetCurrent(txn.source(), p.key());
    if (!old.ok()) return old.status();
    prev = std::move(old.value());
  }
  if ((p.ignore_value() || p.ignore_lease()) && !prev.has_value()) return ErrKeyNotFound();
  if (p.ignore_value()) value = prev->value;
  if (p.ignore_lease()) lease = prev->lease;
  if (p.prev_kv() && prev.has_value()) *response->mutable_prev_kv() = ToKeyValue(p.key(), *prev);
  Status s = txn.Put(p.key(), value, lease);
  if (!s.ok()) return s;
  response->mutable_header()->set_revision(txn.revision());
  return Status::Ok();
}

Status DoDeleteRange(WriteTxn& txn, const kvpb::DeleteRangeRequest& d,
                     kvpb::DeleteRangeResponse* response) {
  std::vector<kvpb::KeyValue> prev;
  auto deleted = txn.DeleteRange(KeyRange::Make(d.key(), d.range_end()), &prev);
  if (!deleted.ok()) return deleted.status();
  if (d.prev_kv()) {
    for (auto& kv : prev) *response->add_prev_kvs() = std::move(kv);
  }
  response->set_deleted(deleted.value());
  response->mutable_header()->set_revision(txn.revision());
  return Status::Ok();
}

// --- Txn ---

bool CompareKv(const kvpb::Compare& c, const kvpb::KeyValue& kv) {
  int result = 0;
  auto cmp = [](int64_t a, int64_t b) { return a < b ? -1 : (a > b ? 1 : 0); };
  switch (c.target()) {
    case kvpb::Compare::VALUE: {
      const int r = kv.value().compare(c.value());  // value(): "" unless the union holds one
      result = r < 0 ? -1 : (r > 0 ? 1 : 0);
      break;
    }
    case kvpb::Compare::CREATE:
      result = cmp(kv.create_revision(), c.create_revision());
      break;
    case kvpb::Compare::MOD:
      result = cmp(kv.mod_revision(), c.mod_revision());
      break;
    case kvpb::Compare::VERSION:
      result = cmp(kv.version(), c.version());
      break;
    case kvpb::Compare::LEASE:
      result = cmp(kv.lease(), c.lease());
      break;
    default:
      break;
  }
  switch (c.result()) {
    case kvpb::Compare::EQUAL:
      return result == 0;
    case kvpb::Compare::NOT_EQUAL:
      return result != 0;
    case kvpb::Compare::GREATER:
      return result > 0;
    case kvpb::Compare::LESS:
      return result < 0;
    default:
      return true;
  }
}

// etcd's applyCompare: every key of the range must satisfy it; an empty range compares as a
// zero key-value, except on VALUE, which then fails.
Result<bool> ApplyCompare(const ReadSource& source, const kvpb::Compare& c) {
  auto rr = RangeKeys(source, KeyRange::Make(c.key(), c.range_end()), 0, 0, false);
  if (!rr.ok()) return rr.status();
  const auto& kvs = rr.value().kvs;
  if (kvs.empty()) {
    if (c.target() == kvpb::Compare::VALUE) return false;
    return CompareKv(c, kvpb::KeyValue());
  }
  for (const auto& kv : kvs) {
    if (!CompareKv(c, kv)) return false;
  }
  return true;
}

// etcd's compareToPath: the outcome of every txn that will run, outer first, nested ones in
// the order they appear in the chosen branch — all evaluated on the state before the txn.
Status CompareToPath(const ReadSource& source, const kvpb::TxnRequest& t, std::vector<bool>* path) {
  bool succeeded = true;
  for (const auto& c : t.compare()) {
    auto ok = ApplyCompare(source, c);
    if (!ok.ok()) return ok.status();
    if (!ok.value()) {
      succeeded = false;
      break;
    }
  }
  path->push_back(succeeded);
  for (const auto& op : succeeded ? t.success() : t.failure()) {
    if (!op.has_request_txn()) continue;
    Status s = CompareToPath(source, op.request_txn(), path);
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

const google::protobuf::RepeatedPtrField<kvpb::RequestOp>& Branch(const kvpb::TxnRequest& t,
                                                                  bool succeeded) {
  return succeeded ? t.success() : t.failure();
}

}  // namespace

// The txn checks of etcd's checkTxn, on the state before the txn: revisions of ranges, and
// what puts need (the key for ignore_*, the lease).
class TxnChecker {
 public:
  TxnChecker(const Store& store, const ReadSource& source, int64_t compact_revision)
      : store_(store), source_(source), compact_revision_(compact_revision) {}

  Status Check(const kvpb::TxnRequest& t, const std::vector<bool>& path, size_t* pos) {
    const bool succeeded = path[(*pos)++];
    for (const auto& op : Branch(t, succeeded)) {
      Status s;
      switch (op.request_case()) {
        case kvpb::RequestOp::kRequestRange: {
          const int64_t rev = op.request_range().revision();
          if (rev == 0) break;
          if (rev > source_.current_revision) return ErrFutureRev();
          if (rev < compact_revision_) return ErrCompacted();
          break;
        }
        case kvpb::RequestOp::kRequestPut:
          s = CheckPut(op.request_put());
          break;
        case kvpb::RequestOp::kRequestTxn:
          s = Check(op.request_txn(), path, pos);
          break;
        default:
          break;
      }
      if (!s.ok()) return s;
    }
    return Status::Ok();
  }

 private:
  Status CheckPut(const kvpb::PutRequest& p) {
    if (p.ignore_value() || p.ignore_lease()) {
      auto old = GetCurrent(source_, p.key());
      if (!old.ok()) return old.status();
      if (!old.value().has_value()) return ErrKeyNotFound();
    }
    if (p.lease() != 0 && !store_.LeaseExists(p.lease())) return ErrLeaseNotFound();
    return Status::Ok();
  }

  const Store& store_;
  const ReadSource source_;
  const int64_t compact_revision_;
};

namespace {

Status ExecuteTxn(WriteTxn& txn, int64_t compact_revision, const kvpb::TxnRequest& t,
                  const std::vector<bool>& path, size_t* pos, kvpb::TxnResponse* response) {
  const bool succeeded = path[(*pos)++];
  response->set_succeeded(succeeded);
  response->mutable_header();  // nested responses carry an empty header, as in etcd
  for (const auto& op : Branch(t, succeeded)) {
    kvpb::ResponseOp* out = response->add_responses();
    Status s;
    switch (op.request_case()) {
      case kvpb::RequestOp::kRequestRange: {
        auto r = ExecuteRange(txn.source(), compact_revision, op.request_range());
        if (!r.ok()) return r.status();
        *out->mutable_response_range() = std::move(r.value());
        break;
      }
      case kvpb::RequestOp::kRequestPut:
        s = DoPut(txn, op.request_put(), out->mutable_response_put());
        break;
      case kvpb::RequestOp::kRequestDeleteRange:
        s = DoDeleteRange(txn, op.request_delete_range(), out->mutable_response_delete_range());
        break;
      case kvpb::RequestOp::kRequestTxn:
        s = ExecuteTxn(txn, compact_revision, op.request_txn(), path, pos,
                       out->mutable_response_txn());
        break;
      case kvpb::RequestOp::REQUEST_NOT_SET:
        break;
    }
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

}  // namespace

Status Store::ApplyPut(WriteTxn& txn, const kvpb::PutRequest& request,
                       kvpb::PutResponse* response) {
  if (request.lease() != 0 && !LeaseExists(request.lease())) return ErrLeaseNotFound();
  return DoPut(txn, request, response);
}

Status Store::ApplyDeleteRange(WriteTxn& txn, const kvpb::DeleteRangeRequest& request,
                               kvpb::DeleteRangeResponse* response) {
  return DoDeleteRange(txn, request, response);
}

Status Store::ApplyTxn(WriteTxn& txn, const kvpb::TxnRequest& request,
                       kvpb::TxnResponse* response) {
  std::vector<bool> path;
  Status s = CompareToPath(txn.begin_source(), request, &path);
  if (!s.ok()) return s;
  size_t pos = 0;
  s = TxnChecker(*this, txn.begin_source(), compact_revision_).Check(request, path, &pos);
  if (!s.ok()) return s;
  pos = 0;
  s = ExecuteTxn(txn, compact_revision_, request, path, &pos, response);
  if (!s.ok()) return s;
  SYNOD_ASSERT(pos == path.size(), "every compared txn was executed");
  response->mutable_header()->set_revision(txn.revision());
  return Status::Ok();
}

}  // namespace synod::kv
