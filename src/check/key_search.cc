#include "check/key_search.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "base/assert.h"

namespace synod::check::internal {
namespace {

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

// The set of linearized operations as a bitset, with an incrementally kept Zobrist hash: each
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

// Configurations (linearized set, model state) the search has expanded or is expanding.
// Open addressing with linear probing over slots that hold a hash and an entry number; the
// entries themselves (state key, then the set's words) sit back to back in one arena, so
// recording one costs no allocation beyond amortized growth.
class VisitedSet {
 public:
  explicit VisitedSet(size_t words_per_set) : words_per_set_(words_per_set), slots_(1024) {}

  size_t bytes() const { return arena_.size() * sizeof(uint64_t) + slots_.size() * sizeof(Slot); }

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

  const size_t words_per_set_;
  std::vector<Slot> slots_;  // size is a power of two, at most half full
  std::vector<uint64_t> arena_;
  size_t entries_ = 0;
};

// How many unplaced operations still need to see each value (completed gets reading it,
// completed cas that succeeded on it) and how many could still write it. When the register is
// about to leave a value that some unplaced operation needs and nothing left can write again,
// that operation can never be placed: the search drops the move at once instead of finding out
// when that operation's return is reached, possibly thousands of steps later.
class ValueCensus {
 public:
  explicit ValueCensus(const std::vector<ModelOp>& ops) {
    int value_max = kUnobservedId;
    for (const ModelOp& op : ops) value_max = std::max({value_max, op.value, op.expected, op.read});
    readers_.assign(value_max + 1, 0);
    writers_.assign(value_max + 1, 0);
    for (const ModelOp& op : ops) Count(op, +1);
  }

  void Place(const ModelOp& op) { Count(op, -1); }
  void Unplace(const ModelOp& op) { Count(op, +1); }

  // Whether placing `op` (still unplaced), which moves the register from `from` to `to`, leaves
  // some other unplaced operation unable ever to see the value it saw.
  bool StrandsReader(const ModelOp& op, int from, int to) const {
    if (to == from || writers_[from] > 0) return false;
    return readers_[from] - (ReadValue(op) == from ? 1 : 0) > 0;
  }

 private:
  static constexpr int kNone = -1;

  // The value `op` must see to be placed, if any.
  static int ReadValue(const ModelOp& op) {
    if (!op.completed) return kNone;
    if (op.kind == OpKind::kGet) return op.read;
    if (op.kind == OpKind::kCas && op.cas_succeeded) return op.expected;
    return kNone;
  }
  // The value `op` may write, if any.
  static int WrittenValue(const ModelOp& op) {
    if (op.kind == OpKind::kPut) return op.value;
    if (op.kind == OpKind::kCas && (op.cas_succeeded || !op.completed)) return op.value;
    return kNone;
  }

  void Count(const ModelOp& op, int delta) {
    if (const int read = ReadValue(op); read != kNone) readers_[read] += delta;
    if (const int written = WrittenValue(op); written != kNone) writers_[written] += delta;
  }

  std::vector<int> readers_;  // by value id
  std::vector<int> writers_;  // by value id
};

// Incomplete puts of unobserved values are interchangeable: each sets the register to
// kUnobservedId, has no output, and may take effect anywhere after its call. A linearization
// that places one while an earlier-called one is unplaced may swap the two (the earlier one is
// available wherever the later one is), so the search only places them in order of call. That
// keeps it from trying every subset of the timed-out writes nobody read.
class InterchangeablePuts {
 public:
  explicit InterchangeablePuts(const std::vector<ModelOp>& ops) : rank_(ops.size(), kNone) {
    std::vector<int> puts;
    for (int op = 0; op < static_cast<int>(ops.size()); ++op) {
      if (!ops[op].completed && ops[op].kind == OpKind::kPut && ops[op].value == kUnobservedId) {
        puts.push_back(op);
      }
    }
    std::stable_sort(puts.begin(), puts.end(), [&](int a, int b) {
      return ops[a].source->call_time < ops[b].source->call_time;
    });
    for (size_t i = 0; i < puts.size(); ++i) rank_[puts[i]] = static_cast<int>(i);
  }

  bool MayPlace(int op) const { return rank_[op] == kNone || rank_[op] == placed_; }
  void Place(int op) { placed_ += rank_[op] == kNone ? 0 : 1; }
  void Unplace(int op) { placed_ -= rank_[op] == kNone ? 0 : 1; }

 private:
  static constexpr int kNone = -1;
  std::vector<int> rank_;  // per operation: its place in call order, or kNone
  int placed_ = 0;         // the placed ones are always the first `placed_`
};

// Wing & Gong / Lowe depth-first search over one key's operations. Walking the event list from
// the head, every call met before the first return belongs to an operation that may take effect
// next: all operations that returned before it was called are already linearized. Meeting a
// return means the operation returning there cannot be postponed any further, so once every
// candidate has been tried the search backtracks.
class KeySearch {
 public:
  KeySearch(const std::vector<ModelOp>& ops, uint64_t steps_max)
      : ops_(ops),
        steps_max_(steps_max),
        completed_total_(
            std::count_if(ops.begin(), ops.end(), [](const ModelOp& op) { return op.completed; })),
        events_(ops),
        linearized_(ops.size()),
        visited_(linearized_.words().size()),
        census_(ops),
        interchangeable_(ops) {}

  SearchOutcome Run() {
    int node = events_.First();
    // Success once every completed operation is placed; incomplete ones may be left out.
    while (completed_placed_ < completed_total_) {
      if (steps_ == steps_max_) return Finish(SearchOutcome::Kind::kStepsExhausted);
      if (visited_.bytes() > kVisitedBytesMax) return Finish(SearchOutcome::Kind::kMemoryExhausted);
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
  static constexpr int kNoOp = -1;
  struct Frame {
    int call_node;
    ModelState state;  // before the operation
  };

  // Places the operation of `call_node` next if the model allows it, it is not a dead end, and
  // the configuration it leads to is new.
  bool TryLinearize(int call_node) {
    const int op = events_.OpOf(call_node);
    if (!interchangeable_.MayPlace(op)) return false;
    const std::optional<ModelState> next = Step(ops_[op], state_);
    if (!next) return false;
    if (census_.StrandsReader(ops_[op], state_.value, next->value)) {
      // A legal but doomed extension; it still shows how far a linearization gets.
      if (stack_.size() + 1 > longest_prefix_.size()) RememberPrefix(op);
      return false;
    }
    linearized_.Insert(op);
    if (!visited_.Insert(linearized_, next->Key())) {
      linearized_.Erase(op);
      return false;
    }
    stack_.push_back({call_node, state_});
    events_.Lift(call_node);
    census_.Place(ops_[op]);
    interchangeable_.Place(op);
    state_ = *next;
    if (ops_[op].completed) ++completed_placed_;
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
    census_.Unplace(ops_[op]);
    interchangeable_.Unplace(op);
    state_ = frame.state;
    if (ops_[op].completed) --completed_placed_;
    return events_.Next(frame.call_node);
  }

  // Records the placed operations, then `last_op` if given, as the longest prefix so far.
  void RememberPrefix(int last_op = kNoOp) {
    longest_prefix_.clear();
    for (const Frame& frame : stack_) longest_prefix_.push_back(events_.OpOf(frame.call_node));
    if (last_op != kNoOp) longest_prefix_.push_back(last_op);
  }

  SearchOutcome Finish(SearchOutcome::Kind kind) {
    return {kind,
            kind == SearchOutcome::Kind::kNotLinearizable ? longest_prefix_ : std::vector<int>{},
            steps_};
  }

  const std::vector<ModelOp>& ops_;
  const uint64_t steps_max_;
  const size_t completed_total_;
  EventList events_;
  OpSet linearized_;
  VisitedSet visited_;
  ValueCensus census_;
  InterchangeablePuts interchangeable_;
  std::vector<Frame> stack_;
  std::vector<int> longest_prefix_;
  ModelState state_;
  size_t completed_placed_ = 0;
  uint64_t steps_ = 0;
};

}  // namespace

SearchOutcome SearchLinearization(const std::vector<ModelOp>& ops, uint64_t steps_max) {
  return KeySearch(ops, steps_max).Run();
}

}  // namespace synod::check::internal
