// Token choice for Policy::Generate, without torch: the counter-based uniform that makes a
// sample a function of (seed, prompt, sample, step) only, and the pick from one row of logits.
// Private to model/.
#pragma once

#include <cstdint>

namespace spar::model::internal {

// A uniform in [0, 1) that depends on (seed, prompt, sample, step) only, so samples do not
// depend on how rows are batched.
double CounterUniform(uint64_t seed, uint64_t prompt, uint64_t sample, uint64_t step);

// Picks a token from one row of logits (double). temperature 0 = argmax (lowest id on ties);
// otherwise inverse-CDF sampling at `u` of softmax(logits / T), restricted by min-p, top-k and
// the top-p nucleus.
int32_t PickToken(const double* logits, int64_t vocab, double temperature, double top_p, double u,
                  int top_k = 0, double min_p = 0.0);

}  // namespace spar::model::internal
