#include "sim/toy_state_machine.h"

#include <cinttypes>
#include <cstdio>

#include "base/assert.h"
#include "kv/errors.h"

namespace synod::sim {
namespace {

// The keys of [key, end) in etcd's terms: end empty is the key alone, "\0" every key from it.
bool InRange(const std::string& k, const std::string& key, const std::string& end) {
  if (end.empty()) return k == key;
  if (end == std::string(1, '\0')) return k >= key;
  return k >= key && k < end;
}

}  // namespace

void ToyStateMachine::Reset() {
  keys_.clear();
  applied_ = 0;
  revision_ = 1;
  compact_revision_ = -1;
}

Status ToyStateMachine::Open(const consensus::Snapshot& kept) {
  Reset();
  if (kept.metadata.index() == 0) return Status::Ok();
  return Install(kept.ReadAll().value(), kept.metadata.index());
}

void ToyStateMachine::Crash() { Reset(); }

Result<std::optional<kv::ApplyResult>> ToyStateMachine::Apply(const pb::Entry& entry, uint64_t) {
  SYNOD_ASSERT(entry.index() == applied_ + 1, "the toy applies entries in order");
  applied_ = entry.index();
  if (entry.type() != pb::ENTRY_NORMAL || entry.data().empty()) {
    return std::optional<kv::ApplyResult>();
  }
  kvpb::Request request;
  if (!request.ParseFromString(entry.data())) {
    kv::ApplyResult bad;
    bad.status = Status(Code::kInvalidArgument, "toy: unparsable request");
    return std::optional<kv::ApplyResult>(std::move(bad));
  }
  return std::optional<kv::ApplyResult>(ApplyRequest(request));
}

kv::ApplyResult ToyStateMachine::ApplyRequest(const kvpb::Request& request) {
  kv::ApplyResult out;
  bool wrote = false;
  switch (request.request_case()) {
    case kvpb::Request::kPut:
      Put(request.put(), out.response.mutable_put(), &wrote);
      break;
    case kvpb::Request::kDeleteRange:
      DeleteRange(request.delete_range(), out.response.mutable_delete_range(), &wrote);
      break;
    case kvpb::Request::kTxn: {
      const kvpb::TxnRequest& txn = request.txn();
      bool succeeded = true;
      for (const auto& c : txn.compare()) succeeded = succeeded && Compare(c);
      kvpb::TxnResponse* response = out.response.mutable_txn();
      response->set_succeeded(succeeded);
      for (const auto& op : succeeded ? txn.success() : txn.failure()) {
        kvpb::ResponseOp* r = response->add_responses();
        if (op.has_request_put()) {
          Put(op.request_put(), r->mutable_response_put(), &wrote);
        } else if (op.has_request_delete_range()) {
          DeleteRange(op.request_delete_range(), r->mutable_response_delete_range(), &wrote);
        } else if (op.has_request_range()) {
          Range(op.request_range(), r->mutable_response_range());
        } else {
          out.status = Status(Code::kInvalidArgument, "toy: unsupported txn operation");
          return out;
        }
      }
      break;
    }
    case kvpb::Request::kCompaction: {
      const int64_t rev = request.compaction().revision();
      if (rev <= compact_revision_) {
        out.status = kv::ErrCompacted();
      } else if (rev > revision_) {
        out.status = kv::ErrFutureRev();
      } else {
        compact_revision_ = rev;
      }
      break;
    }
    default:
      out.status = Status(Code::kInvalidArgument, "toy: unsupported request");
      return out;
  }
  if (wrote) ++revision_;  // every change of one request shares one revision
  return out;
}

bool ToyStateMachine::Compare(const kvpb::Compare& c) const {
  auto it = keys_.find(c.key());
  const bool present = it != keys_.end();
  int64_t have = 0, want = 0;
  switch (c.target()) {
    case kvpb::Compare::VALUE:
      // etcd: a value compare on an absent key fails.
      if (!present) return false;
      if (c.result() == kvpb::Compare::EQUAL) return it->second.value() == c.value();
      if (c.result() == kvpb::Compare::NOT_EQUAL) return it->second.value() != c.value();
      return c.result() == kvpb::Compare::GREATER ? it->second.value() > c.value()
                                                  : it->second.value() < c.value();
    case kvpb::Compare::VERSION:
      have = present ? it->second.version() : 0;
      want = c.version();
      break;
    case kvpb::Compare::CREATE:
      have = present ? it->second.create_revision() : 0;
      want = c.create_revision();
      break;
    case kvpb::Compare::MOD:
      have = present ? it->second.mod_revision() : 0;
      want = c.mod_revision();
      break;
    case kvpb::Compare::LEASE:
      have = present ? it->second.lease() : 0;
      want = c.lease();
      break;
    default:
      return false;
  }
  switch (c.result()) {
    case kvpb::Compare::EQUAL:
      return have == want;
    case kvpb::Compare::NOT_EQUAL:
      return have != want;
    case kvpb::Compare::GREATER:
      return have > want;
    case kvpb::Compare::LESS:
      return have < want;
    default:
      return false;
  }
}

void ToyStateMachine::Put(const kvpb::PutRequest& put, kvpb::PutResponse* response, bool* wrote) {
  const int64_t rev = revision_ + 1;
  kvpb::KeyValue& kv = keys_[put.key()];
  if (kv.version() == 0) {
    kv.set_key(put.key());
    kv.set_create_revision(rev);
  }
  kv.set_mod_revision(rev);
  kv.set_version(kv.version() + 1);
  kv.set_value(put.value());
  kv.set_lease(put.lease());
  response->mutable_header()->set_revision(rev);
  *wrote = true;
}

void ToyStateMachine::DeleteRange(const kvpb::DeleteRangeRequest& del,
                                  kvpb::DeleteRangeResponse* response, bool* wrote) {
  int64_t deleted = 0;
  auto it = keys_.lower_bound(del.key());
  while (it != keys_.end() && InRange(it->first, del.key(), del.range_end())) {
    it = keys_.erase(it);
    ++deleted;
  }
  response->set_deleted(deleted);
  if (deleted > 0) *wrote = true;
}

void ToyStateMachine::Range(const kvpb::RangeRequest& range, kvpb::RangeResponse* response) const {
  for (auto it = keys_.lower_bound(range.key()); it != keys_.end(); ++it) {
    if (!InRange(it->first, range.key(), range.range_end())) break;
    *response->add_kvs() = it->second;
  }
  response->set_count(response->kvs_size());
}

Result<std::optional<std::string>> ToyStateMachine::Get(const std::string& key) const {
  auto it = keys_.find(key);
  if (it == keys_.end()) return std::optional<std::string>();
  return std::optional<std::string>(it->second.value());
}

Result<StoreFingerprint> ToyStateMachine::Fingerprint() const {
  StoreFingerprint fp;
  fp.revision = revision_;
  fp.compact_revision = compact_revision_;
  std::vector<kvpb::KeyValue> kvs;
  for (const auto& [key, kv] : keys_) kvs.push_back(kv);
  fp.hash = HashKeyValues(kvs);
  return fp;
}

// A toy snapshot: "<applied> <revision> <compact revision>\n", then every live key as a
// serialized RangeResponse.
Result<std::string> ToyStateMachine::Snapshot(consensus::LogIndex* index) {
  kvpb::RangeResponse all;
  for (const auto& [key, kv] : keys_) *all.add_kvs() = kv;
  char header[96];
  std::snprintf(header, sizeof header, "%" PRIu64 " %" PRId64 " %" PRId64 "\n", applied_, revision_,
                compact_revision_);
  *index = applied_;
  return std::string(header) + all.SerializeAsString();
}

Status ToyStateMachine::Install(const std::string& data, consensus::LogIndex index) {
  const size_t newline = data.find('\n');
  uint64_t applied = 0;
  int64_t revision = 0, compact = 0;
  kvpb::RangeResponse all;
  if (newline == std::string::npos ||
      std::sscanf(data.substr(0, newline).c_str(), "%" SCNu64 " %" SCNd64 " %" SCNd64, &applied,
                  &revision, &compact) != 3 ||
      !all.ParseFromString(data.substr(newline + 1)) || applied != index) {
    return Status(Code::kCorruption, "toy: a snapshot that does not parse");
  }
  Reset();
  for (const auto& kv : all.kvs()) keys_[kv.key()] = kv;
  applied_ = applied;
  revision_ = revision;
  compact_revision_ = compact;
  return Status::Ok();
}

}  // namespace synod::sim
