// Linearizability checker for key-value histories.
//
// A history is what clients saw: for each operation, when it was invoked, when (and whether)
// the response arrived, and what the response said. The history is linearizable if every
// completed operation can be given an instant inside its [call_time, return_time] interval,
// and every incomplete one either an instant after its call_time or no instant at all, such
// that executing the operations one by one in that order against a single-copy map (every key
// initially absent) produces exactly the responses the clients saw.
//
// Algorithm: linearizability is local (Herlihy & Wing), so the history is split by key and each
// key is checked on its own. Per key we run the Wing & Gong depth-first search with Lowe's
// improvements, as in Porcupine: call and return events sorted by time in a doubly linked list,
// operations "lifted" out of the list as they are linearized and put back on backtracking, and a
// hash set of visited (linearized set, register value) configurations so that no configuration
// is expanded twice. Incomplete operations have no return event, so they never force the search
// to backtrack, and the search succeeds once every completed operation is placed. On top of that
// (each rule preserves the answer; see register_model.cc and key_search.cc):
//  - an incomplete write is only placed right before an operation that observes it;
//  - values nobody reads are merged into one, and timed-out writes of them are placed in call
//    order only;
//  - a move that leaves a value some unplaced operation still has to read, when nothing left can
//    write it again, is abandoned at once.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace synod::check {

enum class OpKind { kPut, kGet, kCas };

// One client operation on one key, as observed from the client side.
struct KvOperation {
  int client = 0;
  std::string key;
  OpKind kind = OpKind::kGet;
  std::string value;  // kPut: value written; kCas: new value
  // kCas: required current value (nullopt = key must be absent).
  std::optional<std::string> expected;
  int64_t call_time = 0;    // when the client invoked it
  int64_t return_time = 0;  // when the client saw the response; ignored if !completed
  // false: timed out, outcome unknown. The operation may have taken effect at any instant after
  // call_time (its return time is +infinity), or never; any output is acceptable for it.
  bool completed = true;
  std::optional<std::string> read;  // kGet output: value read (nullopt = absent)
  bool cas_succeeded = false;       // kCas output
};

struct CheckResult {
  enum class Verdict { kLinearizable, kNotLinearizable, kUnknown /* search budget exhausted */ };
  Verdict verdict = Verdict::kLinearizable;
  // kNotLinearizable: the first key (in order of first appearance in the history) whose
  // sub-history fails. kUnknown: the first key whose search ran out of budget.
  std::string key;
  // kNotLinearizable: the longest linearizable prefix found for `key` and the operations that
  // could not be placed after it, with times, clients and values. kUnknown: which budget ran
  // out. Empty when linearizable.
  std::string explanation;
  uint64_t search_steps = 0;  // summed over all keys; for sizing budgets
};

// Checks `history` (operations in any order). Each key's search may take at most
// `max_search_steps` steps and keep at most 1 GiB of visited configurations (about n/8 bytes
// each for n operations on the key), so one hard key cannot hide a violation on another. A key
// that exceeds either bound makes the verdict kUnknown, unless some key is definitely not
// linearizable. Asserts that completed operations do not return before they are called.
CheckResult CheckKvLinearizability(const std::vector<KvOperation>& history,
                                   uint64_t max_search_steps = 10'000'000);

// One line, times first: `[10, 20] client 3: get("k") -> "v"`; an incomplete operation shows
// `[10, timed out]` and `-> ?`.
std::string FormatOperation(const KvOperation& op);

}  // namespace synod::check
