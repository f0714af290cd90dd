// Result<T>: a value or an error Status.
#pragma once

#include <optional>
#include <utility>

#include "base/assert.h"
#include "base/status.h"

namespace synod {

template <typename T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT
    SYNOD_ASSERT(!status_.ok(), "a Result built from a Status must carry an error");
  }
  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  const T& value() const {
    SYNOD_ASSERT(ok(), "value() of a failed Result");
    return *value_;
  }
  T& value() {
    SYNOD_ASSERT(ok(), "value() of a failed Result");
    return *value_;
  }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace synod
