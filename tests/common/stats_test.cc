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

}  // namespace
}  // namespace spar
