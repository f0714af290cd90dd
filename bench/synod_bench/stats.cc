#include "stats.h"

namespace synod::bench {

LatencyRecorder::LatencyRecorder(size_t shards) {
  for (size_t i = 0; i < shards; ++i) shards_.push_back(std::make_unique<Shard>());
}

void LatencyRecorder::Record(size_t hint, Nanos latency) {
  Shard& s = *shards_[hint % shards_.size()];
  const auto ns = latency.count() < 0 ? 0 : static_cast<uint64_t>(latency.count());
  std::lock_guard lock(s.mu);
  s.h.Record(ns);
}

Histogram LatencyRecorder::Snapshot() const {
  Histogram out;
  for (const auto& s : shards_) {
    std::lock_guard lock(s->mu);
    out.Merge(s->h);
  }
  return out;
}

LatencyRecorder& Stats::Phase(const std::string& name) {
  std::lock_guard lock(mu_);
  auto& slot = phases_[name];
  if (!slot) slot = std::make_unique<LatencyRecorder>();
  return *slot;
}

std::atomic<int64_t>& Stats::Counter(const std::string& name) {
  std::lock_guard lock(mu_);
  auto& slot = counters_[name];
  if (!slot) slot = std::make_unique<std::atomic<int64_t>>(0);
  return *slot;
}

void Stats::CountError(int code) {
  const int slot = code >= 0 && code < kCodes ? code : kCodes;
  errors_[slot].fetch_add(1, std::memory_order_relaxed);
}

int64_t Stats::ErrorCount() const {
  int64_t n = 0;
  for (const auto& e : errors_) n += e.load(std::memory_order_relaxed);
  return n;
}

std::map<std::string, int64_t> Stats::Errors() const {
  std::map<std::string, int64_t> out;
  for (int c = 0; c <= kCodes; ++c) {
    if (const int64_t n = errors_[c].load(); n > 0) out[StatusCodeName(c)] = n;
  }
  return out;
}

std::map<std::string, Histogram> Stats::Phases() const {
  std::lock_guard lock(mu_);
  std::map<std::string, Histogram> out;
  for (const auto& [name, rec] : phases_) out.emplace(name, rec->Snapshot());
  return out;
}

std::map<std::string, int64_t> Stats::Counters() const {
  std::lock_guard lock(mu_);
  std::map<std::string, int64_t> out;
  for (const auto& [name, c] : counters_) out[name] = c->load();
  return out;
}

const char* StatusCodeName(int code) {
  static constexpr const char* kNames[] = {"OK",
                                           "CANCELLED",
                                           "UNKNOWN",
                                           "INVALID_ARGUMENT",
                                           "DEADLINE_EXCEEDED",
                                           "NOT_FOUND",
                                           "ALREADY_EXISTS",
                                           "PERMISSION_DENIED",
                                           "RESOURCE_EXHAUSTED",
                                           "FAILED_PRECONDITION",
                                           "ABORTED",
                                           "OUT_OF_RANGE",
                                           "UNIMPLEMENTED",
                                           "INTERNAL",
                                           "UNAVAILABLE",
                                           "DATA_LOSS",
                                           "UNAUTHENTICATED"};
  return code >= 0 && code < Stats::kCodes ? kNames[code] : "UNKNOWN_CODE";
}

}  // namespace synod::bench
