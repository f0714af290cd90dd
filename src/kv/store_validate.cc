// The checks etcd's gRPC layer (api/v3rpc/key.go) and proposal path make before a request
// reaches the log, in etcd's order.
#include <algorithm>
#include <set>

#include "kv/errors.h"
#include "kv/store_internal.h"

namespace synod::kv {
namespace {

Status CheckRange(const kvpb::RangeRequest& r) {
  if (r.key().empty()) return ErrEmptyKey();
  return Status::Ok();
}

Status CheckPut(const StoreOptions& options, const kvpb::PutRequest& r) {
  if (r.key().empty()) return ErrEmptyKey();
  if (r.ignore_value() && !r.value().empty()) return ErrValueProvided();
  if (r.ignore_lease() && r.lease() != 0) return ErrLeaseProvided();
  // synod's own bounds (etcd only bounds the whole request).
  if (r.key().size() > options.key_bytes_max) return ErrRequestTooLarge();
  if (r.value().size() > options.value_bytes_max) return ErrRequestTooLarge();
  return Status::Ok();
}

Status CheckDelete(const kvpb::DeleteRangeRequest& r) {
  if (r.key().empty()) return ErrEmptyKey();
  return Status::Ok();
}

Status CheckTxn(const StoreOptions& options, const kvpb::TxnRequest& r, int64_t ops_max);

Status CheckOp(const StoreOptions& options, const kvpb::RequestOp& op, int64_t ops_max) {
  switch (op.request_case()) {
    case kvpb::RequestOp::kRequestRange:
      return CheckRange(op.request_range());
    case kvpb::RequestOp::kRequestPut:
      return CheckPut(options, op.request_put());
    case kvpb::RequestOp::kRequestDeleteRange:
      return CheckDelete(op.request_delete_range());
    case kvpb::RequestOp::kRequestTxn:
      return CheckTxn(options, op.request_txn(), ops_max);
    case kvpb::RequestOp::REQUEST_NOT_SET:
      break;
  }
  return ErrKeyNotFound();  // an empty op, as etcd answers it
}

// etcd's checkTxnRequest: a nested txn gets what its parent's widest list left of the bound.
Status CheckTxn(const StoreOptions& options, const kvpb::TxnRequest& r, int64_t ops_max) {
  const int64_t opc = std::max({r.compare_size(), r.success_size(), r.failure_size()});
  if (opc > ops_max) return ErrTooManyOps();
  for (const auto& c : r.compare()) {
    if (c.key().empty()) return ErrEmptyKey();
  }
  for (const auto& op : r.success()) {
    Status s = CheckOp(options, op, ops_max - opc);
    if (!s.ok()) return s;
  }
  for (const auto& op : r.failure()) {
    Status s = CheckOp(options, op, ops_max - opc);
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

// etcd's checkIntervals: within a txn no key may be put twice, or put and deleted, counting
// nested txns (whose then and else branches exclude each other). Deletes may overlap.
struct Writes {
  std::set<std::string, std::less<>> puts;
  std::vector<KeyRange> dels;
  bool Deleted(std::string_view key) const {
    return std::any_of(dels.begin(), dels.end(),
                       [&](const KeyRange& range) { return range.Contains(key); });
  }
};

Status CheckIntervals(const google::protobuf::RepeatedPtrField<kvpb::RequestOp>& ops, Writes* out) {
  Writes& w = *out;
  for (const auto& op : ops) {
    if (!op.has_request_delete_range()) continue;
    const auto& d = op.request_delete_range();
    // etcd's interval tree treats "\0" as an ordinary end (an empty interval); here it is
    // "every key >= key", which is what the delete does — so such a conflict is caught.
    w.dels.push_back(KeyRange::Make(d.key(), d.range_end()));
  }
  for (const auto& op : ops) {
    if (!op.has_request_txn()) continue;
    Writes then_writes, else_writes;
    Status s = CheckIntervals(op.request_txn().success(), &then_writes);
    if (!s.ok()) return s;
    s = CheckIntervals(op.request_txn().failure(), &else_writes);
    if (!s.ok()) return s;
    for (const auto& k : then_writes.puts) {
      if (w.puts.contains(k) || w.Deleted(k)) return ErrDuplicateKey();
      w.puts.insert(k);
    }
    for (const auto& k : else_writes.puts) {
      if (w.puts.contains(k) && !then_writes.puts.contains(k)) return ErrDuplicateKey();
      if (w.Deleted(k)) return ErrDuplicateKey();
      w.puts.insert(k);
    }
    w.dels.insert(w.dels.end(), then_writes.dels.begin(), then_writes.dels.end());
    w.dels.insert(w.dels.end(), else_writes.dels.begin(), else_writes.dels.end());
  }
  for (const auto& op : ops) {
    if (!op.has_request_put()) continue;
    const std::string& k = op.request_put().key();
    if (w.puts.contains(k) || w.Deleted(k)) return ErrDuplicateKey();
    w.puts.insert(k);
  }
  return Status::Ok();
}

}  // namespace

Status ValidateRequest(const StoreOptions& options, const kvpb::Request& request) {
  Status s;
  switch (request.request_case()) {
    case kvpb::Request::kRange:
      s = CheckRange(request.range());
      break;
    case kvpb::Request::kPut:
      s = CheckPut(options, request.put());
      break;
    case kvpb::Request::kDeleteRange:
      s = CheckDelete(request.delete_range());
      break;
    case kvpb::Request::kTxn: {
      s = CheckTxn(options, request.txn(), options.txn_ops_max);
      Writes writes;
      if (s.ok()) s = CheckIntervals(request.txn().success(), &writes);
      writes = Writes();
      if (s.ok()) s = CheckIntervals(request.txn().failure(), &writes);
      break;
    }
    case kvpb::Request::REQUEST_NOT_SET:
      return Status(Code::kInvalidArgument, "kv: empty request");
    default:
      break;
  }
  if (!s.ok()) return s;
  if (request.ByteSizeLong() > options.request_bytes_max) return ErrRequestTooLarge();
  return Status::Ok();
}

}  // namespace synod::kv
