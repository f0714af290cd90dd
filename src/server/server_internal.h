// Pieces of the Server shared by its source files; not part of its interface.
#pragma once

#include <chrono>
#include <condition_variable>
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

// One thread that runs delayed work (retries and timeouts) for the whole server.
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
