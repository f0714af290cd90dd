// KeyWaiter against a real store: etcd's waitDeletes and Election.observe, one thread for
// every waiter.
#include "server/key_waiter.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "kv/kv_test_util.h"

namespace synod::server {
namespace {

using namespace std::chrono_literals;
using kv::DelReq;
using kv::PutReq;

// Collects what callbacks report, from any thread.
struct Recorder {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> seen;

  void Add(std::string s) {
    std::lock_guard lock(mu);
    seen.push_back(std::move(s));
    cv.notify_all();
  }
  // Waits until `n` reports arrived (or a generous timeout), returns them.
  std::vector<std::string> Await(size_t n) {
    std::unique_lock lock(mu);
    cv.wait_for(lock, 5s, [&] { return seen.size() >= n; });
    return seen;
  }
  // What arrived by now, after giving the waiter's thread time to act.
  std::vector<std::string> Settled() {
    std::this_thread::sleep_for(100ms);
    std::lock_guard lock(mu);
    return seen;
  }
};

class KeyWaiterTest : public ::testing::Test {
 protected:
  KeyWaiterTest() : waiter_(store_.get()) {}

  // Applies and tells the waiter, as the server's revision feed does.
  int64_t Apply(const kvpb::Request& request) {
    store_.ApplyOk(request);
    waiter_.Notify();
    return store_->Revision();
  }

  KeyWaiter::TurnDone Turn(Recorder* r, std::string name) {
    return [r, name](Status s) { r->Add(name + (s.ok() ? ":ok" : ":" + s.message())); };
  }

  kv::TestStore store_;
  KeyWaiter waiter_;
};

TEST(PrefixRangeEnd, IsEtcdsGetPrefixRangeEnd) {
  EXPECT_EQ(PrefixRangeEnd("lock/"), "lock0");
  EXPECT_EQ(PrefixRangeEnd(std::string("a\xff", 2)), "b");
  EXPECT_EQ(PrefixRangeEnd(std::string("\xff\xff", 2)), std::string(1, '\0'));
}

TEST_F(KeyWaiterTest, TheOldestKeyHasItsTurnAtOnce) {
  const int64_t rev = Apply(PutReq("lock/1", ""));
  Recorder r;
  waiter_.WaitTurn("lock/", rev, Turn(&r, "1"));
  EXPECT_EQ(r.Await(1), std::vector<std::string>{"1:ok"});
  EXPECT_EQ(waiter_.size(), 0u);
}

TEST_F(KeyWaiterTest, AWaiterWakesWhenEveryOlderKeyIsGone) {
  Apply(PutReq("lock/a", ""));
  Apply(PutReq("lock/b", ""));
  const int64_t rev_c = Apply(PutReq("lock/c", ""));
  Apply(PutReq("lock/d", ""));  // younger: never in the way
  Recorder r;
  waiter_.WaitTurn("lock/", rev_c, Turn(&r, "c"));
  Apply(PutReq("other", "x"));
  Apply(DelReq("lock/d"));
  Apply(DelReq("lock/b"));  // the one c waits on; a is still older
  EXPECT_TRUE(r.Settled().empty());
  Apply(DelReq("lock/a"));
  EXPECT_EQ(r.Await(1), std::vector<std::string>{"c:ok"});
}

TEST_F(KeyWaiterTest, KeysOfAnotherPrefixDoNotCount) {
  Apply(PutReq("lock2/a", ""));  // "lock2/" is not under "lock/"
  Apply(PutReq("lockx", ""));
  const int64_t rev = Apply(PutReq("lock/b", ""));
  Recorder r;
  waiter_.WaitTurn("lock/", rev, Turn(&r, "b"));
  EXPECT_EQ(r.Await(1), std::vector<std::string>{"b:ok"});
}

TEST_F(KeyWaiterTest, AKeyDeletedAndCreatedAgainIsYounger) {
  Apply(PutReq("lock/a", ""));
  const int64_t rev_b = Apply(PutReq("lock/b", ""));
  Recorder r;
  waiter_.WaitTurn("lock/", rev_b, Turn(&r, "b"));
  // Deleted and put again before the waiter looks: the new "lock/a" is younger than b.
  store_.ApplyOk(DelReq("lock/a"));
  store_.ApplyOk(PutReq("lock/a", "again"));
  waiter_.Notify();
  EXPECT_EQ(r.Await(1), std::vector<std::string>{"b:ok"});
}

TEST_F(KeyWaiterTest, WaitsUntilTheLocalStoreHasTheKey) {
  Apply(PutReq("lock/a", ""));
  const int64_t future = store_->Revision() + 2;  // a follower told of a later write
  Recorder r;
  waiter_.WaitTurn("lock/", future, Turn(&r, "late"));
  Apply(DelReq("lock/a"));  // revision future - 1: the store cannot answer yet
  EXPECT_TRUE(r.Settled().empty());
  EXPECT_EQ(Apply(PutReq("lock/late", "")), future);
  EXPECT_EQ(r.Await(1), std::vector<std::string>{"late:ok"});
}

TEST_F(KeyWaiterTest, ManyWaitersQueueInCreateOrder) {
  std::vector<int64_t> revs;
  for (int i = 0; i < 5; i++) revs.push_back(Apply(PutReq("q/" + std::to_string(i), "")));
  Recorder r;
  for (int i = 4; i >= 1; i--) waiter_.WaitTurn("q/", revs[i], Turn(&r, std::to_string(i)));
  EXPECT_TRUE(r.Settled().empty());
  for (int i = 0; i < 4; i++) {
    Apply(DelReq("q/" + std::to_string(i)));
    auto seen = r.Await(static_cast<size_t>(i) + 1);
    ASSERT_EQ(seen.size(), static_cast<size_t>(i) + 1);
    EXPECT_EQ(seen.back(), std::to_string(i + 1) + ":ok");
  }
}

TEST_F(KeyWaiterTest, ACancelledWaitNeverAnswers) {
  Apply(PutReq("lock/a", ""));
  const int64_t rev = Apply(PutReq("lock/b", ""));
  Recorder r;
  const uint64_t id = waiter_.WaitTurn("lock/", rev, Turn(&r, "b"));
  EXPECT_TRUE(waiter_.Cancel(id));
  EXPECT_FALSE(waiter_.Cancel(id));
  Apply(DelReq("lock/a"));
  EXPECT_TRUE(r.Settled().empty());
  EXPECT_EQ(waiter_.size(), 0u);
}

TEST_F(KeyWaiterTest, CancelAfterTheAnswerIsRefused) {
  const int64_t rev = Apply(PutReq("lock/a", ""));
  Recorder r;
  const uint64_t id = waiter_.WaitTurn("lock/", rev, Turn(&r, "a"));
  r.Await(1);
  EXPECT_FALSE(waiter_.Cancel(id));
}

TEST_F(KeyWaiterTest, AWaiterBehindACompactionLooksAgain) {
  Apply(PutReq("lock/a", ""));
  const int64_t rev = Apply(PutReq("lock/b", ""));
  Recorder r;
  waiter_.WaitTurn("lock/", rev, Turn(&r, "b"));
  EXPECT_TRUE(r.Settled().empty());
  // The deletion and a compaction past it, before the waiter hears of either.
  store_.ApplyOk(DelReq("lock/a"));
  store_.ApplyOk(PutReq("other", "1"));
  store_.ApplyOk(kv::CompactReq(store_->Revision()));
  waiter_.Notify();
  EXPECT_EQ(r.Await(1), std::vector<std::string>{"b:ok"});
}

TEST_F(KeyWaiterTest, PastTheBoundAWaitFails) {
  kv::TestStore store;
  KeyWaiter waiter(store.get(), KeyWaiterOptions{.waiters_max = 1});
  store.ApplyOk(PutReq("lock/a", ""));
  const int64_t rev = store->Revision();
  store.ApplyOk(PutReq("lock/b", ""));
  Recorder r;
  waiter.WaitTurn("lock/", rev + 1, Turn(&r, "b"));
  waiter.WaitTurn("lock/", rev + 1, Turn(&r, "b2"));
  auto seen = r.Await(1);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], "b2:synod: too many lock and election waiters");
}

// --- Observe ---

class ObserveTest : public KeyWaiterTest {
 protected:
  uint64_t Observe(const std::string& prefix) {
    return waiter_.Observe(
        prefix,
        [this](const kvpb::KeyValue& kv, int64_t revision) {
          r_.Add(kv.key() + "=" + kv.value() + "@" + std::to_string(revision));
        },
        [this](Status s) { r_.Add("end:" + s.message()); });
  }
  Recorder r_;
};

TEST_F(ObserveTest, PostsTheLeaderAndEachOfItsValues) {
  Apply(PutReq("e/a", "1"));
  const int64_t rev = Apply(PutReq("e/b", "2"));
  Observe("e/");
  EXPECT_EQ(r_.Await(1), std::vector<std::string>{"e/a=1@" + std::to_string(rev)});
  const int64_t proclaimed = Apply(PutReq("e/a", "1b"));
  Apply(PutReq("e/b", "2b"));  // not the leader: not posted
  EXPECT_EQ(r_.Await(2).back(), "e/a=1b@" + std::to_string(proclaimed));
  const int64_t resigned = Apply(DelReq("e/a"));
  EXPECT_EQ(r_.Await(3).back(), "e/b=2b@" + std::to_string(resigned));
  EXPECT_EQ(r_.Settled().size(), 3u);
}

TEST_F(ObserveTest, WithoutALeaderTheFirstPutIsPosted) {
  Apply(PutReq("x", "1"));
  Observe("e/");
  EXPECT_TRUE(r_.Settled().empty());
  const int64_t first = Apply(PutReq("e/z", "first"));
  Apply(PutReq("e/y", "second"));
  EXPECT_EQ(r_.Await(1), std::vector<std::string>{"e/z=first@" + std::to_string(first)});
  const int64_t resigned = Apply(DelReq("e/z"));
  EXPECT_EQ(r_.Await(2).back(), "e/y=second@" + std::to_string(resigned));
  Apply(DelReq("e/y"));  // nobody leads
  const int64_t next = Apply(PutReq("e/w", "3"));
  auto seen = r_.Await(3);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[2], "e/w=3@" + std::to_string(next));
}

TEST_F(ObserveTest, ACancelledObserverHearsNothing) {
  const uint64_t id = Observe("e/");
  EXPECT_TRUE(waiter_.Cancel(id));
  Apply(PutReq("e/a", "1"));
  EXPECT_TRUE(r_.Settled().empty());
}

}  // namespace
}  // namespace synod::server
