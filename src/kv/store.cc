// Store: opening, the apply loop's entry points, reads and maintenance.
#include "kv/store.h"

#include <algorithm>
#include <functional>

#include "base/assert.h"
#include "kv/errors.h"
#include "kv/store_internal.h"
#include "storage/crc32c.h"

namespace synod::kv {
namespace {

constexpr int64_t kKvOverhead = 256;    // etcd's quota estimate of a key's metadata
constexpr int64_t kLeaseOverhead = 64;  // ... and of a lease

int64_t CostOps(const google::protobuf::RepeatedPtrField<kvpb::RequestOp>& ops);

int64_t CostTxn(const kvpb::TxnRequest& t) {
  return std::max(CostOps(t.success()), CostOps(t.failure()));
}

// etcd counts only the puts directly in a branch; synod also counts nested txns' puts, so a
// txn cannot slip writes past the NOSPACE alarm by nesting them.
int64_t CostOps(const google::protobuf::RepeatedPtrField<kvpb::RequestOp>& ops) {
  int64_t cost = 0;
  for (const auto& op : ops) {
    if (op.has_request_put()) {
      cost += kKvOverhead +
              static_cast<int64_t>(op.request_put().key().size() + op.request_put().value().size());
    } else if (op.has_request_txn()) {
      cost += CostTxn(op.request_txn());
    }
  }
  return cost;
}

Status NeedsSnapshotError() {
  return Status(Code::kUnavailable,
                "kv: a snapshot install was interrupted; the store needs a snapshot");
}

// An error from the backend (or a malformed entry in it), as opposed to a request's outcome.
bool IsBackendFailure(const Status& s) {
  return !s.ok() && (s.code() == Code::kIoError ||
                     (s.code() == Code::kCorruption && s.message() != msg::kCorrupt));
}

Result<std::optional<uint64_t>> ReadMeta(const BackendReader& reader, std::string_view key) {
  auto value = reader.Get(key);
  if (!value.ok()) return value.status();
  if (!value.value().has_value()) return std::optional<uint64_t>();
  auto v = keys::DecodeU64(*value.value());
  if (!v.has_value()) {
    return Status(Code::kCorruption, "kv: malformed meta entry " + std::string(key));
  }
  return std::optional<uint64_t>(*v);
}

}  // namespace

Store::Store(std::unique_ptr<Backend> backend, StoreOptions options)
    : backend_(std::move(backend)), options_(options) {}

Store::~Store() = default;

Result<std::unique_ptr<Store>> Store::Open(std::unique_ptr<Backend> backend, StoreOptions options) {
  SYNOD_ASSERT(backend != nullptr, "a store needs a backend");
  std::unique_ptr<Store> store(new Store(std::move(backend), options));
  Status s = store->LoadState();
  if (!s.ok()) return s;
  return store;
}

// Reads the persistent state into memory: after Open and after a snapshot install.
Status Store::LoadState() {
  auto installing = backend_->Get(keys::kMetaInstalling);
  if (!installing.ok()) return installing.status();
  std::lock_guard lock(mu_);
  std::lock_guard lease_lock(lease_mu_);
  applied_index_ = 0;
  revision_ = 1;
  compact_revision_ = -1;
  compact_done_ = -1;
  alarms_.clear();
  leases_.clear();
  live_keys_.clear();
  needs_snapshot_ = installing.value().has_value();
  if (needs_snapshot_) return Status::Ok();

  auto format = ReadMeta(*backend_, keys::kMetaFormat);
  if (!format.ok()) return format.status();
  if (format.value().has_value() && *format.value() != 1 &&
      *format.value() != keys::kFormatVersion) {
    return Status(Code::kCorruption, "kv: unknown store format " + std::to_string(*format.value()));
  }
  if (format.value() != keys::kFormatVersion) {
    // A new store, or one of format 1, which this code reads as it is: from now on it is
    // written in the current format, so an older binary must refuse it.
    WriteBatch batch;
    batch.Put(std::string(keys::kMetaFormat), keys::EncodeU64(keys::kFormatVersion));
    Status s = backend_->Write(batch, /*sync=*/true);
    if (!s.ok()) return s;
  }
  struct Field {
    std::string_view key;
    std::function<void(uint64_t)> set;
  };
  const Field fields[] = {
      {keys::kMetaAppliedIndex, [&](uint64_t v) { applied_index_ = v; }},
      {keys::kMetaRevision, [&](uint64_t v) { revision_ = static_cast<int64_t>(v); }},
      {keys::kMetaCompactRevision,
       [&](uint64_t v) { compact_revision_ = static_cast<int64_t>(v); }},
      {keys::kMetaCompactDone, [&](uint64_t v) { compact_done_ = static_cast<int64_t>(v); }},
  };
  for (const auto& field : fields) {
    auto v = ReadMeta(*backend_, field.key);
    if (!v.ok()) return v.status();
    if (v.value().has_value()) field.set(*v.value());
  }
  // Entries that made a revision wrote no meta: the newest revision index entry has the
  // revision and the index of the last of them (format 1 entries have index 0 and kept
  // the meta up to date).
  const std::string revisions_begin(1, keys::kRevision);
  auto newest = backend_->NewIterator(revisions_begin, keys::PrefixEnd(revisions_begin));
  newest->SeekToLast();
  if (newest->Valid()) {
    int64_t main = 0, sub = 0;
    keys::EventEntry event;
    if (!keys::ParseRevision(newest->key(), &main, &sub) ||
        !keys::DecodeEvent(newest->value(), &event)) {
      return Status(Code::kCorruption, "kv: malformed revision index entry");
    }
    revision_ = std::max(revision_, main);
    applied_index_ = std::max(applied_index_, event.index);
  } else if (!newest->status().ok()) {
    return newest->status();
  }

  const std::string current_begin(1, keys::kCurrent);
  auto current =
      backend_->NewIterator(current_begin, keys::PrefixEnd(current_begin), ScanKind::kOnePass);
  keys::Record record;
  for (current->SeekToFirst(); current->Valid(); current->Next()) {
    if (!keys::DecodeRecord(current->value(), &record)) {
      return Status(Code::kCorruption, "kv: malformed current entry");
    }
    live_keys_.emplace(current->key().substr(1), LiveKey{.create_revision = record.create_revision,
                                                         .version = record.version,
                                                         .lease = record.lease});
  }
  if (!current->status().ok()) return current->status();

  const std::string alarm_begin(1, keys::kAlarm);
  auto it = backend_->NewIterator(alarm_begin, keys::PrefixEnd(alarm_begin));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (it->key().size() != 10) return Status(Code::kCorruption, "kv: malformed alarm entry");
    alarms_.emplace(keys::GetBig64(it->key().substr(1)), static_cast<uint8_t>(it->key()[9]));
  }
  if (!it->status().ok()) return it->status();

  const std::string lease_begin(1, keys::kLease);
  it = backend_->NewIterator(lease_begin, keys::PrefixEnd(lease_begin));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    keys::LeaseRecord record;
    if (it->key().size() != 9 || !keys::DecodeLease(it->value(), &record)) {
      return Status(Code::kCorruption, "kv: malformed lease entry");
    }
    // Restarted leases do not expire until this node is promoted (etcd: "forever").
    leases_[static_cast<int64_t>(keys::GetBig64(it->key().substr(1)))] =
        LeaseState{.ttl_s = record.ttl_s, .expiry_ms = std::nullopt};
  }
  return it->status();
}

Status Store::CheckUsable() const {
  std::lock_guard lock(mu_);
  if (needs_snapshot_) return NeedsSnapshotError();
  return Status::Ok();
}

Result<Store::View> Store::TakeView() const {
  std::lock_guard lock(mu_);
  if (needs_snapshot_) return NeedsSnapshotError();
  return View{.reader = backend_->View(),
              .revision = revision_,
              .compact_revision = compact_revision_,
              .applied_index = applied_index_};
}

Status Store::Validate(const kvpb::Request& request) const {
  return ValidateRequest(options_, request);
}

int64_t Store::QuotaCost(const kvpb::Request& request) {
  switch (request.request_case()) {
    case kvpb::Request::kPut:
      return kKvOverhead +
             static_cast<int64_t>(request.put().key().size() + request.put().value().size());
    case kvpb::Request::kTxn:
      return CostTxn(request.txn());
    case kvpb::Request::kLeaseGrant:
      return kLeaseOverhead;
    default:
      return 0;
  }
}

bool Store::QuotaAvailable(const kvpb::Request& request) const {
  const int64_t cost = QuotaCost(request);
  if (cost == 0) return true;  // requests that do not grow the backend always pass
  return SizeBytes() + static_cast<uint64_t>(cost) < options_.quota_bytes;
}

bool Store::AlarmActive(kvpb::AlarmType type) const {
  std::lock_guard lock(mu_);
  for (const auto& [member, alarm] : alarms_) {
    if (alarm == type) return true;
  }
  return false;
}

// The etcd appliers: CORRUPT refuses every kv request (applierV3Corrupt), NOSPACE refuses
// what grows the backend (applierV3Capped); Alarm requests always go through.
Status Store::ApplyRequest(WriteTxn& txn, const kvpb::Request& request, uint64_t index,
                           uint64_t now_ms, kvpb::Response* response) {
  const auto kind = request.request_case();
  if (kind != kvpb::Request::kAlarm && AlarmActive(kvpb::CORRUPT)) return ErrCorrupt();
  const bool capped = AlarmActive(kvpb::NOSPACE);
  switch (kind) {
    case kvpb::Request::kRange: {
      auto r = ExecuteRange(txn.source(), compact_revision_, request.range());
      if (!r.ok()) return r.status();
      *response->mutable_range() = std::move(r.value());
      return Status::Ok();
    }
    case kvpb::Request::kPut:
      if (capped) return ErrNoSpace();
      return ApplyPut(txn, request.put(), response->mutable_put());
    case kvpb::Request::kDeleteRange:
      return ApplyDeleteRange(txn, request.delete_range(), response->mutable_delete_range());
    case kvpb::Request::kTxn:
      if (capped && QuotaCost(request) > 0) return ErrNoSpace();
      return ApplyTxn(txn, request.txn(), response->mutable_txn());
    case kvpb::Request::kCompaction:
      return ApplyCompaction(txn, request.compaction(), response->mutable_compaction());
    case kvpb::Request::kLeaseGrant:
      if (capped) return ErrNoSpace();
      return ApplyLeaseGrant(txn, request.lease_grant(), index, now_ms,
                             response->mutable_lease_grant());
    case kvpb::Request::kLeaseRevoke:
      return ApplyLeaseRevoke(txn, request.lease_revoke(), response->mutable_lease_revoke());
    case kvpb::Request::kAlarm:
      return ApplyAlarm(txn, request.alarm(), response->mutable_alarm());
    case kvpb::Request::REQUEST_NOT_SET:
      break;
  }
  return Status(Code::kInvalidArgument, "kv: empty request");
}

Result<ApplyResult> Store::Apply(uint64_t index, const kvpb::Request& request, uint64_t now_ms) {
  std::lock_guard apply_lock(apply_mu_);
  Status usable = CheckUsable();
  if (!usable.ok()) return usable;
  ApplyResult out;
  if (index <= applied_index_) {  // applied_index_ only changes under apply_mu_
    out.skipped = true;
    return out;
  }
  WriteTxn txn(*this, revision_, index);
  Status s = ValidateRequest(options_, request);
  if (s.ok()) s = ApplyRequest(txn, request, index, now_ms, &out.response);
  if (IsBackendFailure(s)) return s;
  if (!s.ok()) {
    out.status = s;
    out.response.Clear();
    txn.Discard();
  }
  // An entry that made a revision recorded its index with its changes (LoadState reads
  // both back from the newest revision index entry): two meta records fewer per write.
  if (!txn.changed()) {
    txn.batch().Put(std::string(keys::kMetaAppliedIndex), keys::EncodeU64(index));
  }
  {
    std::lock_guard lock(mu_);  // readers see the batch and its revision together
    Status w = backend_->Write(txn.batch(), options_.sync);
    if (!w.ok()) return w;
    applied_index_ = index;
    revision_ = txn.revision();
    for (auto& fn : txn.on_commit()) fn();
  }
  // The live key index is the writer's alone: updated outside the readers' lock.
  for (auto& [key, record] : txn.overlay()) {
    if (record.has_value()) {
      live_keys_.insert_or_assign(key, LiveKey{.create_revision = record->create_revision,
                                               .version = record->version,
                                               .lease = record->lease});
    } else {
      live_keys_.erase(key);
    }
  }
  return out;
}

Result<ApplyResult> Store::ApplyBytes(uint64_t index, std::string_view bytes, uint64_t now_ms) {
  kvpb::Request request;
  if (!request.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    request.Clear();  // applied as an empty request: an InvalidArgument outcome everywhere
  }
  return Apply(index, request, now_ms);
}

Status Store::MarkApplied(uint64_t index) {
  std::lock_guard apply_lock(apply_mu_);
  Status usable = CheckUsable();
  if (!usable.ok()) return usable;
  if (index <= applied_index_) return Status::Ok();
  WriteBatch batch;
  batch.Put(std::string(keys::kMetaAppliedIndex), keys::EncodeU64(index));
  std::lock_guard lock(mu_);
  Status w = backend_->Write(batch, options_.sync);
  if (!w.ok()) return w;
  applied_index_ = index;
  return Status::Ok();
}

Result<kvpb::RangeResponse> Store::Range(const kvpb::RangeRequest& request) const {
  if (request.key().empty()) return ErrEmptyKey();
  auto view = TakeView();
  if (!view.ok()) return view.status();
  const View& v = view.value();
  return ExecuteRange(ReadSource{v.reader.get(), nullptr, v.revision}, v.compact_revision, request,
                      options_.range_bytes_max);
}

uint32_t Store::ExtendKeyValueHash(uint32_t crc, const kvpb::KeyValue& kv) {
  std::string record;
  auto fixed64 = [&record](uint64_t v) {
    for (int i = 0; i < 8; ++i) record.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  fixed64(kv.key().size());
  record += kv.key();
  fixed64(kv.value().size());
  record += kv.value();
  fixed64(static_cast<uint64_t>(kv.create_revision()));
  fixed64(static_cast<uint64_t>(kv.mod_revision()));
  fixed64(static_cast<uint64_t>(kv.version()));
  fixed64(static_cast<uint64_t>(kv.lease()));
  return storage::Crc32c(crc, record.data(), record.size());
}

int64_t Store::Revision() const {
  std::lock_guard lock(mu_);
  return revision_;
}

int64_t Store::CompactRevision() const {
  std::lock_guard lock(mu_);
  return compact_revision_;
}

uint64_t Store::AppliedIndex() const {
  std::lock_guard lock(mu_);
  return applied_index_;
}

bool Store::NeedsSnapshot() const {
  std::lock_guard lock(mu_);
  return needs_snapshot_;
}

uint64_t Store::SizeBytes() const { return backend_->SizeBytes(); }
uint64_t Store::CacheBytes() const { return backend_->CacheBytes(); }

Status Store::Defragment() { return backend_->Defragment(); }

Status Store::Sync() { return backend_->Sync(); }

std::vector<kvpb::AlarmMember> Store::Alarms() const {
  std::lock_guard lock(mu_);
  std::vector<kvpb::AlarmMember> out;
  for (const auto& [member, type] : alarms_) {
    kvpb::AlarmMember m;
    m.set_memberid(member);
    m.set_alarm(static_cast<kvpb::AlarmType>(type));
    out.push_back(m);
  }
  return out;
}

Status Store::ApplyCompaction(WriteTxn& txn, const kvpb::CompactionRequest& request,
                              kvpb::CompactionResponse* response) {
  const int64_t rev = request.revision();
  if (rev <= compact_revision_) return ErrCompacted();
  if (rev > txn.begin_revision()) return ErrFutureRev();
  txn.batch().Put(std::string(keys::kMetaCompactRevision),
                  keys::EncodeU64(static_cast<uint64_t>(rev)));
  txn.OnCommit([this, rev] { compact_revision_ = rev; });  // runs under mu_
  response->mutable_header()->set_revision(txn.revision());
  return Status::Ok();
}

Status Store::ApplyAlarm(WriteTxn& txn, const kvpb::AlarmRequest& request,
                         kvpb::AlarmResponse* response) {
  response->mutable_header()->set_revision(txn.revision());
  const uint64_t member = request.memberid();
  const int type = request.alarm();
  std::lock_guard lock(mu_);  // alarms_ is read by other threads; the writer reads it here
  const bool active = alarms_.contains({member, type});
  auto add = [&](uint64_t m, int t) {
    kvpb::AlarmMember* a = response->add_alarms();
    a->set_memberid(m);
    a->set_alarm(static_cast<kvpb::AlarmType>(t));
  };
  switch (request.action()) {
    case kvpb::AlarmRequest::GET:
      for (const auto& [m, t] : alarms_) {
        if (type == kvpb::NONE || t == type) add(m, t);
      }
      break;
    case kvpb::AlarmRequest::ACTIVATE:
      if (type == kvpb::NONE || active) break;
      txn.batch().Put(keys::Alarm(member, type), "");
      txn.OnCommit([this, member, type] { alarms_.emplace(member, type); });
      add(member, type);
      break;
    case kvpb::AlarmRequest::DEACTIVATE:
      if (!active) break;
      txn.batch().Delete(keys::Alarm(member, type));
      txn.OnCommit([this, member, type] { alarms_.erase({member, type}); });
      add(member, type);
      break;
    default:
      break;
  }
  return Status::Ok();
}

}  // namespace synod::kv
