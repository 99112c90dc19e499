// The loss family of ALGORITHMS.md §7 as small testable units: every loss as a batched torch
// function returning per-example losses (so callers can average over a global batch split across
// micro-batches and ranks), and the per-pair targets (soft label, win rates, mpo_pg advantages)
// derived from a pair's judge data. PairLoss is what the trainer calls; tests/trainer/
// losses_test.cc pins it to numbers from an independent reference (losses_reference.py).
// Uses torch: include only from .cc files of trainer/ and from tests.
#pragma once

#include <torch/torch.h>

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/mpo_defaults.h"

namespace spar::trainer {

enum class LossKind {
  kDpo,       // -logσ(βh)
  kCdpo,      // -(1-ε)logσ(βh) - ε logσ(-βh)
  kRobust,    // [-(1-ε)logσ(βh) + ε logσ(-βh)] / (1-2ε)
  kDno,       // -[p logσ(βh) + (1-p) logσ(-βh)]            (β is DNO's η)
  kIpo,       // (h̄ - 1/(2β))², h̄ from per-token-averaged log-ratios (TRL's form)
  kIpoSum,    // (h - 1/(2β))², h from summed log-ratios (the IPO paper's form)
  kHinge,     // relu(1 - βh)
  kSppo,      // ½[(ρ_w - (P̂_w-½)/β)² + (ρ_l - (P̂_l-½)/β)²]  (η = 1/β)
  kSppoHard,  // (ρ_w - ½/β)² + (ρ_l + ½/β)²
  kSimpo,     // -logσ(β ℓ_w/|y_w| - β ℓ_l/|y_l| - γ), reference-free
  kMpo,       // ([ρ_k(y_w) - ρ_k(y_l)] - η(q̂_w - q̂_l)/(1+αη))², §5 batched regression
  kMpoPg,     // REINFORCE with A(y) = P̂(y ≻ ·) - ½ and token-level KL to magnet and π_k, §5
  kSft,       // -ℓ_θ(y_w)/|y_w|
  // Listwise (trainer/listwise_losses.h; trained by TrainListwise on groups, never by PairLoss).
  kBrain,            // BrainLoss, self-normalized baseline (reference = the prior π_SFT)
  kBrainNoBaseline,  // BrainLoss, the paper's "without baseline" ablation
  kRrhf,             // RrhfLoss, reference-free
};

// "dpo" | "cdpo" | "robust" | "dno" | "ipo" | "ipo_sum" | "hinge" | "sppo" | "sppo_hard" |
// "simpo" | "mpo" | "mpo_pg" | "sft"; InvalidArgument "train.loss: unknown loss \"x\"" otherwise.
absl::StatusOr<LossKind> ParseLossKind(const std::string& name);
const char* LossName(LossKind kind);
// True for losses that need reference log-probs (π_t); false for simpo and sft.
bool NeedsReference(LossKind kind);
// True for losses that use the rejected response (all but sft).
bool IsPairwise(LossKind kind);
bool IsListwise(LossKind kind);

struct LossParams {
  double beta = 0.1;                    // β (DNO's η; SPPO's η = 1/β)
  double label_smoothing = 0.1;         // ε of cdpo / robust
  double simpo_gamma = 1.6;             // γ of SimPO
  double mpo_alpha = kDefaultMpoAlpha;  // α: magnet strength (MPO)
  double mpo_eta = kDefaultMpoEta;      // η: mirror-descent step size (MPO)
  double nll_weight = 0;  // any loss: + nll_weight · (-ℓ_θ(y_w)/|y_w|) (RPO); 0 = off
};

// What a pair's judge data means to the losses. Inputs are the optional fields of a pairs row,
// each in [0, 1]: p = the judged P(y_w ≻ y_l), and the win rates P̂ / q̂(y ≻ π_t) of both sides.
struct PairTargets {
  double p = 1;  // soft label (dno): p if given, else σ(q̂_w - q̂_l), else 1
  // P̂_w (sppo, mpo): given, else (½ + p)/2 (two samples, self included).
  double win_chosen = 1;
  double win_rejected = 0;  // P̂_l: given, else (½ + 1 - p)/2
  // mpo_pg's REINFORCE advantages A(y) = P̂(y ≻ y') - ½ (ALGORITHMS.md §5): with a judged p,
  // A_w = p - ½ and A_l = ½ - p; else with both win rates, A = q̂ - ½ per response; else ±½.
  double adv_chosen = 0.5;
  double adv_rejected = -0.5;
};
PairTargets TargetsFromJudgeData(std::optional<double> p, std::optional<double> chosen_win_rate,
                                 std::optional<double> rejected_win_rate);

// Batched inputs; [B] float32 unless noted. Sequence log-probs ℓ are sums over response tokens.
struct PairLossInputs {
  torch::Tensor policy_chosen, policy_rejected;  // ℓ_θ(y_w), ℓ_θ(y_l) (with grad)
  torch::Tensor chosen_len, rejected_len;        // |y_w|, |y_l| in tokens (>= 1)
  torch::Tensor ref_chosen, ref_rejected;        // ℓ_ref (π_t); needed when NeedsReference
  torch::Tensor magnet_chosen, magnet_rejected;  // ℓ_mag (mpo)
  torch::Tensor p;                               // P(y_w ≻ y_l) (dno)
  torch::Tensor win_chosen, win_rejected;        // P̂ / q̂ win rates vs π_t (sppo, mpo)
  torch::Tensor adv_chosen, adv_rejected;        // A(y_w), A(y_l) (mpo_pg; PairTargets)
  // mpo_pg only: per-token log-probs [B, T] masked to response tokens (0 elsewhere).
  torch::Tensor token_policy_chosen, token_policy_rejected;  // with grad
  torch::Tensor token_ref_chosen, token_ref_rejected;        // π_k
  torch::Tensor token_magnet_chosen, token_magnet_rejected;  // π_mag
};

struct PairLossOutput {
  torch::Tensor losses;            // [B] per-example loss (with grad), NLL term included
  torch::Tensor chosen_rewards;    // [B] detached: β ρ(y_w) (simpo/sft: β ℓ_θ(y_w)/|y_w|)
  torch::Tensor rejected_rewards;  // [B] detached: β ρ(y_l) (simpo/sft: β ℓ_θ(y_l)/|y_l|)
};
PairLossOutput PairLoss(LossKind kind, const PairLossInputs& in, const LossParams& params);

}  // namespace spar::trainer
