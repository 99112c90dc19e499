// 95% confidence intervals for the quantities an eval reports, so a reader (and a test) can tell
// a real change from noise: greedy accuracy is a binomial proportion (Wilson score interval),
// a judged win rate is a mean of per-prompt preferences in [0, 1] (normal interval on the sample
// mean). Pure functions.
#pragma once

#include <cstdint>
#include <vector>

namespace spar {

struct Interval {
  double lo = 0;
  double hi = 0;
};

inline constexpr double kZ95 = 1.959963984540054;  // two-sided 95% normal quantile

// Wilson score interval for `successes` of `n` trials; [0, 1] when n == 0.
Interval WilsonInterval(int64_t successes, int64_t n, double z = kZ95);

// mean ± z * s / sqrt(n) (s the sample standard deviation), clipped to [0, 1]; values < 0 are
// skipped (failed judgments). [0, 1] when fewer than two values remain.
Interval MeanInterval(const std::vector<double>& values, double z = kZ95);

}  // namespace spar
