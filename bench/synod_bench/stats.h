// What a run measures: latency histograms, errors by gRPC status code and named
// counters, all safe to update from gRPC's callback threads.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "histogram.h"
#include "options.h"

namespace synod::bench {

// A histogram split into shards, each behind its own mutex, so that concurrent
// recorders (one per client, chosen by `hint`) rarely meet.
class LatencyRecorder {
 public:
  explicit LatencyRecorder(size_t shards = 16);
  void Record(size_t hint, Nanos latency);
  Histogram Snapshot() const;

 private:
  struct alignas(64) Shard {
    mutable std::mutex mu;
    Histogram h;
  };
  std::vector<std::unique_ptr<Shard>> shards_;
};

class Stats {
 public:
  static constexpr int kCodes = 17;  // grpc::StatusCode 0..16

  // The workload's main latency: one entry per completed operation (for watch: per
  // event delivered to a watcher).
  LatencyRecorder& primary() { return primary_; }
  // A named secondary latency (e.g. "acquire" for lock). Create before the run starts.
  LatencyRecorder& Phase(const std::string& name);
  // A named counter (e.g. "retries"). Create before the run starts.
  std::atomic<int64_t>& Counter(const std::string& name);

  void CountError(int code);
  int64_t ErrorCount() const;
  // Non-zero error counts by status code name ("UNAVAILABLE").
  std::map<std::string, int64_t> Errors() const;
  std::map<std::string, Histogram> Phases() const;
  std::map<std::string, int64_t> Counters() const;

 private:
  LatencyRecorder primary_;
  std::array<std::atomic<int64_t>, kCodes + 1> errors_{};  // last slot: unknown codes
  mutable std::mutex mu_;  // guards the maps' structure, not the values
  std::map<std::string, std::unique_ptr<LatencyRecorder>> phases_;
  std::map<std::string, std::unique_ptr<std::atomic<int64_t>>> counters_;
};

const char* StatusCodeName(int code);

}  // namespace synod::bench
