#include "timer.h"

namespace synod::bench {

Timer::Timer() : thread_([this] { Loop(); }) {}

Timer::~Timer() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void Timer::At(Time when, std::function<void()> fn) {
  bool first;
  {
    std::lock_guard lock(mu_);
    first = queue_.empty() || when < queue_.top().when;
    queue_.push(Entry{when, seq_++, std::move(fn)});
  }
  if (first) cv_.notify_one();
}

void Timer::Loop() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    if (queue_.empty()) {
      cv_.wait(lock);
      continue;
    }
    const Time when = queue_.top().when;
    if (Clock::now() < when) {
      cv_.wait_until(lock, when);
      continue;
    }
    // priority_queue::top is const; the entry is popped right after the move.
    auto fn = std::move(const_cast<Entry&>(queue_.top()).fn);
    queue_.pop();
    lock.unlock();
    fn();
    lock.lock();
  }
}

}  // namespace synod::bench
