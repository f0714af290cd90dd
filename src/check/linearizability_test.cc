#include "check/linearizability.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <chrono>
#include <iostream>
#include <map>
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

TEST(LinearizableHistories, OneOfTwoConcurrentCasesFromAbsentWins) {
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

// Generates a history that is linearizable by construction: every operation takes effect at an
// instant inside its interval (a timed-out one at some instant after its call, or never), and
// outputs come from executing the operations in the order of those instants.
History GenerateLinearizableHistory(Rng& rng, const Workload& workload) {
  History history;
  std::vector<std::tuple<int64_t, size_t>> effects;  // (instant, operation)
  std::vector<int64_t> client_free_time(workload.clients_count, 0);
  for (int i = 0; i < workload.ops_count; ++i) {
    // The client that becomes free first goes next, which keeps all of them busy.
    const int client =
        static_cast<int>(std::min_element(client_free_time.begin(), client_free_time.end()) -
                         client_free_time.begin());
    const int64_t call = client_free_time[client] + rng.Between(0, workload.think_time_max);
    const int64_t end = call + rng.Between(0, workload.duration_max);
    client_free_time[client] = end;
    const bool timed_out = rng.Chance(workload.timeout_chance);
    const std::string& key = Pick(rng, workload.keys);
    const std::string value = workload.values.empty()
                                  ? "c" + std::to_string(client) + "-" + std::to_string(i)
                                  : Pick(rng, workload.values);
    const uint64_t kind = rng.Below(5);
    if (kind < 2) {
      history.push_back(Put(client, key, value, call, timed_out ? kNoReply : end));
    } else if (kind < 4) {
      history.push_back(Get(client, key, kAbsent, call, timed_out ? kNoReply : end));
    } else {
      const std::optional<std::string> expected =
          rng.Chance(0.2) ? kAbsent
                          : std::optional<std::string>(
                                workload.values.empty()
                                    ? "c" + std::to_string(rng.Below(workload.clients_count)) +
                                          "-" + std::to_string(rng.Below(i + 1))
                                    : Pick(rng, workload.values));
      history.push_back(Cas(client, key, expected, value, false, call, timed_out ? kNoReply : end));
    }
    if (!timed_out) {
      effects.emplace_back(rng.Between(call, end), history.size() - 1);
    } else if (rng.Chance(0.5)) {
      effects.emplace_back(call + rng.Between(0, workload.late_effect_max), history.size() - 1);
    }
  }
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
  return history;
}

// Changes one completed operation's output (or a put's value), which usually, not always,
// breaks linearizability.
void Mutate(Rng& rng, History& history, const std::vector<std::string>& values) {
  KvOperation& op = history[rng.Below(history.size())];
  if (!op.completed) return;  // any output is acceptable for it
  switch (op.kind) {
    case OpKind::kGet: {
      const std::optional<std::string> read = op.read;
      while (op.read == read) {
        op.read = rng.Chance(0.25) ? kAbsent : std::optional<std::string>(Pick(rng, values));
      }
      break;
    }
    case OpKind::kCas:
      op.cas_succeeded = !op.cas_succeeded;
      break;
    case OpKind::kPut:
      op.value = Pick(rng, values);
      break;
  }
}

// The definition of linearizability, applied literally: try every sequence of distinct
// operations and accept if one contains every completed operation, never places an operation
// before one that returned before it was called, and replays correctly against a map that
// starts empty (incomplete operations: a cas succeeds iff it may; outputs are not compared).
// Exponential; for histories of a handful of operations.
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
    std::map<std::string, std::optional<std::string>> state;
    for (size_t index : order_) {
      const KvOperation& op = history_[index];
      std::optional<std::string>& current = state[op.key];
      if (op.kind == OpKind::kPut) current = op.value;
      if (op.kind == OpKind::kGet && op.completed && op.read != current) return false;
      if (op.kind == OpKind::kCas) {
        const bool succeeds = current == op.expected;
        if (op.completed && succeeds != op.cas_succeeded) return false;
        if (succeeds) current = op.value;
      }
    }
    return true;
  }

  const History& history_;
  std::vector<bool> used_;
  std::vector<size_t> order_;
};

TEST(CrossCheck, AgreesWithBruteForceOnSmallRandomHistories) {
  Rng rng(20240611);
  const std::vector<std::string> values = {"a", "b", "c"};
  int linearizable_count = 0;
  const int histories_count = 4000;
  for (int round = 0; round < histories_count; ++round) {
    Workload workload;
    workload.ops_count = static_cast<int>(rng.Between(1, 7));
    workload.clients_count = static_cast<int>(rng.Between(1, 4));
    workload.keys =
        rng.Chance(0.3) ? std::vector<std::string>{"x", "y"} : std::vector<std::string>{"x"};
    workload.values = values;
    workload.think_time_max = 3;
    workload.duration_max = 6;
    workload.timeout_chance = 0.25;
    workload.late_effect_max = 15;
    History history = GenerateLinearizableHistory(rng, workload);
    if (rng.Chance(0.6)) Mutate(rng, history, values);

    const bool expected = BruteForceChecker(history).Linearizable();
    const CheckResult result = CheckKvLinearizability(history);
    ASSERT_NE(result.verdict, Verdict::kUnknown);
    const bool actual = result.verdict == Verdict::kLinearizable;
    if (actual != expected) {
      std::string dump;
      for (const KvOperation& op : history) dump += "  " + FormatOperation(op) + "\n";
      FAIL() << "round " << round << ": brute force says "
             << (expected ? "linearizable" : "not linearizable") << ", checker says "
             << VerdictName(result.verdict) << "\n"
             << dump << result.explanation;
    }
    EXPECT_EQ(result.explanation.empty(), actual);
    linearizable_count += actual ? 1 : 0;
  }
  // Both verdicts must be well represented, or the cross-check proves little.
  EXPECT_GT(linearizable_count, histories_count / 5);
  EXPECT_LT(linearizable_count, histories_count * 4 / 5);
}

Workload LargeWorkload() {
  Workload workload;
  workload.ops_count = 6000;
  workload.clients_count = 10;
  workload.keys = {"a", "b", "c"};
  workload.think_time_max = 2;
  workload.duration_max = 20;
  workload.timeout_chance = 0.015;  // a few dozen timeouts per key
  if (getenv("TO")) workload.timeout_chance = atof(getenv("TO"));  // EXPERIMENT
  if (getenv("CL")) workload.clients_count = atoi(getenv("CL"));  // EXPERIMENT
  workload.late_effect_max = 500;
  return workload;
}

TEST(Performance, LargeConcurrentHistoryWithTimeoutsIsCheckedWithinBudget) {
  Rng rng(7);
  const History history = GenerateLinearizableHistory(rng, LargeWorkload());
  const auto start = std::chrono::steady_clock::now();
  const CheckResult result = CheckKvLinearizability(history);
  const auto elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - start)
                              .count();
  const auto timed_out = std::count_if(history.begin(), history.end(),
                                       [](const KvOperation& op) { return !op.completed; });
  std::cout << "[ perf     ] " << history.size() << " ops over 3 keys, " << timed_out
            << " timed out: " << elapsed_ms << " ms, " << result.search_steps << " search steps\n";
  EXPECT_EQ(result.verdict, Verdict::kLinearizable) << result.explanation;
}

TEST(Performance, StaleReadLateInALargeHistoryIsFound) {
  Rng rng(7);
  History history = GenerateLinearizableHistory(rng, LargeWorkload());
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

  const auto start = std::chrono::steady_clock::now();
  const CheckResult result = CheckKvLinearizability(history);
  const auto elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - start)
                              .count();
  std::cout << "[ perf     ] violation found in " << elapsed_ms << " ms, " << result.search_steps
            << " search steps\n";
  EXPECT_EQ(result.verdict, Verdict::kNotLinearizable);
  EXPECT_EQ(result.key, "a");
}

}  // namespace
}  // namespace synod::check
