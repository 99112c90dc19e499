#include "common/stats.h"

#include <algorithm>
#include <cmath>

namespace spar {

Interval WilsonInterval(int64_t successes, int64_t n, double z) {
  if (n <= 0) return {0.0, 1.0};
  const double nn = static_cast<double>(n);
  const double p = static_cast<double>(successes) / nn;
  const double z2 = z * z;
  const double center = (p + z2 / (2 * nn)) / (1 + z2 / nn);
  const double half = z / (1 + z2 / nn) * std::sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn));
  return {std::max(0.0, center - half), std::min(1.0, center + half)};
}

Interval MeanInterval(const std::vector<double>& values, double z) {
  double sum = 0;
  int64_t n = 0;
  for (double v : values) {
    if (v >= 0) sum += v, ++n;
  }
  if (n < 2) return {0.0, 1.0};
  const double mean = sum / static_cast<double>(n);
  double ss = 0;
  for (double v : values) {
    if (v >= 0) ss += (v - mean) * (v - mean);
  }
  const double se = std::sqrt(ss / static_cast<double>(n - 1) / static_cast<double>(n));
  return {std::max(0.0, mean - z * se), std::min(1.0, mean + z * se)};
}

double McNemarExactP(int64_t lost, int64_t gained) {
  const int64_t n = lost + gained;
  if (n <= 0) return 1.0;
  const int64_t k = std::min(lost, gained);
  // P(X <= k) for X ~ Binomial(n, 1/2), summed in log space (n reaches thousands).
  const double log_half_n = static_cast<double>(n) * std::log(0.5);
  const double log_n_fact = std::lgamma(static_cast<double>(n) + 1);
  double cdf = 0;
  for (int64_t i = 0; i <= k; ++i) {
    cdf += std::exp(log_n_fact - std::lgamma(static_cast<double>(i) + 1) -
                    std::lgamma(static_cast<double>(n - i) + 1) + log_half_n);
  }
  return std::min(1.0, 2 * cdf);
}

Interval PairedDifferenceInterval(int64_t lost, int64_t gained, int64_t n, double z) {
  if (n <= 0) return {-1.0, 1.0};
  const double nn = static_cast<double>(n);
  const double d = static_cast<double>(gained - lost) / nn;
  const double var = std::max(0.0, static_cast<double>(gained + lost) / nn - d * d) / nn;
  const double half = z * std::sqrt(var);
  return {std::max(-1.0, d - half), std::min(1.0, d + half)};
}

}  // namespace spar
