#include "check/register_model.h"

#include <string>
#include <unordered_map>

#include "base/assert.h"

namespace synod::check::internal {
namespace {

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
// that succeeds on it, or a cas that fails only because of it. Without this, the search would
// try every timed-out write at every point after its call, multiplying the search space.
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
  SYNOD_UNREACHABLE("unknown OpKind");
}

// Ids for one key's values: observed values (read by a completed get, expected by a cas) get
// their own ids, every other value gets kUnobservedId.
class ValueIds {
 public:
  explicit ValueIds(const std::vector<const KvOperation*>& ops) {
    for (const KvOperation* op : ops) {
      if (op->kind == OpKind::kGet && op->completed && op->read) Observe(*op->read);
      if (op->kind == OpKind::kCas && op->expected) Observe(*op->expected);
    }
  }

  int Of(const std::optional<std::string>& value) const {
    if (!value) return kAbsentId;
    const auto it = observed_.find(*value);
    return it == observed_.end() ? kUnobservedId : it->second;
  }

 private:
  void Observe(const std::string& value) {
    observed_.try_emplace(value, kUnobservedId + 1 + static_cast<int>(observed_.size()));
  }

  std::unordered_map<std::string, int> observed_;  // looked up only, never iterated
};

}  // namespace

std::vector<ModelOp> ToModelOps(const std::vector<const KvOperation*>& ops) {
  ValueIds ids(ops);
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
  SYNOD_UNREACHABLE("unknown OpKind");
}

}  // namespace synod::check::internal
