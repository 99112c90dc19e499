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

}  // namespace spar
