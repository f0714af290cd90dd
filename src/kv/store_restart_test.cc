// Restarts: the store reopens with its state, and replaying the log is idempotent.
#include <gtest/gtest.h>

#include "base/rng.h"
#include "kv/kv_test_util.h"

namespace synod::kv {
namespace {

const std::string kAll(1, '\0');

std::string State(Store& s) {
  std::string out = "rev=" + std::to_string(s.Revision()) +
                    " compact=" + std::to_string(s.CompactRevision()) +
                    " applied=" + std::to_string(s.AppliedIndex()) + "\n";
  for (int64_t rev = std::max<int64_t>(1, s.CompactRevision()); rev <= s.Revision(); ++rev) {
    out += Get(s, kAll, kAll, rev).ShortDebugString() + "\n";
  }
  out += s.LeaseLeases().ShortDebugString();
  for (const auto& a : s.Alarms()) out += a.ShortDebugString();
  return out;
}

// A log of mixed commands.
std::vector<kvpb::Request> Log(int n, uint64_t seed) {
  Rng rng(seed);
  std::vector<kvpb::Request> log;
  log.push_back(GrantReq(1, 30));
  for (int i = 0; i < n; ++i) {
    const std::string key = "k" + std::to_string(rng.Below(20));
    switch (rng.Below(6)) {
      case 0:
        log.push_back(DelReq(key));
        break;
      case 1:
        log.push_back(PutReq(key, "leased", 1));
        break;
      case 2:
        log.push_back(CompactReq(static_cast<int64_t>(i / 2 + 1)));  // may fail: fine
        break;
      default:
        log.push_back(PutReq(key, std::to_string(i)));
    }
  }
  log.push_back(RevokeReq(1));
  return log;
}

TEST(KvRestart, AReopenedStoreHasTheSameState) {
  TestStore s;
  for (const auto& r : Log(200, 1)) s.Apply(r);
  s.ApplyOk(AlarmReq(kvpb::AlarmRequest::ACTIVATE, kvpb::NOSPACE));
  const std::string before = State(*s);
  s.Reopen();
  EXPECT_EQ(State(*s), before);
}

TEST(KvRestart, ReplayingTheWholeLogAfterARestartChangesNothing) {
  const auto log = Log(300, 2);
  TestStore s;
  for (size_t i = 0; i < log.size(); ++i) s->Apply(i + 1, log[i], 0);
  const std::string before = State(*s);
  s.Reopen();
  // The node replays its log from the start (say its snapshot was older): every entry at or
  // below the applied index is skipped.
  for (size_t i = 0; i < log.size(); ++i) {
    auto r = s->Apply(i + 1, log[i], 0);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r.value().skipped) << i;
  }
  EXPECT_EQ(State(*s), before);
}

TEST(KvRestart, ACrashMidLogThenReplayEndsInTheSameStateAsNoCrash) {
  const auto log = Log(300, 3);
  TestStore reference;
  for (size_t i = 0; i < log.size(); ++i) reference->Apply(i + 1, log[i], 0);
  TestStore s;
  for (size_t crash_at : {size_t{50}, size_t{51}, size_t{200}}) {
    // Apply up to crash_at, restart, replay everything.
    for (size_t i = 0; i < crash_at; ++i) s->Apply(i + 1, log[i], 0);
    s.Reopen();
    for (size_t i = 0; i < log.size(); ++i) ASSERT_TRUE(s->Apply(i + 1, log[i], 0).ok());
    EXPECT_EQ(State(*s), State(*reference)) << crash_at;
  }
}

TEST(KvRestart, AStoreOnDiskSurvivesReopening) {
  TestStore s(StoreOptions{.sync = true}, /*on_disk=*/true);
  for (const auto& r : Log(100, 4)) s.Apply(r);
  const std::string before = State(*s);
  s.Reopen();
  EXPECT_EQ(State(*s), before);
  ASSERT_TRUE(s->Sync().ok());
}

}  // namespace
}  // namespace synod::kv
