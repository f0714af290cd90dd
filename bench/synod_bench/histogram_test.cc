// The histogram against exact percentiles of the same samples: every reported value is
// within 1% of the exact one (the design bound is 0.4%).
#include "histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace synod::bench {
namespace {

constexpr double kPercentiles[] = {0, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100};

uint64_t ExactPercentile(std::vector<uint64_t> sorted, double p) {
  std::sort(sorted.begin(), sorted.end());
  if (p >= 100) return sorted.back();
  return sorted[PercentileRank(p, sorted.size()) - 1];
}

void ExpectWithinOnePercent(const std::vector<uint64_t>& values) {
  Histogram h;
  for (uint64_t v : values) h.Record(v);
  ASSERT_EQ(h.count(), values.size());
  for (double p : kPercentiles) {
    const double exact = static_cast<double>(ExactPercentile(values, p));
    const double got = static_cast<double>(h.Percentile(p));
    EXPECT_LE(std::abs(got - exact), exact * 0.01) << "p" << p << " exact " << exact;
  }
  EXPECT_EQ(h.min(), *std::min_element(values.begin(), values.end()));
  EXPECT_EQ(h.max(), *std::max_element(values.begin(), values.end()));
}

TEST(Histogram, EmptyReportsZero) {
  Histogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.Percentile(50), 0u);
  EXPECT_EQ(h.Percentile(100), 0u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.mean(), 0.0);
}

TEST(Histogram, SmallValuesAreExact) {
  Histogram h;
  for (uint64_t v = 0; v < 256; ++v) h.Record(v);
  EXPECT_EQ(h.Percentile(50), 127u);
  EXPECT_EQ(h.Percentile(0), 0u);
  EXPECT_EQ(h.Percentile(100), 255u);
  EXPECT_DOUBLE_EQ(h.mean(), 127.5);
}

TEST(Histogram, BucketsTileTheValuesInOrder) {
  // Every bucket starts where the previous one ended, and is at most 1/128 of its start.
  uint64_t next = 0;
  for (size_t b = 0; b < Histogram::kBuckets; ++b) {
    ASSERT_EQ(Histogram::BucketLow(b), next) << "bucket " << b;
    if (b >= 256) {
      ASSERT_LE(Histogram::BucketWidth(b) * 128, Histogram::BucketLow(b)) << "bucket " << b;
    }
    next += Histogram::BucketWidth(b);
  }
  EXPECT_EQ(next, uint64_t{1} << Histogram::kMaxBits);
}

TEST(Histogram, EveryValueFallsInsideItsBucket) {
  std::vector<uint64_t> probes;
  for (int e = 0; e < Histogram::kMaxBits; ++e) {
    const uint64_t p = uint64_t{1} << e;
    probes.insert(probes.end(), {p - 1, p, p + 1, p + p / 3});
  }
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100000; ++i) probes.push_back(rng() >> (64 - Histogram::kMaxBits));
  for (uint64_t v : probes) {
    const size_t b = Histogram::BucketOf(v);
    ASSERT_LT(b, Histogram::kBuckets);
    ASSERT_GE(v, Histogram::BucketLow(b)) << v;
    ASSERT_LT(v, Histogram::BucketLow(b) + Histogram::BucketWidth(b)) << v;
  }
}

TEST(Histogram, HugeValuesGoToTheTopBucketButMaxStaysExact) {
  Histogram h;
  h.Record(UINT64_MAX / 2);
  h.Record(uint64_t{1} << 50);
  EXPECT_EQ(Histogram::BucketOf(UINT64_MAX), Histogram::kBuckets - 1);
  EXPECT_EQ(h.max(), UINT64_MAX / 2);
  EXPECT_EQ(h.Percentile(100), UINT64_MAX / 2);
}

TEST(Histogram, UniformNanosecondsWithinOnePercent) {
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<uint64_t> d(0, 5'000'000);
  std::vector<uint64_t> v(200000);
  for (auto& x : v) x = d(rng);
  ExpectWithinOnePercent(v);
}

TEST(Histogram, LogNormalLatenciesWithinOnePercent) {
  // Shaped like request latencies: median 1 ms, a long tail into seconds.
  std::mt19937_64 rng(2);
  std::lognormal_distribution<double> d(std::log(1e6), 1.2);
  std::vector<uint64_t> v(300000);
  for (auto& x : v) x = static_cast<uint64_t>(d(rng));
  ExpectWithinOnePercent(v);
}

TEST(Histogram, ExponentialAndBimodalWithinOnePercent) {
  std::mt19937_64 rng(3);
  std::exponential_distribution<double> fast(1.0 / 200'000);
  std::vector<uint64_t> v(100000);
  for (size_t i = 0; i < v.size(); ++i) {
    // 2% of requests hit a slow path around 250 ms.
    v[i] = static_cast<uint64_t>(i % 50 == 0 ? 250e6 + fast(rng) : fast(rng));
  }
  ExpectWithinOnePercent(v);
}

TEST(Histogram, ConstantValueIsReportedExactly) {
  Histogram h;
  h.Record(1'234'567, 1000);
  EXPECT_EQ(h.count(), 1000u);
  EXPECT_EQ(h.Percentile(50), 1'234'567u);  // clamped to [min, max]
  EXPECT_EQ(h.Percentile(99.9), 1'234'567u);
}

TEST(Histogram, MergeEqualsRecordingEverythingInOne) {
  std::mt19937_64 rng(4);
  std::lognormal_distribution<double> d(std::log(2e6), 0.8);
  Histogram a, b, all;
  for (int i = 0; i < 50000; ++i) {
    const auto x = static_cast<uint64_t>(d(rng));
    (i % 3 == 0 ? a : b).Record(x);
    all.Record(x);
  }
  a.Merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_EQ(a.min(), all.min());
  EXPECT_EQ(a.max(), all.max());
  for (double p : kPercentiles) EXPECT_EQ(a.Percentile(p), all.Percentile(p)) << p;
}

TEST(Histogram, SinceGivesTheIntervalDistribution) {
  Histogram h;
  for (int i = 0; i < 1000; ++i) h.Record(1'000'000);  // 1 ms, before the snapshot
  const Histogram snapshot = h;
  for (int i = 0; i < 1000; ++i) h.Record(50'000'000);  // 50 ms, after it
  const Histogram interval = h.Since(snapshot);
  EXPECT_EQ(interval.count(), 1000u);
  EXPECT_NEAR(static_cast<double>(interval.Percentile(50)), 50e6, 50e6 * 0.01);
  EXPECT_NEAR(interval.mean(), 50e6, 1.0);
  EXPECT_EQ(h.Since(h).count(), 0u);
}

}  // namespace
}  // namespace synod::bench
