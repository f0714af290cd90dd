// The errors of the key-value store, with etcd's exact messages.
//
// Each error is a synod::Status whose message is the text etcd's server sends
// ("etcdserver: ..."), so a client sees what it would see from etcd. base/status.h has no
// OutOfRange, FailedPrecondition or ResourceExhausted, so the Status code is only the closest
// synod code; the gRPC layer takes the exact gRPC code from GrpcCodeOf (the table is in
// docs/kv.md and mirrors etcd's api/v3rpc/rpctypes).
#pragma once

#include <string_view>

#include "base/status.h"

namespace synod::kv {

namespace msg {
inline constexpr std::string_view kEmptyKey = "etcdserver: key is not provided";
inline constexpr std::string_view kKeyNotFound = "etcdserver: key not found";
inline constexpr std::string_view kValueProvided = "etcdserver: value is provided";
inline constexpr std::string_view kLeaseProvided = "etcdserver: lease is provided";
inline constexpr std::string_view kTooManyOps = "etcdserver: too many operations in txn request";
inline constexpr std::string_view kDuplicateKey = "etcdserver: duplicate key given in txn request";
inline constexpr std::string_view kCompacted =
    "etcdserver: mvcc: required revision has been compacted";
inline constexpr std::string_view kFutureRev =
    "etcdserver: mvcc: required revision is a future revision";
inline constexpr std::string_view kNoSpace = "etcdserver: mvcc: database space exceeded";
inline constexpr std::string_view kLeaseNotFound = "etcdserver: requested lease not found";
inline constexpr std::string_view kLeaseExist = "etcdserver: lease already exists";
inline constexpr std::string_view kLeaseTTLTooLarge = "etcdserver: too large lease TTL";
inline constexpr std::string_view kRequestTooLarge = "etcdserver: request is too large";
inline constexpr std::string_view kCorrupt = "etcdserver: corrupt cluster";
inline constexpr std::string_view kNotPrimary = "etcdserver: not leader";
// synod's own (etcd has no bound): the start of ErrRangeTooLarge's message.
inline constexpr std::string_view kRangeTooLarge = "synod: range response too large";
}  // namespace msg

Status ErrEmptyKey();
Status ErrKeyNotFound();
Status ErrValueProvided();
Status ErrLeaseProvided();
Status ErrTooManyOps();
Status ErrDuplicateKey();
Status ErrCompacted();
Status ErrFutureRev();
Status ErrNoSpace();
Status ErrLeaseNotFound();
Status ErrLeaseExist();
Status ErrLeaseTTLTooLarge();
Status ErrRequestTooLarge();
Status ErrCorrupt();
// A lease operation that only the primary lessor (the leader) serves: keep-alive.
Status ErrNotPrimary();
// A Range whose response would hold more than `bytes_max` key and value bytes
// (StoreOptions::range_bytes_max): refused rather than built, so that one request cannot
// exhaust the member's memory. gRPC code RESOURCE_EXHAUSTED.
Status ErrRangeTooLarge(uint64_t bytes_max);

// gRPC status codes, by number (grpc/status.h's grpc::StatusCode), so that kv needs no gRPC.
enum class GrpcCode : int {
  kOk = 0,
  kUnknown = 2,
  kInvalidArgument = 3,
  kNotFound = 5,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kUnavailable = 14,
  kDataLoss = 15,
};

// The gRPC code etcd sends with this error: by message for the errors above, by synod code
// for anything else.
GrpcCode GrpcCodeOf(const Status& status);

}  // namespace synod::kv
