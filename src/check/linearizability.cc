#include "check/linearizability.h"

#include <algorithm>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "base/assert.h"

namespace synod::check {
namespace {

// ---------------------------------------------------------------------------------------------
// The model: one register per key. Values are interned to small ints so that a model state is
// an int and comparing states is free.

constexpr int kAbsentId = 0;

class ValueIds {
 public:
  int Of(const std::optional<std::string>& value) {
    if (!value) return kAbsentId;
    auto [it, inserted] = ids_.try_emplace(*value, static_cast<int>(ids_.size()) + 1);
    return it->second;
  }

 private:
  std::unordered_map<std::string, int> ids_;  // looked up only, never iterated
};

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

constexpr int kNoUnreadWrite = -1;

// Where the search stands in the model: the register's value and, if the operation placed last
// was an incomplete write that nothing has read yet, the value that write replaced.
struct ModelState {
  int value = kAbsentId;
  int before_unread_write = kNoUnreadWrite;

  bool after_unread_write() const { return before_unread_write != kNoUnreadWrite; }
  // Distinct states have distinct keys (value ids are small and non-negative).
  uint64_t Key() const {
    return (uint64_t{static_cast<uint32_t>(value)} << 32) |
           static_cast<uint32_t>(before_unread_write + 1);
  }
};

// An incomplete operation has no return, so in any linearization it may be dropped, or moved
// later, without breaking real-time order. The search uses that to look only for canonical
// linearizations, in which every incomplete operation changes the value and is directly
// followed by an operation whose outcome depends on that change. Any linearization becomes
// canonical by repeating:
//  - drop an incomplete operation that leaves the value unchanged, is last, or is directly
//    followed by a put (which overwrites it);
//  - swap an incomplete write with a directly following cas that fails on the value it
//    replaced as well (the cas then comes first and fails anyway; the write still lands).
// Each step shortens the linearization or moves an incomplete operation later, so this ends.
// Hence after an unread incomplete write the next operation must be a get (reading it), a cas
// that succeeds on it, or a cas that fails only because of it. Without this, every timed-out
// write could be placed before every failed cas, multiplying the search space.
std::optional<ModelState> StepIncomplete(const ModelOp& op, ModelState state) {
  switch (op.kind) {
    case OpKind::kGet:  // no effect, and any output is acceptable: never worth placing
      return std::nullopt;
    case OpKind::kPut:
      if (state.after_unread_write() || op.value == state.value) return std::nullopt;
      return ModelState{op.value, state.value};
    case OpKind::kCas:  // a cas that fails has no effect, so only success is worth placing
      if (op.expected != state.value || op.value == state.value) return std::nullopt;
      return ModelState{op.value, state.value};
  }
  SYNOD_ASSERT(false, "unknown OpKind");
}

// Places `op` next: the state afterwards, or nullopt if the operation's recorded output
// contradicts the model (or it may not come next in a canonical linearization).
std::optional<ModelState> Step(const ModelOp& op, ModelState state) {
  if (!op.completed) return StepIncomplete(op, state);
  switch (op.kind) {
    case OpKind::kGet:
      if (op.read != state.value) return std::nullopt;
      return ModelState{state.value};
    case OpKind::kPut:
      if (state.after_unread_write()) return std::nullopt;
      return ModelState{op.value};
    case OpKind::kCas:
      if ((op.expected == state.value) != op.cas_succeeded) return std::nullopt;
      if (op.cas_succeeded) return ModelState{op.value};
      if (state.after_unread_write() && op.expected != state.before_unread_write) {
        return std::nullopt;  // it would fail without the write too
      }
      return ModelState{state.value};
  }
  SYNOD_ASSERT(false, "unknown OpKind");
}

// ---------------------------------------------------------------------------------------------
// Search data structures.

// SplitMix64's finalizer: a cheap, well-mixing 64-bit permutation.
uint64_t Mix64(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Call and return events of one key, sorted by time, as a doubly linked list with sentinels.
// Linearizing an operation lifts its call and return out of the list; backtracking puts them
// back. Lifts and unlifts must nest like brackets (the search's stack guarantees it), which is
// what lets Relink restore a node from its own stale prev/next.
class EventList {
 public:
  explicit EventList(const std::vector<ModelOp>& ops);

  int First() const { return nodes_[kHead].next; }
  int Next(int node) const { return nodes_[node].next; }
  // False for return events and for the tail sentinel.
  bool IsCall(int node) const { return nodes_[node].is_call; }
  int OpOf(int node) const { return nodes_[node].op; }

  void Lift(int call_node) {
    Unlink(call_node);
    if (nodes_[call_node].match != kNone) Unlink(nodes_[call_node].match);
  }
  void Unlift(int call_node) {
    if (nodes_[call_node].match != kNone) Relink(nodes_[call_node].match);
    Relink(call_node);
  }

 private:
  static constexpr int kHead = 0;
  static constexpr int kNone = -1;
  struct Node {
    int op = kNone;
    bool is_call = false;
    int match = kNone;  // call node: its return node; kNone if the operation never returned
    int prev = kNone;
    int next = kNone;
  };

  void Unlink(int node) {
    nodes_[nodes_[node].prev].next = nodes_[node].next;
    nodes_[nodes_[node].next].prev = nodes_[node].prev;
  }
  void Relink(int node) {
    nodes_[nodes_[node].prev].next = node;
    nodes_[nodes_[node].next].prev = node;
  }

  std::vector<Node> nodes_;
};

EventList::EventList(const std::vector<ModelOp>& ops) {
  struct Event {
    int64_t time;
    bool is_return;
    int op;
  };
  std::vector<Event> events;
  for (int op = 0; op < static_cast<int>(ops.size()); ++op) {
    events.push_back({ops[op].source->call_time, false, op});
    if (ops[op].completed) events.push_back({ops[op].source->return_time, true, op});
  }
  // Intervals are closed: an operation returning at t is concurrent with one called at t, so
  // at equal times calls come first. An operation's call therefore precedes its own return.
  std::sort(events.begin(), events.end(), [](const Event& a, const Event& b) {
    return std::tie(a.time, a.is_return, a.op) < std::tie(b.time, b.is_return, b.op);
  });

  nodes_.resize(events.size() + 2);  // head sentinel, the events, tail sentinel
  std::vector<int> call_node(ops.size(), kNone);
  for (size_t i = 0; i < events.size(); ++i) {
    const int node = static_cast<int>(i) + 1;
    nodes_[node].op = events[i].op;
    nodes_[node].is_call = !events[i].is_return;
    if (nodes_[node].is_call) {
      call_node[events[i].op] = node;
    } else {
      nodes_[call_node[events[i].op]].match = node;
    }
  }
  for (size_t node = 0; node + 1 < nodes_.size(); ++node) {
    nodes_[node].next = static_cast<int>(node) + 1;
    nodes_[node + 1].prev = static_cast<int>(node);
  }
}

// The set of linearized operations of a key, with an incrementally kept Zobrist hash: each
// operation has a fixed pseudo-random 64-bit key and the set's hash is the XOR of its members'
// keys, so updating it is O(1) however large the set.
class OpSet {
 public:
  explicit OpSet(size_t size) : words_((size + 63) / 64), zobrist_(size) {
    for (size_t op = 0; op < size; ++op) zobrist_[op] = Mix64(op + 0x9e3779b97f4a7c15ULL);
  }

  bool Contains(int op) const { return (words_[op / 64] >> (op % 64)) & 1; }
  void Insert(int op) {
    SYNOD_ASSERT(!Contains(op), "an operation is linearized at most once");
    Flip(op);
  }
  void Erase(int op) {
    SYNOD_ASSERT(Contains(op), "only linearized operations are backtracked");
    Flip(op);
  }
  uint64_t hash() const { return hash_; }
  const std::vector<uint64_t>& words() const { return words_; }

 private:
  void Flip(int op) {
    words_[op / 64] ^= uint64_t{1} << (op % 64);
    hash_ ^= zobrist_[op];
  }

  std::vector<uint64_t> words_;
  std::vector<uint64_t> zobrist_;
  uint64_t hash_ = 0;
};

// Configurations (linearized set, state key) the search has already expanded. Open addressing
// with linear probing over slots that hold a hash and an entry number; the entries themselves
// sit back to back in one arena (state key, then the set's words), so recording one costs no
// allocation beyond amortized growth.
class VisitedSet {
 public:
  explicit VisitedSet(size_t words_per_set) : words_per_set_(words_per_set), slots_(1024) {}

  // Records the configuration; returns false if it had been recorded before.
  bool Insert(const OpSet& set, uint64_t state_key) {
    if ((entries_ + 1) * 2 > slots_.size()) Grow();
    const uint64_t hash = Mix64(set.hash() ^ Mix64(state_key));
    const size_t mask = slots_.size() - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
      Slot& slot = slots_[i];
      if (slot.entry == kEmpty) {
        slot = {hash, Append(set, state_key)};
        return true;
      }
      if (slot.hash == hash && Matches(slot.entry, set, state_key)) return false;
    }
  }

 private:
  static constexpr uint32_t kEmpty = UINT32_MAX;
  struct Slot {
    uint64_t hash = 0;
    uint32_t entry = kEmpty;
  };

  uint32_t Append(const OpSet& set, uint64_t state_key) {
    SYNOD_ASSERT(entries_ < kEmpty, "visited set full; lower max_search_steps");
    arena_.push_back(state_key);
    arena_.insert(arena_.end(), set.words().begin(), set.words().end());
    return static_cast<uint32_t>(entries_++);
  }

  bool Matches(uint32_t entry, const OpSet& set, uint64_t state_key) const {
    const uint64_t* stored = &arena_[entry * (words_per_set_ + 1)];
    return stored[0] == state_key && std::equal(set.words().begin(), set.words().end(), stored + 1);
  }

  void Grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.size() * 2, Slot{});
    const size_t mask = slots_.size() - 1;
    for (const Slot& slot : old) {
      if (slot.entry == kEmpty) continue;
      size_t i = slot.hash & mask;
      while (slots_[i].entry != kEmpty) i = (i + 1) & mask;
      slots_[i] = slot;
    }
  }

  size_t words_per_set_;
  std::vector<Slot> slots_;  // size is a power of two, at most half full
  std::vector<uint64_t> arena_;
  size_t entries_ = 0;
};

// ---------------------------------------------------------------------------------------------
// The per-key search.

struct SearchOutcome {
  enum class Kind { kLinearizable, kNotLinearizable, kBudgetExhausted };
  Kind kind = Kind::kLinearizable;
  std::vector<int> longest_prefix;  // kNotLinearizable: operations in linearization order
  uint64_t steps = 0;
};

// Wing & Gong / Lowe depth-first search over one key's operations. Walking the event list from
// the head, every call met before the first return belongs to an operation that may take effect
// next: all operations that returned before it was called are already linearized. Meeting a
// return means the operation returning there cannot be postponed any further, so the search
// backtracks. One step is one event examined.
class KeySearch {
 public:
  KeySearch(const std::vector<ModelOp>& ops, uint64_t steps_max)
      : ops_(ops),
        steps_max_(steps_max),
        events_(ops),
        linearized_(ops.size()),
        visited_(linearized_.words().size()) {
    completed_total_ = std::count_if(ops.begin(), ops.end(), [](auto& op) { return op.completed; });
  }

  SearchOutcome Run() {
    int node = events_.First();
    // Success once every completed operation is placed; incomplete ones may be left out.
    while (completed_linearized_ < completed_total_) {
      if (steps_ == steps_max_) return Finish(SearchOutcome::Kind::kBudgetExhausted);
      ++steps_;
      if (events_.IsCall(node)) {
        node = TryLinearize(node) ? events_.First() : events_.Next(node);
      } else if (stack_.empty()) {
        return Finish(SearchOutcome::Kind::kNotLinearizable);
      } else {
        node = Backtrack();
      }
    }
    return Finish(SearchOutcome::Kind::kLinearizable);
  }

 private:
  struct Frame {
    int call_node;
    ModelState state;  // before the operation
  };

  // Places the operation of `call_node` next if the model allows it and the configuration it
  // leads to has not been expanded before.
  bool TryLinearize(int call_node) {
    const int op = events_.OpOf(call_node);
    const std::optional<ModelState> next = Step(ops_[op], state_);
    if (!next) return false;
    linearized_.Insert(op);
    if (!visited_.Insert(linearized_, next->Key())) {
      linearized_.Erase(op);
      return false;
    }
    stack_.push_back({call_node, state_});
    events_.Lift(call_node);
    state_ = *next;
    if (ops_[op].completed) ++completed_linearized_;
    return true;
  }

  // Undoes the last placement; returns the node to resume the walk from (the one after the
  // undone call, so the next alternative is tried).
  int Backtrack() {
    if (stack_.size() > longest_prefix_.size()) RememberPrefix();
    const Frame frame = stack_.back();
    stack_.pop_back();
    const int op = events_.OpOf(frame.call_node);
    events_.Unlift(frame.call_node);
    linearized_.Erase(op);
    state_ = frame.state;
    if (ops_[op].completed) --completed_linearized_;
    return events_.Next(frame.call_node);
  }

  void RememberPrefix() {
    longest_prefix_.clear();
    for (const Frame& frame : stack_) longest_prefix_.push_back(events_.OpOf(frame.call_node));
  }

  SearchOutcome Finish(SearchOutcome::Kind kind) {
    return {kind,
            kind == SearchOutcome::Kind::kNotLinearizable ? longest_prefix_ : std::vector<int>{},
            steps_};
  }

  const std::vector<ModelOp>& ops_;
  const uint64_t steps_max_;
  EventList events_;
  OpSet linearized_;
  VisitedSet visited_;
  std::vector<Frame> stack_;
  std::vector<int> longest_prefix_;
  ModelState state_;
  size_t completed_linearized_ = 0;
  size_t completed_total_ = 0;
  uint64_t steps_ = 0;
};

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
    // Incomplete operations are placed only when they write (see StepIncomplete).
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

std::string ExplainViolation(const std::string& key, const std::vector<ModelOp>& ops,
                             const std::vector<int>& prefix) {
  return "Key " + Quote(key) + " is not linearizable: no order of its " +
         std::to_string(ops.size()) + " operation(s) explains what the clients saw.\n" +
         DescribePrefix(ops, prefix) + DescribeStuckOps(ops, prefix);
}

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

// Incomplete gets are dropped: they have no effect and any output is acceptable for them.
std::vector<ModelOp> ToModelOps(const std::vector<const KvOperation*>& ops) {
  ValueIds ids;
  std::vector<ModelOp> model_ops;
  for (const KvOperation* op : ops) {
    if (!op->completed && op->kind == OpKind::kGet) continue;
    model_ops.push_back({.source = op,
                         .kind = op->kind,
                         .completed = op->completed,
                         .value = ids.Of(op->value),
                         .expected = ids.Of(op->expected),
                         .read = ids.Of(op->read),
                         .cas_succeeded = op->cas_succeeded});
  }
  return model_ops;
}

}  // namespace

CheckResult CheckKvLinearizability(const std::vector<KvOperation>& history,
                                   uint64_t max_search_steps) {
  CheckResult result;
  for (const KeyHistory& key : SplitByKey(history)) {
    const std::vector<ModelOp> ops = ToModelOps(key.ops);
    const SearchOutcome outcome = KeySearch(ops, max_search_steps).Run();
    result.search_steps += outcome.steps;
    switch (outcome.kind) {
      case SearchOutcome::Kind::kLinearizable:
        break;
      case SearchOutcome::Kind::kNotLinearizable:
        result.verdict = CheckResult::Verdict::kNotLinearizable;
        result.key = key.key;
        result.explanation = ExplainViolation(key.key, ops, outcome.longest_prefix);
        return result;
      case SearchOutcome::Kind::kBudgetExhausted:
        // Keep going: a later key may still show a definite violation.
        if (result.verdict == CheckResult::Verdict::kUnknown) break;
        result.verdict = CheckResult::Verdict::kUnknown;
        result.key = key.key;
        result.explanation = "Search budget of " + std::to_string(max_search_steps) +
                             " steps exhausted on key " + Quote(key.key) + " (" +
                             std::to_string(ops.size()) + " operations); verdict unknown.\n";
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
  SYNOD_ASSERT(false, "unknown OpKind");
}

}  // namespace synod::check
