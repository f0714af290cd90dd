#include "server/server_internal.h"

#include "base/thread_name.h"

namespace synod::server {

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
      cv_.wait_until(lock, first->first);
      continue;
    }
    auto work = std::move(first->second);
    work_.erase(first);
    lock.unlock();
    work();
    lock.lock();
  }
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
