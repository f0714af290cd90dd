// Pieces of the Server shared by its source files; not part of its interface.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace synod::server {

// etcd's messages for the conditions a client (or this server) retries on.
inline constexpr char kNoLeader[] = "etcdserver: no leader";
inline constexpr char kTimeout[] = "etcdserver: request timed out";
inline constexpr char kLeaderChanged[] = "etcdserver: leader changed";
inline constexpr char kStopped[] = "etcdserver: server stopped";

// One thread that runs delayed work (retries and timeouts) for the whole server. Work runs
// at its time or up to 10 ms later (timers due close together share one wake-up).
class Timers {
 public:
  using Clock = std::chrono::steady_clock;
  Timers();
  ~Timers();  // runs what is still queued, at once
  void After(std::chrono::milliseconds delay, std::function<void()> work);
  // From now on everything runs at once (the server is stopping: timeouts answer now).
  void Drain();

 private:
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::multimap<Clock::time_point, std::function<void()>> work_;
  bool draining_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

// Work that waits for this member's store to reach a revision: a follower answers a write
// it forwarded once it has applied the write too. Woken by the apply loop (Reached), not
// by polling; a waiter whose deadline passes runs anyway (Expire), as does every waiter
// when the server stops (ReleaseAll).
class RevisionWaiters {
 public:
  using Clock = std::chrono::steady_clock;
  // Runs `then` once: at once if `revision` was reached already, else on the thread that
  // reaches it, or at Expire/ReleaseAll. `then` must be quick and must not block.
  void Wait(int64_t revision, Clock::time_point deadline, std::function<void()> then);
  // The store reached `revision` (after it applied it).
  void Reached(int64_t revision);
  // Runs the waiters whose deadline is before `now`.
  void Expire(Clock::time_point now);
  // Runs every waiter, and from now on runs new ones at once.
  void ReleaseAll();

 private:
  struct Waiter {
    Clock::time_point deadline;
    std::function<void()> then;
  };
  std::mutex mu_;
  int64_t reached_ = 0;
  bool released_ = false;
  std::multimap<int64_t, Waiter> waiters_;  // by revision
};

// A fixed pool of threads running queued work in order of arrival.
class Executor {
 public:
  explicit Executor(int threads);
  ~Executor();  // finishes what is queued
  void Run(std::function<void()> work);

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> work_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace synod::server
