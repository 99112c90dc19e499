// The listwise losses of ALGORITHMS.md §9 (BRAIn) and §10 (RRHF) as pure, batched torch
// functions. A batch is G prompts × up to K responses each, padded to [G, K] with a mask; every
// loss is returned per group ([G]) so callers can average over a global batch split across
// micro-batches and ranks, as with PairLoss (trainer/losses.h). Padded entries contribute
// nothing (their values may be anything, NaN included) and receive zero gradient.
// tests/trainer/listwise_losses_test.cc pins both losses to an independent reference
// (listwise_losses_reference.py). Stateless and thread-compatible.
// Uses torch: include only from .cc files of trainer/ and from tests.
#pragma once

#include <torch/torch.h>

namespace spar::trainer {

// One [G, K] tensor per field; row g holds prompt g's responses. Sequence log-probs are sums
// over response tokens. The losses compute in float64 when policy_logp is float64 and in
// float32 otherwise (bf16/fp16 inputs are promoted).
struct ListwiseInputs {
  torch::Tensor policy_logp;    // ℓ_θ(y) = log π_θ(y|x) (with grad)
  torch::Tensor lengths;        // |y| in tokens (RRHF); any dtype; < 1 counts as 1
  torch::Tensor proposal_logp;  // log q(y|x) of the policy that sampled y (BRAIn)
  torch::Tensor sft_logp;       // log π_SFT(y|x), the prior (BRAIn)
  torch::Tensor rewards;        // r(x, y), e.g. the judge's pointwise score
  torch::Tensor mask;           // bool or numeric; nonzero = a real response, 0 = padding
};

enum class BrainVariant {
  // -Σ_i α_i log β_i(θ), β_i(θ) = softmax_i(ℓ_θ(y_i) - log q(y_i|x)): gradient
  // -Σ_i (α_i - β_i) ∇ℓ_θ(y_i), the BRAIn estimator.
  kSelfNormalizedBaseline,
  // -Σ_i α_i ℓ_θ(y_i): the paper's "without baseline" ablation (a DPG-style estimator).
  kNoBaseline,
};

struct BrainOutput {
  torch::Tensor losses;  // [G] (with grad); 0 for a group without valid responses
  // [G, K] detached: α_i = softmax_i(r_i/β + log π_SFT(y_i|x) - log q(y_i|x)) over the group's
  // valid responses, the self-normalized importance weights of the posterior
  // p(y|x) ∝ π_SFT(y|x)·exp(r/β); 0 on padding.
  torch::Tensor target_weights;
  torch::Tensor effective_sample_size;  // [G] detached: 1 / Σ_i α_i², in [1, #valid]; 0 if none
};

// BRAIn (Pandey et al., ICML 2024, arXiv 2402.02479), ALGORITHMS.md §9. beta (> 0) is the
// reward temperature of the target posterior. A group with one valid response has α = β = 1:
// loss 0 and no gradient under kSelfNormalizedBaseline. α depends only on reward differences
// within a group (adding a constant to a group's rewards changes nothing). Precondition
// violations (shapes, beta <= 0) throw c10::Error like any torch op; the trainer's torch
// boundary turns that into Internal.
BrainOutput BrainLoss(const ListwiseInputs& in, double beta, BrainVariant variant);

struct RrhfOutput {
  torch::Tensor losses;       // [G] (with grad): rank_losses + sft_weight · ft_losses
  torch::Tensor rank_losses;  // [G] detached: Σ_{r_i < r_j} max(0, p_i - p_j), p = ℓ_θ/|y|
  torch::Tensor ft_losses;    // [G] detached: -ℓ_θ(y_best), best = first highest reward
};

// RRHF (Yuan et al. 2023, arXiv 2304.05302, Eqs. 1-5), ALGORITHMS.md §10; no reference model.
// Pairs with equal rewards are not ranked (the paper's strict r_i < r_j and the official
// train.py's `rw_diff > 0`). L_ft is the paper's summed -ℓ_θ(y_best) (Eq. 4); the official
// train.py divides it by the padded token width of its batch (`-logit_label[max_idx].mean()`),
// which a caller can reproduce with sft_weight = 1/width. sft_weight is the paper's 1 by default.
RrhfOutput RrhfLoss(const ListwiseInputs& in, double sft_weight = 1.0);

}  // namespace spar::trainer
