// Internal to synod_check: the search for a linearization of one key's operations.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "check/register_model.h"

namespace synod::check::internal {

// Bound on one key's visited configurations. Steps bound them too, but one step can record a
// whole bitset, so for keys with many operations this is the bound that bites first.
inline constexpr size_t kVisitedBytesMax = size_t{1} << 30;

struct SearchOutcome {
  enum class Kind { kLinearizable, kNotLinearizable, kStepsExhausted, kMemoryExhausted };
  Kind kind = Kind::kLinearizable;
  // kNotLinearizable: the longest sequence of operations (indices into the ops) that the search
  // managed to linearize, in order.
  std::vector<int> longest_prefix;
  uint64_t steps = 0;
};

// Looks for a linearization of `ops` (all on one key; see linearizability.h for the algorithm),
// taking at most `steps_max` steps, one per event examined.
SearchOutcome SearchLinearization(const std::vector<ModelOp>& ops, uint64_t steps_max);

}  // namespace synod::check::internal
