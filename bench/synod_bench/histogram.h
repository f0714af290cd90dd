// A log-linear latency histogram in the manner of HdrHistogram.
//
// Values are non-negative integers (synod-bench records nanoseconds). Values below
// 2^kSubBits get one bucket each; above that, every power of two [2^e, 2^(e+1)) is split
// into 2^(kSubBits-1) equal buckets. A bucket's width is therefore at most 1/128 of its
// lower bound, and reporting a bucket's midpoint is off by at most 1/256 (0.4%) of the
// true value. Values at or above 2^kMaxBits (about 18 minutes in nanoseconds) share the
// top bucket; min, max and the sum are kept exactly.
//
// Not thread-safe: callers shard or lock (see stats.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace synod::bench {

class Histogram {
 public:
  static constexpr int kSubBits = 8;
  static constexpr int kMaxBits = 40;
  static constexpr size_t kBuckets =
      (size_t{1} << kSubBits) + size_t{kMaxBits - kSubBits} * (size_t{1} << (kSubBits - 1));

  Histogram();

  void Record(uint64_t value, uint64_t times = 1);
  // Adds every value recorded in `other`.
  void Merge(const Histogram& other);
  // What was recorded in *this after `earlier`, an older copy of the same histogram.
  // min and max of the result are bucket bounds (the exact ones are not known).
  Histogram Since(const Histogram& earlier) const;

  uint64_t count() const { return count_; }
  uint64_t min() const { return count_ == 0 ? 0 : min_; }
  uint64_t max() const { return max_; }
  double mean() const;
  // The value at percentile `p` (0..100): the smallest recorded value v such that at
  // least p% of the values are <= v, to within the bucket's relative error. 100 gives
  // the exact max; an empty histogram gives 0.
  uint64_t Percentile(double p) const;

  // The bucket arithmetic, public for the tests.
  static size_t BucketOf(uint64_t value);
  static uint64_t BucketLow(size_t bucket);    // smallest value in the bucket
  static uint64_t BucketWidth(size_t bucket);  // number of values in the bucket

 private:
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
  double sum_ = 0;
};

// The rank (1-based, in a sorted list of `count` values) that percentile `p` designates.
uint64_t PercentileRank(double p, uint64_t count);

}  // namespace synod::bench
