// Internal to synod_check: the sequential model a key's history is checked against, a single
// register that starts absent, in the form the search needs.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "check/linearizability.h"

namespace synod::check::internal {

// Values are interned to small ints so that comparing them is free and a model state fits in a
// 64-bit key.
inline constexpr int kAbsentId = 0;
inline constexpr int kUnobservedId = 1;  // every value that no operation can observe

// One operation of a key, in model terms. `source` outlives the search.
struct ModelOp {
  const KvOperation* source = nullptr;
  OpKind kind = OpKind::kGet;
  bool completed = true;
  int value = kAbsentId;     // kPut, kCas: value written
  int expected = kAbsentId;  // kCas
  int read = kAbsentId;      // completed kGet
  bool cas_succeeded = false;
};

inline constexpr int kNoUnreadWrite = -1;

// Where the search stands in the model: the register's value and, if the operation placed last
// was an incomplete write that nothing has read yet, the value that write replaced.
struct ModelState {
  int value = kAbsentId;
  int before_unread_write = kNoUnreadWrite;

  bool after_unread_write() const { return before_unread_write != kNoUnreadWrite; }
  // Distinct states have distinct keys (value ids are non-negative ints).
  uint64_t Key() const {
    return (uint64_t{static_cast<uint32_t>(value)} << 32) |
           static_cast<uint32_t>(before_unread_write + 1);
  }
};

// One key's operations in model terms, in the same order, minus incomplete gets (no effect, any
// output acceptable). Values no operation can observe -- never read by a completed get, never
// expected by a cas -- all become kUnobservedId: the model only compares the register with read
// and expected values, so it cannot tell them apart, and merging them lets configurations that
// differ only in which of them was written coincide.
std::vector<ModelOp> ToModelOps(const std::vector<const KvOperation*>& ops);

// Places `op` next: the state afterwards, or nullopt if the operation's recorded output
// contradicts the model, or if it may not come next in a canonical linearization (see
// register_model.cc: incomplete operations are placed only where their effect is read).
std::optional<ModelState> Step(const ModelOp& op, ModelState state);

}  // namespace synod::check::internal
