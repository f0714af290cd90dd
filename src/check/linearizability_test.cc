#include "check/linearizability.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>
#include <set>
#include <tuple>

#include "base/rng.h"

namespace synod::check {
namespace {

using History = std::vector<KvOperation>;
using Verdict = CheckResult::Verdict;

const std::optional<std::string> kAbsent = std::nullopt;
// Return time of an operation whose client gave up waiting: the outcome is unknown.
constexpr int64_t kNoReply = -1;

KvOperation Op(int client, std::string key, OpKind kind, int64_t call, int64_t ret) {
  KvOperation op;
  op.client = client;
  op.key = std::move(key);
  op.kind = kind;
  op.call_time = call;
  op.completed = ret != kNoReply;
  op.return_time = op.completed ? ret : 0;
  return op;
}

KvOperation Put(int client, std::string key, std::string value, int64_t call, int64_t ret) {
  KvOperation op = Op(client, std::move(key), OpKind::kPut, call, ret);
  op.value = std::move(value);
  return op;
}

KvOperation Get(int client, std::string key, std::optional<std::string> read, int64_t call,
                int64_t ret) {
  KvOperation op = Op(client, std::move(key), OpKind::kGet, call, ret);
  op.read = std::move(read);
  return op;
}

KvOperation Cas(int client, std::string key, std::optional<std::string> expected, std::string value,
                bool succeeded, int64_t call, int64_t ret) {
  KvOperation op = Op(client, std::move(key), OpKind::kCas, call, ret);
  op.expected = std::move(expected);
  op.value = std::move(value);
  op.cas_succeeded = succeeded;
  return op;
}

const char* VerdictName(Verdict verdict) {
  switch (verdict) {
    case Verdict::kLinearizable:
      return "linearizable";
    case Verdict::kNotLinearizable:
      return "not linearizable";
    case Verdict::kUnknown:
      return "unknown";
  }
  return "?";
}

testing::AssertionResult HasVerdict(const History& history, Verdict expected) {
  const CheckResult result = CheckKvLinearizability(history);
  if (result.verdict == expected) return testing::AssertionSuccess();
  return testing::AssertionFailure()
         << "verdict is " << VerdictName(result.verdict) << " (key \"" << result.key << "\")\n"
         << result.explanation;
}

testing::AssertionResult Linearizable(const History& history) {
  return HasVerdict(history, Verdict::kLinearizable);
}

testing::AssertionResult NotLinearizable(const History& history) {
  return HasVerdict(history, Verdict::kNotLinearizable);
}

// ---------------------------------------------------------------------------------------------
// Histories that must be accepted.

TEST(LinearizableHistories, EmptyHistory) { EXPECT_TRUE(Linearizable({})); }

TEST(LinearizableHistories, SequentialPutsAndGets) {
  EXPECT_TRUE(Linearizable({
      Get(1, "x", kAbsent, 0, 1),
      Put(1, "x", "a", 2, 3),
      Get(2, "x", "a", 4, 5),
      Put(2, "x", "b", 6, 7),
      Get(1, "x", "b", 8, 9),
  }));
}

TEST(LinearizableHistories, ReadsOverlappingAPutMaySeeEitherValue) {
  EXPECT_TRUE(Linearizable({
      Put(1, "x", "a", 0, 10),
      Put(1, "x", "b", 20, 40),
      Get(2, "x", "a", 25, 30),  // before b took effect
      Get(3, "x", "b", 26, 35),  // after
      Get(2, "x", "b", 41, 45),
  }));
}

TEST(LinearizableHistories, ConcurrentPutsMayTakeEffectInEitherOrder) {
  for (const std::string last : {"a", "b"}) {
    EXPECT_TRUE(Linearizable({
        Put(1, "x", "a", 0, 10),
        Put(2, "x", "b", 0, 10),
        Get(3, "x", last, 11, 12),
    })) << "last = "
        << last;
  }
}

TEST(LinearizableHistories, OperationReturningWhenAnotherIsCalledIsConcurrentWithIt) {
  // Intervals are closed: the get at [10, 20] may take effect at 10, before the put.
  EXPECT_TRUE(Linearizable({Put(1, "x", "a", 0, 10), Get(2, "x", kAbsent, 10, 20)}));
  EXPECT_TRUE(NotLinearizable({Put(1, "x", "a", 0, 10), Get(2, "x", kAbsent, 11, 20)}));
}

TEST(LinearizableHistories, TimedOutPutObservedLater) {
  EXPECT_TRUE(Linearizable({
      Put(1, "x", "a", 0, kNoReply),
      Get(2, "x", kAbsent, 5, 6),  // not yet applied
      Get(2, "x", "a", 100, 101),  // applied in between
      Get(3, "x", "a", 200, 201),
  }));
}

TEST(LinearizableHistories, TimedOutPutNeverObserved) {
  EXPECT_TRUE(Linearizable({
      Put(1, "x", "a", 0, kNoReply),
      Get(2, "x", kAbsent, 5, 6),
      Get(2, "x", kAbsent, 100, 101),
  }));
}

TEST(LinearizableHistories, TimedOutPutMayTakeEffectAfterLaterWrites) {
  EXPECT_TRUE(Linearizable({
      Put(1, "x", "a", 0, kNoReply), Put(2, "x", "b", 10, 20), Get(2, "x", "b", 30, 40),
      Get(3, "x", "a", 50, 60),  // the retried-by-the-network put landed at ~45
  }));
}

TEST(LinearizableHistories, TimedOutGetIsIgnored) {
  EXPECT_TRUE(Linearizable({Get(1, "x", "never written", 0, kNoReply), Put(2, "x", "a", 1, 2)}));
}

TEST(LinearizableHistories, CasSucceedsOnTheExpectedValueAndFailsOtherwise) {
  EXPECT_TRUE(Linearizable({
      Cas(1, "x", kAbsent, "a", /*succeeded=*/true, 0, 1),  // absent == absent
      Cas(1, "x", kAbsent, "b", /*succeeded=*/false, 2, 3),
      Cas(2, "x", "a", "b", /*succeeded=*/true, 4, 5),
      Cas(2, "x", "a", "c", /*succeeded=*/false, 6, 7),
      Get(1, "x", "b", 8, 9),
  }));
}

TEST(LinearizableHistories, OnlyOneOfTwoConcurrentCasFromAbsentWins) {
  EXPECT_TRUE(Linearizable({
      Cas(1, "x", kAbsent, "a", /*succeeded=*/false, 0, 10),
      Cas(2, "x", kAbsent, "b", /*succeeded=*/true, 0, 10),
      Get(3, "x", "b", 11, 12),
  }));
}

TEST(LinearizableHistories, TimedOutCasObservedLater) {
  EXPECT_TRUE(Linearizable({
      Put(1, "x", "a", 0, 1),
      Cas(1, "x", "a", "b", /*succeeded=*/false, 2, kNoReply),  // output unknown
      Get(2, "x", "b", 10, 11),
  }));
}

TEST(LinearizableHistories, TimedOutPutMayExplainAFailedCas) {
  // Only the timed-out put can have replaced "a" before the cas.
  EXPECT_TRUE(Linearizable({
      Put(1, "x", "a", 0, 10),
      Put(2, "x", "b", 12, kNoReply),
      Cas(3, "x", "a", "c", /*succeeded=*/false, 20, 30),
  }));
}

TEST(LinearizableHistories, EachFailedCasMayUseItsOwnUnreadTimedOutPut) {
  EXPECT_TRUE(Linearizable({
      Put(1, "x", "a", 0, 1),
      Put(2, "x", "p", 2, kNoReply),
      Put(3, "x", "q", 2, kNoReply),
      Cas(1, "x", "a", "c", /*succeeded=*/false, 5, 6),
      Put(1, "x", "a", 7, 8),
      Cas(1, "x", "a", "d", /*succeeded=*/false, 9, 10),
  }));
}

// ---------------------------------------------------------------------------------------------
// Histories that must be rejected.

TEST(NonLinearizableHistories, StaleReadAfterACompletedPut) {
  EXPECT_TRUE(NotLinearizable({
      Put(1, "x", "a", 0, 10),
      Put(1, "x", "b", 20, 30),
      Get(2, "x", "a", 40, 50),
  }));
}

TEST(NonLinearizableHistories, ReadOfAValueNeverWritten) {
  EXPECT_TRUE(NotLinearizable({Put(1, "x", "a", 0, 10), Get(2, "x", "z", 20, 30)}));
}

TEST(NonLinearizableHistories, ReadersObservingConcurrentWritesInOppositeOrders) {
  // Client 3 sees a then b, client 4 sees b then a: each put took effect once, so the two
  // second reads would have to see the same (last) value.
  EXPECT_TRUE(NotLinearizable({
      Put(1, "x", "a", 0, 100),
      Put(2, "x", "b", 0, 100),
      Get(3, "x", "a", 10, 20),
      Get(4, "x", "b", 10, 20),
      Get(3, "x", "b", 30, 40),
      Get(4, "x", "a", 30, 40),
  }));
}

TEST(NonLinearizableHistories, CasThatSucceededWhenItCouldNotHave) {
  EXPECT_TRUE(NotLinearizable({
      Put(1, "x", "a", 0, 10),
      Cas(2, "x", "b", "c", /*succeeded=*/true, 20, 30),
  }));
}

TEST(NonLinearizableHistories, CasThatFailedOnTheExpectedValue) {
  EXPECT_TRUE(NotLinearizable({
      Put(1, "x", "a", 0, 10),
      Cas(2, "x", "a", "c", /*succeeded=*/false, 20, 30),
  }));
}

TEST(NonLinearizableHistories, ReadOfAPutCalledAfterTheReadReturned) {
  EXPECT_TRUE(NotLinearizable({Get(1, "x", "a", 0, 10), Put(2, "x", "a", 20, 30)}));
}

TEST(NonLinearizableHistories, TimedOutPutCannotTakeEffectBeforeItWasCalled) {
  EXPECT_TRUE(NotLinearizable({Get(1, "x", "a", 0, 10), Put(2, "x", "a", 20, kNoReply)}));
}

TEST(NonLinearizableHistories, TimedOutPutTakesEffectAtMostOnce) {
  EXPECT_TRUE(NotLinearizable({
      Put(1, "x", "a", 0, kNoReply), Put(2, "x", "b", 10, 20),
      Get(3, "x", "a", 30, 40),  // a landed after b...
      Get(3, "x", "b", 50, 60),  // ...so b cannot be back
  }));
}

TEST(NonLinearizableHistories, TimedOutPutCannotExplainAFailedCasIfTheOldValueIsReadAfter) {
  EXPECT_TRUE(NotLinearizable({
      Put(1, "x", "a", 0, 10),
      Put(2, "x", "b", 12, kNoReply),
      Cas(3, "x", "a", "c", /*succeeded=*/false, 20, 30),
      Get(3, "x", "a", 40, 50),
  }));
}

TEST(NonLinearizableHistories, OneTimedOutPutCannotExplainTwoFailedCas) {
  EXPECT_TRUE(NotLinearizable({
      Put(1, "x", "a", 0, 1),
      Put(2, "x", "p", 2, kNoReply),
      Cas(1, "x", "a", "c", /*succeeded=*/false, 5, 6),
      Put(1, "x", "a", 7, 8),
      Cas(1, "x", "a", "d", /*succeeded=*/false, 9, 10),
  }));
}

// ---------------------------------------------------------------------------------------------
// Several keys, reporting, budget.

History ThreeKeysWithAStaleReadOnY() {
  return {
      Put(1, "x", "a", 0, 10),  Put(2, "y", "a", 0, 10),  Put(3, "z", "a", 0, 10),
      Put(1, "x", "b", 20, 30), Put(2, "y", "b", 20, 30), Put(3, "z", "b", 20, 30),
      Get(1, "x", "b", 40, 50), Get(2, "y", "a", 40, 50), Get(3, "z", "b", 40, 50),
  };
}

TEST(Reporting, ViolationOnOneKeyIsReportedWithThatKey) {
  const CheckResult result = CheckKvLinearizability(ThreeKeysWithAStaleReadOnY());
  EXPECT_EQ(result.verdict, Verdict::kNotLinearizable);
  EXPECT_EQ(result.key, "y");
}

TEST(Reporting, ExplanationNamesTheKeyThePrefixAndTheStuckOperation) {
  const CheckResult result = CheckKvLinearizability(ThreeKeysWithAStaleReadOnY());
  const std::string stale_get = FormatOperation(Get(2, "y", "a", 40, 50));
  EXPECT_NE(result.explanation.find("Key \"y\""), std::string::npos) << result.explanation;
  EXPECT_NE(result.explanation.find("Longest linearizable prefix found: 2 operation(s), leaving "
                                    "the value \"b\""),
            std::string::npos)
      << result.explanation;
  EXPECT_NE(result.explanation.find(stale_get + ": reads \"a\" but the value is \"b\""),
            std::string::npos)
      << result.explanation;
}

TEST(Reporting, FirstViolatingKeyInHistoryOrderIsReported) {
  const CheckResult result = CheckKvLinearizability({
      Get(1, "q", "never written", 0, 1),
      Get(1, "p", "never written", 2, 3),
  });
  EXPECT_EQ(result.verdict, Verdict::kNotLinearizable);
  EXPECT_EQ(result.key, "q");
}

TEST(Reporting, FormatOperationShowsTimesClientAndValues) {
  EXPECT_EQ(FormatOperation(Put(3, "k", "v", 10, 20)), "[10, 20] client 3: put(\"k\", \"v\")");
  EXPECT_EQ(FormatOperation(Get(4, "k", kAbsent, 1, 2)), "[1, 2] client 4: get(\"k\") -> absent");
  EXPECT_EQ(FormatOperation(Cas(5, "k", "v", "w", true, 3, kNoReply)),
            "[3, timed out] client 5: cas(\"k\", \"v\" -> \"w\") -> ?");
}

TEST(Budget, ExhaustedBudgetGivesUnknown) {
  const CheckResult result = CheckKvLinearizability(
      {Put(1, "x", "a", 0, 10), Get(2, "x", "a", 20, 30)}, /*max_search_steps=*/1);
  EXPECT_EQ(result.verdict, Verdict::kUnknown);
  EXPECT_EQ(result.key, "x");
  EXPECT_FALSE(result.explanation.empty());
}

TEST(Budget, ViolationOnAnotherKeyWinsOverAnExhaustedBudget) {
  History history;
  for (int i = 0; i < 10; ++i) history.push_back(Put(1, "slow", "v", 10 * i, 10 * i + 5));
  history.push_back(Get(2, "bad", "never written", 0, 1));
  const CheckResult result = CheckKvLinearizability(history, /*max_search_steps=*/5);
  EXPECT_EQ(result.verdict, Verdict::kNotLinearizable);
  EXPECT_EQ(result.key, "bad");
}

// ---------------------------------------------------------------------------------------------
// Generated histories.

// The shape of a simulated workload: closed-loop clients, each issuing one operation at a time.
struct Workload {
  int ops_count = 0;
  int clients_count = 1;
  std::vector<std::string> keys;
  std::vector<std::string> values;  // empty: every write gets a fresh, unique value
  int64_t think_time_max = 0;       // between a client's operations
  int64_t duration_max = 0;
  double timeout_chance = 0;
  int64_t late_effect_max = 0;  // how long after its call a timed-out operation may land
};

const std::string& Pick(Rng& rng, const std::vector<std::string>& from) {
  return from[rng.Below(from.size())];
}

std::string NewValue(Rng& rng, const Workload& workload, int client, int index) {
  if (!workload.values.empty()) return Pick(rng, workload.values);
  return "c" + std::to_string(client) + "-" + std::to_string(index);
}

// A random operation with its outputs left blank. A cas expects absent or the value of the last
// write issued on the key (which may or may not have landed), so both outcomes are common.
KvOperation NewOperation(Rng& rng, const Workload& workload, int client, int index,
                         const std::string& key, int64_t call, int64_t ret,
                         std::optional<std::string>& last_issued_write) {
  const uint64_t kind = rng.Below(5);
  if (kind < 2) {
    KvOperation put = Put(client, key, NewValue(rng, workload, client, index), call, ret);
    last_issued_write = put.value;
    return put;
  }
  if (kind < 4) return Get(client, key, kAbsent, call, ret);
  const std::optional<std::string> expected = rng.Chance(0.2) ? kAbsent : last_issued_write;
  KvOperation cas = Cas(client, key, expected, NewValue(rng, workload, client, index),
                        /*succeeded=*/false, call, ret);
  last_issued_write = cas.value;
  return cas;
}

// When `op` takes effect: inside its interval if it completed; if it timed out, at some
// instant after its call, or (half the time) never.
std::optional<int64_t> EffectInstant(Rng& rng, const Workload& workload, const KvOperation& op,
                                     int64_t end) {
  if (op.completed) return static_cast<int64_t>(rng.Between(op.call_time, end));
  if (rng.Chance(0.5)) return std::nullopt;
  return op.call_time + static_cast<int64_t>(rng.Between(0, workload.late_effect_max));
}

// Fills in outputs by executing the operations one by one in the order they took effect.
void ExecuteInEffectOrder(std::vector<std::tuple<int64_t, size_t>> effects, History& history) {
  std::sort(effects.begin(), effects.end());
  std::map<std::string, std::optional<std::string>> state;
  for (const auto& [instant, index] : effects) {
    KvOperation& op = history[index];
    std::optional<std::string>& current = state[op.key];
    if (op.kind == OpKind::kPut) current = op.value;
    if (op.kind == OpKind::kGet) op.read = current;
    if (op.kind == OpKind::kCas) {
      op.cas_succeeded = current == op.expected;
      if (op.cas_succeeded) current = op.value;
    }
  }
}

// Generates a history that is linearizable by construction: every operation takes effect at an
// instant inside its interval (a timed-out one at some instant after its call, or never), and
// outputs come from executing the operations in the order of those instants.
History GenerateLinearizableHistory(Rng& rng, const Workload& workload) {
  History history;
  std::vector<std::tuple<int64_t, size_t>> effects;  // (instant, operation)
  std::vector<int64_t> client_free_time(workload.clients_count, 0);
  std::map<std::string, std::optional<std::string>> last_issued_write;  // per key
  for (int index = 0; index < workload.ops_count; ++index) {
    // The client that becomes free first goes next, which keeps all of them busy.
    const int client =
        static_cast<int>(std::min_element(client_free_time.begin(), client_free_time.end()) -
                         client_free_time.begin());
    const int64_t call = client_free_time[client] + rng.Between(0, workload.think_time_max);
    const int64_t end = call + rng.Between(0, workload.duration_max);
    client_free_time[client] = end;  // a timed-out client gives up at `end` and moves on
    const int64_t ret = rng.Chance(workload.timeout_chance) ? kNoReply : end;
    const std::string& key = Pick(rng, workload.keys);
    history.push_back(
        NewOperation(rng, workload, client, index, key, call, ret, last_issued_write[key]));
    const std::optional<int64_t> instant = EffectInstant(rng, workload, history.back(), end);
    if (instant) effects.emplace_back(*instant, history.size() - 1);
  }
  ExecuteInEffectOrder(std::move(effects), history);
  return history;
}

// Changes one completed operation's output or argument, which usually, not always, breaks
// linearizability. Replacement values come from those written in the history, plus one never
// written.
void Mutate(Rng& rng, History& history) {
  std::vector<std::string> values = {"never written"};
  for (const KvOperation& op : history) {
    if (op.kind != OpKind::kGet) values.push_back(op.value);
  }
  const auto any_value = [&] {
    return rng.Chance(0.25) ? kAbsent : std::optional<std::string>(Pick(rng, values));
  };
  KvOperation& op = history[rng.Below(history.size())];
  if (!op.completed) return;  // any output is acceptable for it
  switch (op.kind) {
    case OpKind::kGet:
      op.read = any_value();
      break;
    case OpKind::kCas:
      if (rng.Chance(0.5)) {
        op.cas_succeeded = !op.cas_succeeded;
      } else {
        op.expected = any_value();
      }
      break;
    case OpKind::kPut:
      op.value = Pick(rng, values);
      break;
  }
}

using MapState = std::map<std::string, std::optional<std::string>>;

// Executes `op` on `state` as the specification says; false if its recorded output disagrees.
// An incomplete operation's output is unknown, so it never disagrees.
bool ExecuteSpec(const KvOperation& op, MapState& state) {
  std::optional<std::string>& current = state[op.key];
  switch (op.kind) {
    case OpKind::kPut:
      current = op.value;
      return true;
    case OpKind::kGet:
      return !op.completed || op.read == current;
    case OpKind::kCas: {
      const bool succeeds = current == op.expected;
      if (op.completed && succeeds != op.cas_succeeded) return false;
      if (succeeds) current = op.value;
      return true;
    }
  }
  return false;
}

// The definition of linearizability, applied literally: try every sequence of distinct
// operations and accept if one contains every completed operation, never places an operation
// before one that returned before it was called, and replays correctly against a map that
// starts empty. Exponential; for histories of a handful of operations.
class BruteForceChecker {
 public:
  explicit BruteForceChecker(const History& history)
      : history_(history), used_(history.size(), false) {}

  bool Linearizable() {
    if (IsLinearization()) return true;
    for (size_t i = 0; i < history_.size(); ++i) {
      if (used_[i]) continue;
      used_[i] = true;
      order_.push_back(i);
      const bool found = Linearizable();
      order_.pop_back();
      used_[i] = false;
      if (found) return true;
    }
    return false;
  }

 private:
  bool IsLinearization() const {
    for (size_t i = 0; i < history_.size(); ++i) {
      if (history_[i].completed && !used_[i]) return false;
    }
    for (size_t i = 0; i < order_.size(); ++i) {
      for (size_t j = i + 1; j < order_.size(); ++j) {
        const KvOperation& later = history_[order_[j]];
        if (later.completed && later.return_time < history_[order_[i]].call_time) return false;
      }
    }
    MapState state;
    for (size_t index : order_) {
      if (!ExecuteSpec(history_[index], state)) return false;
    }
    return true;
  }

  const History& history_;
  std::vector<bool> used_;
  std::vector<size_t> order_;
};

// A plain search for medium histories (up to 32 operations): extends a sequence one operation at
// a time with any unplaced operation that no unplaced completed operation has to precede, and
// remembers the (placed set, map) pairs it has seen. No splitting by key, no canonical forms, no
// pruning beyond the memo: nothing the checker's cleverness could share a bug with.
class MemoizedReference {
 public:
  explicit MemoizedReference(const History& history) : history_(history) {}

  bool Linearizable() { return Extend(0, {}); }

 private:
  bool Extend(uint32_t placed, const MapState& state) {
    if (AllCompletedPlaced(placed)) return true;
    if (!seen_.emplace(placed, state).second) return false;
    for (size_t i = 0; i < history_.size(); ++i) {
      if ((placed >> i) & 1 || MustWait(i, placed)) continue;
      MapState next = state;
      if (ExecuteSpec(history_[i], next) && Extend(placed | (uint32_t{1} << i), next)) return true;
    }
    return false;
  }

  bool AllCompletedPlaced(uint32_t placed) const {
    for (size_t i = 0; i < history_.size(); ++i) {
      if (history_[i].completed && !((placed >> i) & 1)) return false;
    }
    return true;
  }

  // Whether some unplaced completed operation returned before operation `i` was called.
  bool MustWait(size_t i, uint32_t placed) const {
    for (size_t j = 0; j < history_.size(); ++j) {
      const KvOperation& other = history_[j];
      if (!((placed >> j) & 1) && other.completed && other.return_time < history_[i].call_time) {
        return true;
      }
    }
    return false;
  }

  const History& history_;
  std::set<std::pair<uint32_t, MapState>> seen_;
};

// Random small workloads: few clients, short operations, many timeouts, one or two keys, and
// either three values (so they repeat) or fresh ones (so many are never read). Most histories
// get one mutation.
History RandomMutatedHistory(Rng& rng, int ops_min, int ops_max) {
  Workload workload;
  workload.ops_count = static_cast<int>(rng.Between(ops_min, ops_max));
  workload.clients_count = static_cast<int>(rng.Between(1, 4));
  workload.keys =
      rng.Chance(0.3) ? std::vector<std::string>{"x", "y"} : std::vector<std::string>{"x"};
  if (rng.Chance(0.7)) workload.values = {"a", "b", "c"};
  workload.think_time_max = 3;
  workload.duration_max = 6;
  workload.timeout_chance = 0.25;
  workload.late_effect_max = 15;
  History history = GenerateLinearizableHistory(rng, workload);
  if (rng.Chance(0.9)) Mutate(rng, history);
  return history;
}

// Checks `histories_count` random histories with both the checker and `reference`; returns how
// many were linearizable. Stops at the first disagreement, showing the history.
template <typename Reference>
int CrossCheck(Rng& rng, int histories_count, int ops_min, int ops_max) {
  int linearizable_count = 0;
  for (int round = 0; round < histories_count; ++round) {
    const History history = RandomMutatedHistory(rng, ops_min, ops_max);
    const bool expected = Reference(history).Linearizable();
    const CheckResult result = CheckKvLinearizability(history);
    EXPECT_NE(result.verdict, Verdict::kUnknown);
    const bool actual = result.verdict == Verdict::kLinearizable;
    if (actual != expected) {
      std::string dump;
      for (const KvOperation& op : history) dump += "  " + FormatOperation(op) + "\n";
      ADD_FAILURE() << "round " << round << ": the reference says "
                    << (expected ? "linearizable" : "not linearizable") << ", the checker says "
                    << VerdictName(result.verdict) << "\n"
                    << dump << result.explanation;
      break;
    }
    EXPECT_EQ(result.explanation.empty(), actual);
    linearizable_count += actual ? 1 : 0;
  }
  return linearizable_count;
}

TEST(CrossCheck, AgreesWithBruteForceOnSmallRandomHistories) {
  Rng rng(20240611);
  const int histories_count = 4000;
  const int linearizable_count = CrossCheck<BruteForceChecker>(rng, histories_count, 1, 7);
  std::cout << "[ cross    ] " << linearizable_count << " of " << histories_count
            << " small histories linearizable\n";
  // Both verdicts must be well represented, or the cross-check proves little.
  EXPECT_GT(linearizable_count, histories_count / 5);
  EXPECT_LT(linearizable_count, histories_count * 4 / 5);
}

TEST(CrossCheck, AgreesWithMemoizedReferenceOnMediumRandomHistories) {
  Rng rng(99);
  const int histories_count = 1000;
  const int linearizable_count = CrossCheck<MemoizedReference>(rng, histories_count, 8, 16);
  std::cout << "[ cross    ] " << linearizable_count << " of " << histories_count
            << " medium histories linearizable\n";
  EXPECT_GT(linearizable_count, histories_count / 10);
  EXPECT_LT(linearizable_count, histories_count * 9 / 10);
}

// About 2,000 operations per key from 10 closed-loop clients, so around 10 are concurrent.
Workload LargeWorkload(double timeout_chance) {
  Workload workload;
  workload.ops_count = 6000;
  workload.clients_count = 10;
  workload.keys = {"a", "b", "c"};
  workload.think_time_max = 2;
  workload.duration_max = 20;
  workload.timeout_chance = timeout_chance;
  workload.late_effect_max = 500;  // a timed-out write may land ~250 operations later
  return workload;
}

// Checks `history`, printing how long it took.
CheckResult TimedCheck(const History& history) {
  const auto start = std::chrono::steady_clock::now();
  const CheckResult result = CheckKvLinearizability(history);
  const auto elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - start)
                              .count();
  const auto timed_out = std::count_if(history.begin(), history.end(),
                                       [](const KvOperation& op) { return !op.completed; });
  std::cout << "[ perf     ] " << history.size() << " ops, " << timed_out
            << " timed out: " << VerdictName(result.verdict) << " in " << elapsed_ms << " ms, "
            << result.search_steps << " search steps\n";
  return result;
}

TEST(Performance, LargeConcurrentHistoryWithTimeoutsIsCheckedWithinBudget) {
  Rng rng(7);
  const History history = GenerateLinearizableHistory(rng, LargeWorkload(0.015));
  const CheckResult result = TimedCheck(history);
  EXPECT_EQ(result.verdict, Verdict::kLinearizable) << result.explanation;
}

TEST(Performance, LargeHistoryWithOneOperationInTenTimedOutIsCheckedWithinBudget) {
  Rng rng(8);
  const History history = GenerateLinearizableHistory(rng, LargeWorkload(0.1));
  const CheckResult result = TimedCheck(history);
  EXPECT_EQ(result.verdict, Verdict::kLinearizable) << result.explanation;
}

TEST(Performance, StaleReadLateInALargeHistoryIsFound) {
  Rng rng(7);
  History history = GenerateLinearizableHistory(rng, LargeWorkload(0.015));
  // Make one late completed get on key "a" return the first value ever written there.
  const auto first_put = std::find_if(history.begin(), history.end(), [](const KvOperation& op) {
    return op.key == "a" && op.kind == OpKind::kPut && op.completed;
  });
  const auto late_get = std::find_if(history.rbegin(), history.rend(), [](const KvOperation& op) {
    return op.key == "a" && op.kind == OpKind::kGet && op.completed;
  });
  ASSERT_NE(first_put, history.end());
  ASSERT_NE(late_get, history.rend());
  late_get->read = first_put->value;

  const CheckResult result = TimedCheck(history);
  EXPECT_EQ(result.verdict, Verdict::kNotLinearizable);
  EXPECT_EQ(result.key, "a");
}

}  // namespace
}  // namespace synod::check
