#include "kv/errors.h"

#include <string>

namespace synod::kv {
namespace {

struct ErrorRow {
  std::string_view message;
  Code code;
  GrpcCode grpc;
};

// etcd's api/v3rpc/rpctypes/error.go, restricted to what the store can return.
constexpr ErrorRow kErrors[] = {
    {msg::kEmptyKey, Code::kInvalidArgument, GrpcCode::kInvalidArgument},
    {msg::kKeyNotFound, Code::kInvalidArgument, GrpcCode::kInvalidArgument},
    {msg::kValueProvided, Code::kInvalidArgument, GrpcCode::kInvalidArgument},
    {msg::kLeaseProvided, Code::kInvalidArgument, GrpcCode::kInvalidArgument},
    {msg::kTooManyOps, Code::kInvalidArgument, GrpcCode::kInvalidArgument},
    {msg::kDuplicateKey, Code::kInvalidArgument, GrpcCode::kInvalidArgument},
    {msg::kCompacted, Code::kInvalidArgument, GrpcCode::kOutOfRange},
    {msg::kFutureRev, Code::kInvalidArgument, GrpcCode::kOutOfRange},
    {msg::kNoSpace, Code::kTooLarge, GrpcCode::kResourceExhausted},
    {msg::kLeaseNotFound, Code::kNotFound, GrpcCode::kNotFound},
    {msg::kLeaseExist, Code::kInvalidArgument, GrpcCode::kFailedPrecondition},
    {msg::kLeaseTTLTooLarge, Code::kInvalidArgument, GrpcCode::kOutOfRange},
    {msg::kRequestTooLarge, Code::kTooLarge, GrpcCode::kInvalidArgument},
    {msg::kCorrupt, Code::kCorruption, GrpcCode::kDataLoss},
    {msg::kNotPrimary, Code::kNotLeader, GrpcCode::kFailedPrecondition},
};

Status Make(std::string_view message) {
  for (const auto& row : kErrors) {
    if (row.message == message) return Status(row.code, std::string(message));
  }
  return Status(Code::kInvalidArgument, std::string(message));
}

}  // namespace

Status ErrEmptyKey() { return Make(msg::kEmptyKey); }
Status ErrKeyNotFound() { return Make(msg::kKeyNotFound); }
Status ErrValueProvided() { return Make(msg::kValueProvided); }
Status ErrLeaseProvided() { return Make(msg::kLeaseProvided); }
Status ErrTooManyOps() { return Make(msg::kTooManyOps); }
Status ErrDuplicateKey() { return Make(msg::kDuplicateKey); }
Status ErrCompacted() { return Make(msg::kCompacted); }
Status ErrFutureRev() { return Make(msg::kFutureRev); }
Status ErrNoSpace() { return Make(msg::kNoSpace); }
Status ErrLeaseNotFound() { return Make(msg::kLeaseNotFound); }
Status ErrLeaseExist() { return Make(msg::kLeaseExist); }
Status ErrLeaseTTLTooLarge() { return Make(msg::kLeaseTTLTooLarge); }
Status ErrRequestTooLarge() { return Make(msg::kRequestTooLarge); }
Status ErrCorrupt() { return Make(msg::kCorrupt); }
Status ErrNotPrimary() { return Make(msg::kNotPrimary); }
Status ErrRangeTooLarge(uint64_t bytes_max) {
  return Status(Code::kTooLarge, std::string(msg::kRangeTooLarge) + ": more than " +
                                     std::to_string(bytes_max) +
                                     " bytes of keys and values; ask for fewer with a limit "
                                     "and continue from the last key");
}

GrpcCode GrpcCodeOf(const Status& status) {
  if (status.ok()) return GrpcCode::kOk;
  if (status.message().starts_with(msg::kRangeTooLarge)) return GrpcCode::kResourceExhausted;
  for (const auto& row : kErrors) {
    if (row.message == status.message()) return row.grpc;
  }
  switch (status.code()) {
    case Code::kOk:
      return GrpcCode::kOk;
    case Code::kNotLeader:
    case Code::kProposalDropped:
    case Code::kUnavailable:
      return GrpcCode::kUnavailable;
    case Code::kTooLarge:
    case Code::kInvalidArgument:
      return GrpcCode::kInvalidArgument;
    case Code::kNotFound:
      return GrpcCode::kNotFound;
    case Code::kCorruption:
      return GrpcCode::kDataLoss;
    case Code::kIoError:
      return GrpcCode::kUnknown;
    case Code::kUnimplemented:
      return GrpcCode::kUnimplemented;
  }
  return GrpcCode::kUnknown;
}

}  // namespace synod::kv
