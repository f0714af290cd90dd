// One thread that runs callbacks at given times: paces open-loop clients and delays
// retries, without parking a gRPC thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

#include "options.h"

namespace synod::bench {

class Timer {
 public:
  Timer();
  ~Timer();  // drops callbacks not yet due
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Runs `fn` on the timer thread at `when` (at once if it has passed), in order of
  // time, then of scheduling.
  void At(Time when, std::function<void()> fn);

 private:
  struct Entry {
    Time when;
    uint64_t seq;
    std::function<void()> fn;
    bool operator>(const Entry& o) const { return when != o.when ? when > o.when : seq > o.seq; }
  };
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> queue_;
  uint64_t seq_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace synod::bench
