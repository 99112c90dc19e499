#include "model/internal/token_sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace spar::model::internal {

namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

}  // namespace

double CounterUniform(uint64_t seed, uint64_t prompt, uint64_t sample, uint64_t step) {
  uint64_t h = SplitMix64(seed);
  h = SplitMix64(h ^ prompt);
  h = SplitMix64(h ^ (sample * 0xD6E8FEB86659FD93ULL));
  h = SplitMix64(h ^ (step + 0x632BE59BD9B4E019ULL));
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

int32_t PickToken(const double* logits, int64_t vocab, double temperature, double top_p, double u,
                  int top_k, double min_p) {
  if (temperature <= 0.0) {
    return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
  }
  const double max = *std::max_element(logits, logits + vocab);
  std::vector<double> probs(vocab);
  for (int64_t k = 0; k < vocab; ++k) probs[k] = std::exp((logits[k] - max) / temperature);
  // min-p: relative to the most likely token (whose unnormalised probability is 1 here).
  if (min_p > 0.0) {
    for (int64_t k = 0; k < vocab; ++k) {
      if (probs[k] < min_p) probs[k] = 0.0;
    }
  }
  // top-k: the k largest (lowest id first among ties).
  if (top_k > 0 && top_k < vocab) {
    std::vector<int32_t> idx(vocab);
    std::iota(idx.begin(), idx.end(), 0);
    std::nth_element(idx.begin(), idx.begin() + (top_k - 1), idx.end(), [&](int32_t a, int32_t b) {
      return probs[a] != probs[b] ? probs[a] > probs[b] : a < b;
    });
    const int32_t kth = idx[top_k - 1];
    for (int64_t k = 0; k < vocab; ++k) {
      if (probs[k] < probs[kth] || (probs[k] == probs[kth] && k > kth)) probs[k] = 0.0;
    }
  }
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  int64_t kept = vocab;
  double total = 0.0;
  if (top_p < 1.0) {
    std::stable_sort(order.begin(), order.end(),
                     [&](int32_t a, int32_t b) { return probs[a] > probs[b]; });
    const double sum = std::accumulate(probs.begin(), probs.end(), 0.0);
    kept = 0;
    // Keep the smallest prefix whose mass reaches top_p (the first token always).
    while (kept < vocab && (kept == 0 || total < top_p * sum)) total += probs[order[kept++]];
  } else {
    total = std::accumulate(probs.begin(), probs.end(), 0.0);
  }
  const double target = u * total;
  double cum = 0.0;
  int32_t last_positive = order[0];
  for (int64_t k = 0; k < kept; ++k) {
    const double p = probs[order[k]];
    if (p <= 0.0) continue;
    last_positive = order[k];
    cum += p;
    if (cum > target) return order[k];
  }
  return last_positive;
}

}  // namespace spar::model::internal
