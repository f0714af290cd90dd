#include "driver.h"

#include <cstdio>

namespace synod::bench {

using namespace std::chrono_literals;

std::atomic<bool>& StopRequested() {
  static std::atomic<bool> stop{false};
  return stop;
}

class Driver::Client {
 public:
  Client(Driver& d, int index, std::unique_ptr<ClientOps> ops)
      : d_(d), index_(index), ops_(std::move(ops)) {}

  void Start(Time first_due) {
    next_due_ = first_due;
    Next();
  }

 private:
  void Next() {
    if (d_.cfg_.rate > 0) {
      const Time due = next_due_;
      if (!d_.Claim(due)) return d_.ClientStopped();
      next_due_ += d_.interval_;
      if (due > Clock::now()) {
        d_.timer_.At(due, [this, due] { Issue(due); });
      } else {
        Issue(due);
      }
      return;
    }
    const Time now = Clock::now();
    if (!d_.Claim(now)) return d_.ClientStopped();
    Issue(now);
  }

  void Issue(Time start) {
    ops_->Run(start, [this, start](const grpc::Status& s) { Completed(start, s); });
  }

  void Completed(Time start, const grpc::Status& s) {
    const Time end = Clock::now();
    if (s.ok()) {
      d_.latency_->Record(static_cast<size_t>(index_), end - start);
    } else {
      d_.stats_.CountError(s.error_code());
      // A closed-loop client backs off after an error instead of spinning against a
      // server that is down; an open-loop client keeps its schedule.
      if (d_.cfg_.rate <= 0) {
        d_.timer_.At(end + 10ms, [this] { Next(); });
        return;
      }
    }
    // A completion may run inside the Run() that started it (gRPC can call back
    // inline); past a few levels, continue on the timer thread instead of recursing.
    thread_local int depth = 0;
    if (depth >= 8) {
      d_.timer_.At(end, [this] { Next(); });
      return;
    }
    ++depth;
    Next();
    --depth;
  }

  Driver& d_;
  const int index_;
  std::unique_ptr<ClientOps> ops_;
  Time next_due_;
};

Driver::Driver(RunConfig cfg, Workload& workload, Stats& stats, Timer& timer)
    : cfg_(std::move(cfg)), workload_(workload), stats_(stats), timer_(timer) {
  latency_ = workload_.OpLatency() ? workload_.OpLatency() : &stats_.primary();
  if (cfg_.rate > 0) {
    interval_ = Nanos(static_cast<int64_t>(1e9 * cfg_.clients / cfg_.rate));
  }
}

Driver::~Driver() = default;

bool Driver::Claim(Time due) {
  if (StopRequested().load(std::memory_order_relaxed)) return false;
  if (due >= deadline_) return false;
  if (cfg_.total > 0 && claimed_.fetch_add(1, std::memory_order_relaxed) >= cfg_.total) {
    return false;
  }
  return true;
}

void Driver::ClientStopped() {
  std::lock_guard lock(mu_);
  if (--running_ == 0) cv_.notify_all();
}

Nanos Driver::Run() {
  for (int i = 0; i < cfg_.clients; ++i) {
    clients_.push_back(std::make_unique<Client>(*this, i, workload_.MakeClient(i)));
  }
  running_ = cfg_.clients;
  start_ = Clock::now();
  if (cfg_.duration.count() > 0) deadline_ = start_ + cfg_.duration;
  for (int i = 0; i < cfg_.clients; ++i) {
    // Open loop: client i's schedule is offset by i/rate so the clients interleave.
    const Nanos offset = cfg_.rate > 0 ? interval_ * i / cfg_.clients : Nanos(0);
    clients_[static_cast<size_t>(i)]->Start(start_ + offset);
  }

  Histogram last = latency_->Snapshot();
  int64_t last_errors = stats_.ErrorCount();
  Time next_print = start_ + 1s;
  {
    std::unique_lock lock(mu_);
    while (running_ > 0) {
      if (cv_.wait_until(lock, next_print) == std::cv_status::timeout && running_ > 0) {
        lock.unlock();
        if (cfg_.progress) PrintProgress(next_print, last, last_errors);
        next_print += 1s;
        lock.lock();
      }
    }
  }
  workload_.Drain();
  return Clock::now() - start_;
}

void Driver::PrintProgress(Time now, Histogram& last, int64_t& last_errors) {
  const Histogram h = latency_->Snapshot();
  const Histogram interval = h.Since(last);
  const int64_t errors = stats_.ErrorCount();
  const double secs = std::chrono::duration<double>(now - start_).count();
  std::fprintf(stderr,
               "%s %5.0fs: %10llu ops  %9.0f ops/s  p50 %8.3f ms  p99 %8.3f ms  errors %lld "
               "(+%lld)\n",
               cfg_.label.c_str(), secs, static_cast<unsigned long long>(h.count()),
               static_cast<double>(interval.count()), interval.Percentile(50) / 1e6,
               interval.Percentile(99) / 1e6, static_cast<long long>(errors),
               static_cast<long long>(errors - last_errors));
  last = h;
  last_errors = errors;
}

}  // namespace synod::bench
