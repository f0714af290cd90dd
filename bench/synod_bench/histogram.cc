#include "histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace synod::bench {

namespace {
constexpr uint64_t kLinear = uint64_t{1} << Histogram::kSubBits;  // exact buckets
constexpr uint64_t kHalf = kLinear / 2;                           // buckets per power of two
constexpr uint64_t kLimit = uint64_t{1} << Histogram::kMaxBits;
}  // namespace

Histogram::Histogram() : counts_(kBuckets, 0) {}

size_t Histogram::BucketOf(uint64_t value) {
  if (value < kLinear) return static_cast<size_t>(value);
  if (value >= kLimit) return kBuckets - 1;
  const int msb = std::bit_width(value) - 1;  // >= kSubBits
  const int shift = msb - kSubBits + 1;       // >= 1; keeps the top kSubBits bits
  const uint64_t top = value >> shift;        // in [kHalf, kLinear)
  return static_cast<size_t>(kLinear + uint64_t(shift - 1) * kHalf + (top - kHalf));
}

uint64_t Histogram::BucketLow(size_t bucket) {
  if (bucket < kLinear) return bucket;
  const uint64_t above = bucket - kLinear;
  const int shift = static_cast<int>(above / kHalf) + 1;
  const uint64_t top = kHalf + above % kHalf;
  return top << shift;
}

uint64_t Histogram::BucketWidth(size_t bucket) {
  if (bucket < kLinear) return 1;
  return uint64_t{1} << ((bucket - kLinear) / kHalf + 1);
}

void Histogram::Record(uint64_t value, uint64_t times) {
  if (times == 0) return;
  counts_[BucketOf(value)] += times;
  count_ += times;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  sum_ += static_cast<double>(value) * static_cast<double>(times);
}

void Histogram::Merge(const Histogram& other) {
  for (size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
}

Histogram Histogram::Since(const Histogram& earlier) const {
  Histogram out;
  for (size_t i = 0; i < kBuckets; ++i) {
    const uint64_t n = counts_[i] - std::min(counts_[i], earlier.counts_[i]);
    if (n == 0) continue;
    out.counts_[i] = n;
    out.count_ += n;
    out.min_ = std::min(out.min_, std::max(BucketLow(i), min_));
    out.max_ = std::max(out.max_, std::min(BucketLow(i) + BucketWidth(i) - 1, max_));
  }
  out.sum_ = std::max(0.0, sum_ - earlier.sum_);
  return out;
}

double Histogram::mean() const { return count_ == 0 ? 0.0 : sum_ / static_cast<double>(count_); }

uint64_t PercentileRank(double p, uint64_t count) {
  if (count == 0) return 0;
  // The small slack keeps 99.9% of 1000 at rank 999 despite 99.9 not being exact.
  const double exact = p / 100.0 * static_cast<double>(count);
  const auto rank = static_cast<uint64_t>(std::ceil(exact - exact * 1e-12));
  return std::clamp<uint64_t>(rank, 1, count);
}

uint64_t Histogram::Percentile(double p) const {
  if (count_ == 0) return 0;
  if (p >= 100.0) return max_;
  const uint64_t rank = PercentileRank(p, count_);
  uint64_t seen = 0;
  for (size_t i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      const uint64_t mid = BucketLow(i) + (BucketWidth(i) - 1) / 2;
      return std::clamp(mid, min(), max_);
    }
  }
  return max_;
}

}  // namespace synod::bench
