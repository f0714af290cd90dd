// RevisionWaiters: a forwarded write is answered when this member reaches its revision,
// at its deadline, or when the server stops — once, whichever comes first.
#include <gtest/gtest.h>

#include <chrono>
#include <vector>

#include "server/server_internal.h"

namespace synod::server {
namespace {

using Clock = RevisionWaiters::Clock;
using namespace std::chrono_literals;

TEST(RevisionWaiters, AWaiterRunsWhenItsRevisionIsReachedAndNotBefore) {
  RevisionWaiters w;
  std::vector<int> ran;
  const auto later = Clock::now() + 1h;
  w.Wait(5, later, [&] { ran.push_back(5); });
  w.Wait(3, later, [&] { ran.push_back(3); });
  w.Reached(2);
  EXPECT_TRUE(ran.empty());
  w.Reached(4);
  EXPECT_EQ(ran, std::vector<int>({3}));
  w.Reached(9);
  EXPECT_EQ(ran, std::vector<int>({3, 5}));
  w.Reached(10);
  EXPECT_EQ(ran.size(), 2u) << "each runs once";
}

TEST(RevisionWaiters, ARevisionAlreadyReachedRunsAtOnce) {
  RevisionWaiters w;
  w.Reached(7);
  int ran = 0;
  w.Wait(7, Clock::now() + 1h, [&] { ++ran; });
  w.Wait(6, Clock::now() + 1h, [&] { ++ran; });
  EXPECT_EQ(ran, 2);
}

TEST(RevisionWaiters, OnlyWaitersPastTheirDeadlineExpire) {
  RevisionWaiters w;
  const auto now = Clock::now();
  std::vector<int> ran;
  w.Wait(5, now + 1s, [&] { ran.push_back(1); });
  w.Wait(5, now + 1h, [&] { ran.push_back(2); });
  w.Expire(now + 2s);
  EXPECT_EQ(ran, std::vector<int>({1}));
  w.Reached(5);
  EXPECT_EQ(ran, std::vector<int>({1, 2}));
}

TEST(RevisionWaiters, ReleaseAllRunsEveryWaiterAndLaterOnesAtOnce) {
  RevisionWaiters w;
  int ran = 0;
  w.Wait(100, Clock::now() + 1h, [&] { ++ran; });
  w.Wait(200, Clock::now() + 1h, [&] { ++ran; });
  w.ReleaseAll();
  EXPECT_EQ(ran, 2);
  w.Wait(300, Clock::now() + 1h, [&] { ++ran; });
  EXPECT_EQ(ran, 3);
}

}  // namespace
}  // namespace synod::server
