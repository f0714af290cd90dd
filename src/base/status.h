// Status: an expected error as a value. `Status::Ok()` or a code with a message.
#pragma once

#include <string>
#include <utility>

namespace synod {

enum class Code {
  kOk = 0,
  kNotLeader,        // this node cannot serve the request; try the hinted leader
  kProposalDropped,  // leader is busy (transferring leadership, change pending, ...)
  kTooLarge,         // a request or message exceeds a configured bound
  kInvalidArgument,
  kUnavailable,  // no leader known, or not enough members reachable
  kCorruption,
  kIoError,
  kNotFound,
  kUnimplemented,  // an optional capability this implementation does not have
};

class Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return {}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const { return ok() ? "OK" : message_; }

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

}  // namespace synod
