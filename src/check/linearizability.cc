#include "check/linearizability.h"

#include <algorithm>
#include <unordered_map>

#include "base/assert.h"
#include "check/key_search.h"
#include "check/register_model.h"

namespace synod::check {
namespace {

using internal::ModelOp;
using internal::SearchOutcome;

// ---------------------------------------------------------------------------------------------
// Splitting by key.

struct KeyHistory {
  std::string key;
  std::vector<const KvOperation*> ops;  // in history order
};

// Keys in order of first appearance, so the reported key does not depend on hashing.
std::vector<KeyHistory> SplitByKey(const std::vector<KvOperation>& history) {
  std::vector<KeyHistory> keys;
  std::unordered_map<std::string, size_t> index;  // looked up only, never iterated
  for (const KvOperation& op : history) {
    SYNOD_ASSERT(!op.completed || op.return_time >= op.call_time,
                 "a completed operation cannot return before it is called");
    auto [it, inserted] = index.try_emplace(op.key, keys.size());
    if (inserted) keys.push_back({op.key, {}});
    keys[it->second].ops.push_back(&op);
  }
  return keys;
}

// ---------------------------------------------------------------------------------------------
// Explanations.

constexpr size_t kExplainedPrefixOpsMax = 10;  // the tail of the prefix that is printed
constexpr size_t kExplainedStuckOpsMax = 10;

std::string Quote(const std::string& s) { return "\"" + s + "\""; }

std::string FormatValue(const std::optional<std::string>& value) {
  return value ? Quote(*value) : "absent";
}

// The key's value after executing `prefix` (a legal linearization) from absent.
std::optional<std::string> ValueAfter(const std::vector<ModelOp>& ops,
                                      const std::vector<int>& prefix) {
  std::optional<std::string> value;
  for (int op : prefix) {
    const KvOperation& source = *ops[op].source;
    // Incomplete operations are placed only when they write (see register_model.cc).
    const bool writes =
        source.kind == OpKind::kPut ||
        (source.kind == OpKind::kCas && (source.cas_succeeded || !source.completed));
    if (writes) value = source.value;
  }
  return value;
}

// Why the completed operation `op` cannot come right after a prefix leaving `value`.
std::string WhyNotNext(const KvOperation& op, const std::optional<std::string>& value) {
  if (op.kind == OpKind::kGet && op.read != value) {
    return "reads " + FormatValue(op.read) + " but the value is " + FormatValue(value);
  }
  if (op.kind == OpKind::kCas && op.cas_succeeded && op.expected != value) {
    return "succeeded, but the value is " + FormatValue(value) + ", not the expected " +
           FormatValue(op.expected);
  }
  if (op.kind == OpKind::kCas && !op.cas_succeeded && op.expected == value) {
    return "failed, but the value is the expected " + FormatValue(value);
  }
  return "fits here, but no order of the remaining operations works after it";
}

std::string DescribePrefix(const std::vector<ModelOp>& ops, const std::vector<int>& prefix) {
  const std::optional<std::string> value = ValueAfter(ops, prefix);
  std::string out = "Longest linearizable prefix found: " + std::to_string(prefix.size()) +
                    " operation(s), leaving the value " + FormatValue(value) + ".\n";
  const size_t shown_from = prefix.size() - std::min(prefix.size(), kExplainedPrefixOpsMax);
  if (shown_from > 0) out += "  ... " + std::to_string(shown_from) + " earlier operation(s)\n";
  for (size_t i = shown_from; i < prefix.size(); ++i) {
    out += "  " + std::to_string(i + 1) + ". " + FormatOperation(*ops[prefix[i]].source) + "\n";
  }
  return out;
}

// Names the operations that could have come next after `prefix` and why none of them can. The
// candidates are the unplaced operations called by the time the earliest unplaced completed
// operation returned.
std::string DescribeStuckOps(const std::vector<ModelOp>& ops, const std::vector<int>& prefix) {
  std::vector<bool> placed(ops.size(), false);
  for (int op : prefix) placed[op] = true;
  const ModelOp* deadline = nullptr;
  for (size_t op = 0; op < ops.size(); ++op) {
    if (placed[op] || !ops[op].completed) continue;
    if (!deadline || ops[op].source->return_time < deadline->source->return_time) {
      deadline = &ops[op];
    }
  }
  SYNOD_ASSERT(deadline != nullptr, "a failed search leaves a completed operation unplaced");

  const std::optional<std::string> value = ValueAfter(ops, prefix);
  const int64_t deadline_time = deadline->source->return_time;
  std::string out = "None of these operations can come next:\n";
  size_t stuck = 0;
  size_t pending_incomplete = 0;
  for (size_t op = 0; op < ops.size(); ++op) {
    const KvOperation& source = *ops[op].source;
    if (placed[op] || source.call_time > deadline_time) continue;
    if (!source.completed) {
      ++pending_incomplete;
    } else if (++stuck <= kExplainedStuckOpsMax) {
      out += "  " + FormatOperation(source) + ": " + WhyNotNext(source, value) + "\n";
    }
  }
  if (stuck > kExplainedStuckOpsMax) {
    out += "  ... " + std::to_string(stuck - kExplainedStuckOpsMax) + " more\n";
  }
  out += "All of them were called by time " + std::to_string(deadline_time) + ", when " +
         FormatOperation(*deadline->source) +
         " returned, so one of them had to take effect next.\n";
  if (pending_incomplete > 0) {
    out += std::to_string(pending_incomplete) +
           " timed-out operation(s) were pending as well; none of them helps.\n";
  }
  return out;
}

// Whether `op` can only be placed while the key holds `value`.
bool MustSee(const KvOperation& op, const std::optional<std::string>& value) {
  if (!op.completed) return false;
  if (op.kind == OpKind::kGet) return op.read == value;
  return op.kind == OpKind::kCas && op.cas_succeeded && op.expected == value;
}

bool MayWrite(const KvOperation& op, const std::string& value) {
  const bool writes =
      op.kind == OpKind::kPut || (op.kind == OpKind::kCas && (op.cas_succeeded || !op.completed));
  return writes && op.value == value;
}

// If the prefix's last operation replaced a value that no unplaced operation writes again
// while some unplaced operation still has to see it, says so: the search gives up on such a
// prefix at once, so this is often the real reason it got no further.
std::string DescribeStrandedReaders(const std::vector<ModelOp>& ops,
                                    const std::vector<int>& prefix) {
  if (prefix.empty()) return "";
  const std::optional<std::string> before =
      ValueAfter(ops, std::vector<int>(prefix.begin(), prefix.end() - 1));
  if (before == ValueAfter(ops, prefix)) return "";
  std::vector<bool> placed(ops.size(), false);
  for (int op : prefix) placed[op] = true;
  std::vector<const KvOperation*> readers;
  for (size_t op = 0; op < ops.size(); ++op) {
    if (placed[op]) continue;
    if (before && MayWrite(*ops[op].source, *before)) return "";
    if (MustSee(*ops[op].source, before)) readers.push_back(ops[op].source);
  }
  if (readers.empty()) return "";
  std::string out = "The last of these replaced " + FormatValue(before) +
                    " for good (nothing left writes it), yet these still had to see it:\n";
  for (size_t i = 0; i < readers.size() && i < kExplainedStuckOpsMax; ++i) {
    out += "  " + FormatOperation(*readers[i]) + "\n";
  }
  if (readers.size() > kExplainedStuckOpsMax) {
    out += "  ... " + std::to_string(readers.size() - kExplainedStuckOpsMax) + " more\n";
  }
  return out;
}

std::string ExplainViolation(const KeyHistory& key, const std::vector<ModelOp>& ops,
                             const std::vector<int>& prefix) {
  return "Key " + Quote(key.key) + " is not linearizable: no order of its " +
         std::to_string(key.ops.size()) + " operation(s) explains what the clients saw.\n" +
         DescribePrefix(ops, prefix) + DescribeStrandedReaders(ops, prefix) +
         DescribeStuckOps(ops, prefix);
}

std::string ExplainExhaustion(const KeyHistory& key, const SearchOutcome& outcome,
                              uint64_t steps_max) {
  const std::string budget = outcome.kind == SearchOutcome::Kind::kStepsExhausted
                                 ? "budget of " + std::to_string(steps_max) + " steps"
                                 : "memory bound of " +
                                       std::to_string(internal::kVisitedBytesMax >> 20) +
                                       " MiB (after " + std::to_string(outcome.steps) + " steps)";
  return "Search for key " + Quote(key.key) + " (" + std::to_string(key.ops.size()) +
         " operations) ran out of its " + budget + "; verdict unknown.\n";
}

}  // namespace

CheckResult CheckKvLinearizability(const std::vector<KvOperation>& history,
                                   uint64_t max_search_steps) {
  CheckResult result;
  for (const KeyHistory& key : SplitByKey(history)) {
    const std::vector<ModelOp> ops = internal::ToModelOps(key.ops);
    const SearchOutcome outcome = internal::SearchLinearization(ops, max_search_steps);
    result.search_steps += outcome.steps;
    switch (outcome.kind) {
      case SearchOutcome::Kind::kLinearizable:
        break;
      case SearchOutcome::Kind::kNotLinearizable:
        result.verdict = CheckResult::Verdict::kNotLinearizable;
        result.key = key.key;
        result.explanation = ExplainViolation(key, ops, outcome.longest_prefix);
        return result;
      case SearchOutcome::Kind::kStepsExhausted:
      case SearchOutcome::Kind::kMemoryExhausted:
        // Keep going: a later key may still show a definite violation.
        if (result.verdict == CheckResult::Verdict::kUnknown) break;
        result.verdict = CheckResult::Verdict::kUnknown;
        result.key = key.key;
        result.explanation = ExplainExhaustion(key, outcome, max_search_steps);
        break;
    }
  }
  return result;
}

std::string FormatOperation(const KvOperation& op) {
  std::string out = "[" + std::to_string(op.call_time) + ", " +
                    (op.completed ? std::to_string(op.return_time) : "timed out") + "] client " +
                    std::to_string(op.client) + ": ";
  switch (op.kind) {
    case OpKind::kPut:
      return out + "put(" + Quote(op.key) + ", " + Quote(op.value) + ")";
    case OpKind::kGet:
      return out + "get(" + Quote(op.key) + ") -> " + (op.completed ? FormatValue(op.read) : "?");
    case OpKind::kCas:
      return out + "cas(" + Quote(op.key) + ", " + FormatValue(op.expected) + " -> " +
             Quote(op.value) + ") -> " +
             (op.completed ? (op.cas_succeeded ? "ok" : "failed") : "?");
  }
  SYNOD_UNREACHABLE("unknown OpKind");
}

}  // namespace synod::check
