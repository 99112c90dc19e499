#include "common/stats.h"

#include <gtest/gtest.h>

namespace spar {
namespace {

// Expected bounds from statsmodels 0.14 (an independent implementation):
//   proportion_confint(x, n, alpha=0.05, method="wilson"), and for the mean interval
//   mean(v) -/+ norm.ppf(0.975) * std(v, ddof=1) / sqrt(len(v)).
TEST(StatsTest, WilsonIntervalMatchesStatsmodels) {
  struct Case {
    int64_t x, n;
    double lo, hi;
  };
  for (const Case& c :
       {Case{45, 100, 0.3561453798, 0.5475539700}, Case{0, 20, 0.0, 0.1611251581},
        Case{20, 20, 0.8388748419, 1.0}, Case{560, 1253, 0.4196027380, 0.4745764370},
        Case{1, 1, 0.2065493144, 1.0}}) {
    Interval i = WilsonInterval(c.x, c.n);
    EXPECT_NEAR(i.lo, c.lo, 1e-9) << c.x << "/" << c.n;
    EXPECT_NEAR(i.hi, c.hi, 1e-9) << c.x << "/" << c.n;
  }
  Interval none = WilsonInterval(0, 0);
  EXPECT_EQ(none.lo, 0.0);
  EXPECT_EQ(none.hi, 1.0);
}

TEST(StatsTest, MeanIntervalMatchesStatsmodelsAndSkipsFailures) {
  Interval i = MeanInterval({1, 0, 0.5, 1, 1, -1, 0, 0.5, 1, 0.25, 0.75});  // -1: failed, skipped
  EXPECT_NEAR(i.lo, 0.3448698654, 1e-9);
  EXPECT_NEAR(i.hi, 0.8551301346, 1e-9);
  Interval clipped = MeanInterval({1, 1, 1, 0.9});
  EXPECT_LE(clipped.hi, 1.0);
  Interval one = MeanInterval({0.7});
  EXPECT_EQ(one.lo, 0.0);
  EXPECT_EQ(one.hi, 1.0);
}

// McNemar's exact p from the binomial sum in Python integers (math.comb, no floating point until
// the last division): 2 * sum_{i <= min} C(n, i) / 2^n, capped at 1.
TEST(StatsTest, McNemarExactPMatchesTheBinomialSum) {
  EXPECT_NEAR(McNemarExactP(10, 25), 0.01667384780012071, 1e-12);
  EXPECT_NEAR(McNemarExactP(25, 10), 0.01667384780012071, 1e-12);  // symmetric
  EXPECT_NEAR(McNemarExactP(0, 5), 0.0625, 1e-12);
  EXPECT_NEAR(McNemarExactP(120, 180), 0.0006342200069283569, 1e-12);
  EXPECT_DOUBLE_EQ(McNemarExactP(3, 3), 1.0);
  EXPECT_DOUBLE_EQ(McNemarExactP(40, 41), 1.0);
  EXPECT_DOUBLE_EQ(McNemarExactP(0, 0), 1.0);
}

// The paired difference's interval from the per-item differences D in {-1, 0, 1} (Python:
// statistics.fmean(D) -/+ 1.959964 * sqrt(statistics.pvariance(D) / n)).
TEST(StatsTest, PairedDifferenceIntervalMatchesPerItemDifferences) {
  Interval a = PairedDifferenceInterval(10, 25, 100);
  EXPECT_NEAR(a.lo, 0.037835934284757386, 1e-12);
  EXPECT_NEAR(a.hi, 0.2621640657152426, 1e-12);
  Interval b = PairedDifferenceInterval(120, 180, 1253);
  EXPECT_NEAR(b.lo, 0.020922088798302624, 1e-12);
  EXPECT_NEAR(b.hi, 0.0748480628377708, 1e-12);
  Interval c = PairedDifferenceInterval(0, 0, 50);
  EXPECT_DOUBLE_EQ(c.lo, 0.0);
  EXPECT_DOUBLE_EQ(c.hi, 0.0);
}

}  // namespace
}  // namespace spar
