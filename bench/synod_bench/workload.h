// The workload interface: what one client does per operation, plus set-up and
// tear-down around the measured run.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cluster.h"
#include "options.h"
#include "stats.h"
#include "timer.h"

namespace synod::bench {

// Called exactly once per operation, from any thread.
using Done = std::function<void(const grpc::Status&)>;

// The per-client side of a workload. The driver never starts an operation before the
// previous one of the same client called `done`, so a ClientOps needs no locking of its
// own and may reuse its requests, responses and context.
class ClientOps {
 public:
  virtual ~ClientOps() = default;
  // Starts one operation. `start` is when it was due (open loop: its scheduled time).
  virtual void Run(Time start, Done done) = 0;
};

struct Env {
  const Options& opts;
  Cluster& cluster;
  Stats& stats;
  Timer& timer;
};

class Workload {
 public:
  virtual ~Workload() = default;
  // Blocking work before the clock starts (preload, leases, opening watches).
  virtual grpc::Status Setup() { return grpc::Status::OK; }
  virtual std::unique_ptr<ClientOps> MakeClient(int index) = 0;
  // Where the driver records each operation's latency; nullptr: Stats::primary().
  virtual LatencyRecorder* OpLatency() { return nullptr; }
  // After every client has stopped, before the clock stops (watch: events in flight).
  virtual void Drain() {}
  // Blocking clean-up after the measurement.
  virtual void Teardown() {}
  // A correctness problem found by the run ("" if none): the exit status becomes 3.
  virtual std::string Problem() const { return ""; }
};

std::unique_ptr<Workload> MakeWorkload(const std::string& name, Env& env);
// (name, one-line description) for every workload.
const std::vector<std::pair<std::string, std::string>>& WorkloadNames();

// Keys `prefix` + zero-padded index, `key_size` bytes long when the index fits.
class KeySpace {
 public:
  KeySpace(std::string prefix, int64_t size, int key_size);
  std::string Key(int64_t index) const;
  int64_t size() const { return size_; }
  const std::string& prefix() const { return prefix_; }
  // The range_end that covers every key under the prefix.
  std::string End() const;

 private:
  std::string prefix_;
  int64_t size_;
  int width_;
};

// etcd's prefix range end: the prefix with its last byte incremented.
std::string PrefixEnd(std::string prefix);

// Picks key indexes: sequentially over all clients (--seq-keys) or uniformly at random.
class KeyPicker {
 public:
  KeyPicker(int64_t size, bool sequential) : size_(size), sequential_(sequential) {}
  int64_t Pick(std::mt19937_64& rng) {
    if (sequential_) return next_.fetch_add(1, std::memory_order_relaxed) % size_;
    return std::uniform_int_distribution<int64_t>(0, size_ - 1)(rng);
  }

 private:
  int64_t size_;
  bool sequential_;
  std::atomic<int64_t> next_{0};
};

// A value of `size` printable bytes.
std::string MakeValue(int size, uint64_t seed);

// Per-client generator seeds derived from --seed.
uint64_t ClientSeed(uint64_t seed, int index);

}  // namespace synod::bench
