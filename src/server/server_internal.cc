#include "server/server_internal.h"

#include <algorithm>
#include <vector>

#include "base/thread_name.h"

namespace synod::server {

namespace {
constexpr auto kTimerSlack = std::chrono::milliseconds(10);
}  // namespace

Timers::Timers()
    : thread_([this] {
        NameThisThread("synod-timers");
        Run();
      }) {}

Timers::~Timers() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Timers::After(std::chrono::milliseconds delay, std::function<void()> work) {
  bool earliest;
  {
    std::lock_guard lock(mu_);
    auto it = work_.emplace(Clock::now() + delay, std::move(work));
    earliest = it == work_.begin();
  }
  // Most work is a timeout seconds away, later than what is queued: the thread need
  // not wake up for it.
  if (earliest) cv_.notify_all();
}

void Timers::Drain() {
  {
    std::lock_guard lock(mu_);
    draining_ = true;
  }
  cv_.notify_all();
}

void Timers::Run() {
  std::unique_lock lock(mu_);
  while (!stopping_ || !work_.empty()) {
    if (work_.empty()) {
      cv_.wait(lock);
      continue;
    }
    auto first = work_.begin();
    if (!draining_ && !stopping_ && first->first > Clock::now()) {
      // Late by up to kTimerSlack, so that one wake-up runs every timer due by then: each
      // request has a timeout here, and waking once per request would cost a context
      // switch per request.
      cv_.wait_until(lock, first->first + kTimerSlack);
      continue;
    }
    auto work = std::move(first->second);
    work_.erase(first);
    lock.unlock();
    work();
    lock.lock();
  }
}

void RevisionWaiters::Wait(int64_t revision, Clock::time_point deadline,
                           std::function<void()> then) {
  {
    std::lock_guard lock(mu_);
    if (revision > reached_ && !released_) {
      waiters_.emplace(revision, Waiter{deadline, std::move(then)});
      return;
    }
  }
  then();
}

void RevisionWaiters::Reached(int64_t revision) {
  std::vector<std::function<void()>> ready;
  {
    std::lock_guard lock(mu_);
    reached_ = std::max(reached_, revision);
    auto end = waiters_.upper_bound(revision);
    for (auto it = waiters_.begin(); it != end; ++it) ready.push_back(std::move(it->second.then));
    waiters_.erase(waiters_.begin(), end);
  }
  for (auto& then : ready) then();
}

void RevisionWaiters::Expire(Clock::time_point now) {
  std::vector<std::function<void()>> late;
  {
    std::lock_guard lock(mu_);
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (it->second.deadline > now) {
        ++it;
        continue;
      }
      late.push_back(std::move(it->second.then));
      it = waiters_.erase(it);
    }
  }
  for (auto& then : late) then();
}

void RevisionWaiters::ReleaseAll() {
  std::multimap<int64_t, Waiter> all;
  {
    std::lock_guard lock(mu_);
    released_ = true;
    all.swap(waiters_);
  }
  for (auto& [revision, waiter] : all) waiter.then();
}

Executor::Executor(int threads) {
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this] {
      NameThisThread("synod-readers");
      Loop();
    });
  }
}

Executor::~Executor() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void Executor::Run(std::function<void()> work) {
  {
    std::lock_guard lock(mu_);
    work_.push_back(std::move(work));
  }
  cv_.notify_one();
}

void Executor::Loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !work_.empty(); });
    if (work_.empty()) return;
    auto work = std::move(work_.front());
    work_.pop_front();
    lock.unlock();
    work();
    lock.lock();
  }
}

}  // namespace synod::server
