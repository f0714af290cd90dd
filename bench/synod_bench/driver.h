// Runs `clients` loops of a workload until the operation budget or the deadline.
//
// Closed loop (rate 0): each client starts its next operation when the previous one
// completes; latency runs from the start. Open loop (rate R): client i's operations are
// due every clients/R seconds (clients are staggered); an operation starts when due, or
// at once when the previous one finished late, and its latency runs from the time it
// was *due*, so a stalled server is charged for the requests it delayed (no coordinated
// omission).
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "options.h"
#include "stats.h"
#include "timer.h"
#include "workload.h"

namespace synod::bench {

struct RunConfig {
  std::string label;  // for progress lines
  int clients = 1;
  int64_t total = 0;  // 0: no operation budget
  Nanos duration{0};  // 0: no deadline
  double rate = 0;    // 0: closed loop
  bool progress = true;
};

class Driver {
 public:
  Driver(RunConfig cfg, Workload& workload, Stats& stats, Timer& timer);
  ~Driver();

  // Blocks until every client has stopped (and the workload drained); returns the
  // measured time. Prints a progress line on stderr every second if enabled.
  Nanos Run();

 private:
  class Client;
  bool Claim(Time due);
  void ClientStopped();
  void PrintProgress(Time now, Histogram& last, int64_t& last_errors);

  RunConfig cfg_;
  Workload& workload_;
  Stats& stats_;
  Timer& timer_;
  LatencyRecorder* latency_;
  Nanos interval_{0};  // open loop: between two operations of one client
  Time start_;
  Time deadline_ = Time::max();
  std::atomic<int64_t> claimed_{0};
  std::vector<std::unique_ptr<Client>> clients_;

  std::mutex mu_;
  std::condition_variable cv_;
  int running_ = 0;
};

// Set by SIGINT/SIGTERM: clients stop claiming operations and the run reports.
std::atomic<bool>& StopRequested();

}  // namespace synod::bench
