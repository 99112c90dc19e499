// 95% confidence intervals for the quantities an eval reports, so a reader (and a test) can tell
// a real change from noise: greedy accuracy is a binomial proportion (Wilson score interval),
// a judged win rate is a mean of per-prompt preferences in [0, 1] (normal interval on the sample
// mean); two policies on the same items are compared paired (McNemar). Pure functions.
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

// McNemar's exact test for two policies answering the same items: `lost` items only the first
// gets right, `gained` only the second. Two-sided p-value: min(1, 2 P(X <= min(lost, gained))),
// X ~ Binomial(lost + gained, 1/2); 1 when there is no discordant item.
double McNemarExactP(int64_t lost, int64_t gained);

// 95% interval of the paired accuracy difference (gained - lost) / n on n items (the Wald
// interval for paired proportions: ± z sqrt(gained + lost - (gained - lost)^2 / n) / n), clipped
// to [-1, 1]; [-1, 1] when n == 0.
Interval PairedDifferenceInterval(int64_t lost, int64_t gained, int64_t n, double z = kZ95);

}  // namespace spar
