// The loss family of ALGORITHMS.md §7 as small testable units: every loss as a batched torch
// function (per-example losses, so callers can average over a global batch split across
// micro-batches and ranks) and as a closed form in double on one example (documentation and
// tests). Uses torch: include only from .cc files of trainer/ and from tests.
#pragma once

#include <string>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "common/mpo_defaults.h"

namespace spar::trainer {

enum class LossKind {
  kDpo,       // -logσ(βh)
  kCdpo,      // -(1-ε)logσ(βh) - ε logσ(-βh)
  kRobust,    // [-(1-ε)logσ(βh) + ε logσ(-βh)] / (1-2ε)
  kDno,       // -[p logσ(βh) + (1-p) logσ(-βh)]            (β is DNO's η)
  kIpo,       // (h̄ - 1/(2β))², h̄ from per-token-averaged log-ratios
  kHinge,     // relu(1 - βh)
  kSppo,      // ½[(ρ_w - (P̂_w-½)/β)² + (ρ_l - (P̂_l-½)/β)²]  (η = 1/β)
  kSppoHard,  // (ρ_w - ½/β)² + (ρ_l + ½/β)²
  kSimpo,     // -logσ(β ℓ_w/|y_w| - β ℓ_l/|y_l| - γ), reference-free
  kMpo,       // ([ρ_k(y_w) - ρ_k(y_l)] - η(q̂_w - q̂_l)/(1+αη))², §5 batched regression
  kMpoPg,     // REINFORCE with token-level KL terms to the magnet and π_k, §5
  kSft,       // -ℓ_θ(y_w)/|y_w|
};

// "dpo" | "cdpo" | "robust" | "dno" | "ipo" | "hinge" | "sppo" | "sppo_hard" | "simpo" | "mpo" |
// "mpo_pg" | "sft"; InvalidArgument "train.loss: unknown loss \"x\"" otherwise.
absl::StatusOr<LossKind> ParseLossKind(const std::string& name);
const char* LossName(LossKind kind);
// True for losses that need reference log-probs (π_t); false for simpo and sft.
bool NeedsReference(LossKind kind);
// True for losses that use the rejected response (all but sft).
bool IsPairwise(LossKind kind);

struct LossParams {
  double beta = 0.1;             // β (DNO's η; SPPO's η = 1/β)
  double label_smoothing = 0.1;  // ε of cdpo / robust
  double simpo_gamma = 1.6;      // γ of SimPO
  double mpo_alpha = kDefaultMpoAlpha;  // α: magnet strength (MPO)
  double mpo_eta = kDefaultMpoEta;      // η: mirror-descent step size (MPO)
};

// Batched inputs; [B] float32 unless noted. Sequence log-probs ℓ are sums over response tokens.
struct PairLossInputs {
  torch::Tensor policy_chosen, policy_rejected;  // ℓ_θ(y_w), ℓ_θ(y_l) (with grad)
  torch::Tensor chosen_len, rejected_len;        // |y_w|, |y_l| in tokens (>= 1)
  torch::Tensor ref_chosen, ref_rejected;        // ℓ_ref (π_t); needed when NeedsReference
  torch::Tensor magnet_chosen, magnet_rejected;  // ℓ_mag (mpo)
  torch::Tensor p;                               // P(y_w ≻ y_l) (dno, mpo_pg)
  torch::Tensor win_chosen, win_rejected;        // P̂ / q̂ win rates vs π_t (sppo, mpo)
  // mpo_pg only: per-token log-probs [B, T] masked to response tokens (0 elsewhere).
  torch::Tensor token_policy_chosen, token_policy_rejected;  // with grad
  torch::Tensor token_ref_chosen, token_ref_rejected;        // π_k
  torch::Tensor token_magnet_chosen, token_magnet_rejected;  // π_mag
};

struct PairLossOutput {
  torch::Tensor losses;            // [B] per-example loss (with grad)
  torch::Tensor chosen_rewards;    // [B] detached: β ρ(y_w) (simpo/sft: β ℓ_θ(y_w)/|y_w|)
  torch::Tensor rejected_rewards;  // [B] detached: β ρ(y_l) (simpo/sft: β ℓ_θ(y_l)/|y_l|)
};
PairLossOutput PairLoss(LossKind kind, const PairLossInputs& in, const LossParams& params);

// One example in double, for the closed forms. Token vectors only for mpo_pg.
struct PairScalarInputs {
  double policy_chosen = 0, policy_rejected = 0;
  double chosen_len = 1, rejected_len = 1;
  double ref_chosen = 0, ref_rejected = 0;
  double magnet_chosen = 0, magnet_rejected = 0;
  double p = 1;
  double win_chosen = 1, win_rejected = 0;
  std::vector<double> token_policy_chosen, token_policy_rejected;
  std::vector<double> token_ref_chosen, token_ref_rejected;
  std::vector<double> token_magnet_chosen, token_magnet_rejected;
};
double PairLossScalar(LossKind kind, const PairScalarInputs& in, const LossParams& params);

// --- The original DPO unit (kept: used by callers and tests). ---

// Per-example inputs are sequence log-probs [B] (float32): policy and reference, chosen (y_w) and
// rejected (y_l).
struct DpoLossOutput {
  torch::Tensor loss;              // scalar: mean over the batch of -logsigmoid(beta * h)
  torch::Tensor chosen_rewards;    // [B] beta * (policy_chosen - ref_chosen), detached
  torch::Tensor rejected_rewards;  // [B] beta * (policy_rejected - ref_rejected), detached
};

// h = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected); loss = -logsigmoid(beta h).
DpoLossOutput DpoLoss(const torch::Tensor& policy_chosen, const torch::Tensor& policy_rejected,
                      const torch::Tensor& ref_chosen, const torch::Tensor& ref_rejected,
                      double beta);

// Closed form on one example, in double (documentation and tests).
struct DpoTerms {
  double loss = 0;             // -log sigmoid(beta h)
  double reward_chosen = 0;    // beta (policy_chosen - ref_chosen)
  double reward_rejected = 0;  // beta (policy_rejected - ref_rejected)
  double margin = 0;           // reward_chosen - reward_rejected = beta h
};
DpoTerms DpoLossScalar(double policy_chosen, double policy_rejected, double ref_chosen,
                       double ref_rejected, double beta);

}  // namespace spar::trainer
