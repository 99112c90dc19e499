#include "trainer/losses.h"

#include <cmath>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"

namespace spar::trainer {
namespace {

constexpr std::pair<LossKind, const char*> kLossNames[] = {
    {LossKind::kDpo, "dpo"},
    {LossKind::kCdpo, "cdpo"},
    {LossKind::kRobust, "robust"},
    {LossKind::kDno, "dno"},
    {LossKind::kIpo, "ipo"},
    {LossKind::kIpoSum, "ipo_sum"},
    {LossKind::kHinge, "hinge"},
    {LossKind::kSppo, "sppo"},
    {LossKind::kSppoHard, "sppo_hard"},
    {LossKind::kSimpo, "simpo"},
    {LossKind::kMpo, "mpo"},
    {LossKind::kMpoPg, "mpo_pg"},
    {LossKind::kSft, "sft"},
    {LossKind::kBrain, "brain"},
    {LossKind::kBrainNoBaseline, "brain_no_baseline"},
    {LossKind::kRrhf, "rrhf"},
};

torch::Tensor F32(const torch::Tensor& t) { return t.to(torch::kFloat32); }

}  // namespace

absl::StatusOr<LossKind> ParseLossKind(const std::string& name) {
  for (const auto& [kind, n] : kLossNames) {
    if (name == n) return kind;
  }
  return absl::InvalidArgumentError(absl::StrCat("train.loss: unknown loss \"", name, "\""));
}

const char* LossName(LossKind kind) {
  for (const auto& [k, n] : kLossNames) {
    if (k == kind) return n;
  }
  return "?";
}

bool NeedsReference(LossKind kind) {
  return kind != LossKind::kSimpo && kind != LossKind::kSft && kind != LossKind::kRrhf;
}
bool IsPairwise(LossKind kind) { return kind != LossKind::kSft && !IsListwise(kind); }
bool IsListwise(LossKind kind) {
  return kind == LossKind::kBrain || kind == LossKind::kBrainNoBaseline || kind == LossKind::kRrhf;
}

PairTargets TargetsFromJudgeData(std::optional<double> p, std::optional<double> chosen_win_rate,
                                 std::optional<double> rejected_win_rate) {
  PairTargets t;
  const bool wins = chosen_win_rate.has_value() && rejected_win_rate.has_value();
  if (p) {
    t.p = *p;
  } else if (wins) {
    t.p = 1.0 / (1.0 + std::exp(-(*chosen_win_rate - *rejected_win_rate)));
  }
  if (wins) {
    t.win_chosen = *chosen_win_rate;
    t.win_rejected = *rejected_win_rate;
  } else {
    t.win_chosen = (0.5 + t.p) / 2;
    t.win_rejected = (0.5 + 1 - t.p) / 2;
  }
  // A(y) = P̂(y ≻ y') - ½: the judged preference of the pair, else each response's own win
  // rate vs π_t (never σ(q̂_w - q̂_l), which is a soft label, not a win probability of y).
  if (p || !wins) {
    t.adv_chosen = t.p - 0.5;
    t.adv_rejected = 0.5 - t.p;
  } else {
    t.adv_chosen = *chosen_win_rate - 0.5;
    t.adv_rejected = *rejected_win_rate - 0.5;
  }
  return t;
}

namespace {

// simpo and sft: no reference; rewards are β ℓ_θ/|y|.
torch::Tensor ReferenceFreeLoss(LossKind kind, const PairLossInputs& in, const LossParams& params,
                                PairLossOutput* out) {
  const double beta = params.beta;
  torch::Tensor lw = F32(in.policy_chosen), len_w = F32(in.chosen_len);
  out->chosen_rewards = (beta * lw / len_w).detach();
  if (kind == LossKind::kSft) {
    out->rejected_rewards = torch::zeros_like(out->chosen_rewards);
    return -lw / len_w;
  }
  torch::Tensor ll = F32(in.policy_rejected), len_l = F32(in.rejected_len);
  out->rejected_rewards = (beta * ll / len_l).detach();
  return -torch::log_sigmoid(beta * lw / len_w - beta * ll / len_l - params.simpo_gamma);
}

// mpo_pg (§5): -A(y)·ℓ_θ(y) + α Σ_t sg[log π_θ - log π_mag]·log π_θ
// + (1/η) Σ_t sg[log π_θ - log π_k]·log π_θ, summed over both responses of the pair.
torch::Tensor MpoPgLoss(const PairLossInputs& in, const LossParams& params) {
  auto kl = [](const torch::Tensor& pol, const torch::Tensor& other) {
    torch::Tensor x = F32(pol);
    return ((x - F32(other)).detach() * x).sum(-1);
  };
  return -F32(in.adv_chosen) * F32(in.policy_chosen) -
         F32(in.adv_rejected) * F32(in.policy_rejected) +
         params.mpo_alpha * (kl(in.token_policy_chosen, in.token_magnet_chosen) +
                             kl(in.token_policy_rejected, in.token_magnet_rejected)) +
         (1 / params.mpo_eta) * (kl(in.token_policy_chosen, in.token_ref_chosen) +
                                 kl(in.token_policy_rejected, in.token_ref_rejected));
}

// The losses with a reference (every kind but simpo, sft and mpo_pg), from ρ_w, ρ_l.
torch::Tensor ReferenceLoss(LossKind kind, const PairLossInputs& in, const LossParams& params,
                            const torch::Tensor& rho_w, const torch::Tensor& rho_l) {
  const double beta = params.beta, eps = params.label_smoothing;
  const torch::Tensor h = rho_w - rho_l;
  switch (kind) {
    case LossKind::kDpo:
      return -torch::log_sigmoid(beta * h);
    case LossKind::kCdpo:
      return -(1 - eps) * torch::log_sigmoid(beta * h) - eps * torch::log_sigmoid(-beta * h);
    case LossKind::kRobust:
      return (-(1 - eps) * torch::log_sigmoid(beta * h) + eps * torch::log_sigmoid(-beta * h)) /
             (1 - 2 * eps);
    case LossKind::kDno: {
      torch::Tensor p = F32(in.p);
      return -(p * torch::log_sigmoid(beta * h) + (1 - p) * torch::log_sigmoid(-beta * h));
    }
    case LossKind::kIpo:
      return (rho_w / F32(in.chosen_len) - rho_l / F32(in.rejected_len) - 1 / (2 * beta)).pow(2);
    case LossKind::kIpoSum:
      return (h - 1 / (2 * beta)).pow(2);
    case LossKind::kHinge:
      return torch::relu(1 - beta * h);
    case LossKind::kSppo:
      return 0.5 * ((rho_w - (F32(in.win_chosen) - 0.5) / beta).pow(2) +
                    (rho_l - (F32(in.win_rejected) - 0.5) / beta).pow(2));
    case LossKind::kSppoHard:
      return (rho_w - 0.5 / beta).pow(2) + (rho_l + 0.5 / beta).pow(2);
    case LossKind::kMpo: {
      const double a = params.mpo_alpha, eta = params.mpo_eta, z = 1 + a * eta;
      torch::Tensor rk_w =
          F32(in.policy_chosen) - (F32(in.ref_chosen) + a * eta * F32(in.magnet_chosen)) / z;
      torch::Tensor rk_l =
          F32(in.policy_rejected) - (F32(in.ref_rejected) + a * eta * F32(in.magnet_rejected)) / z;
      torch::Tensor target = eta * (F32(in.win_chosen) - F32(in.win_rejected)) / z;
      return ((rk_w - rk_l) - target).pow(2);
    }
    case LossKind::kMpoPg:
      return MpoPgLoss(in, params);
    case LossKind::kSimpo:
    case LossKind::kSft:
      break;  // reference-free
    case LossKind::kBrain:
    case LossKind::kBrainNoBaseline:
    case LossKind::kRrhf:
      break;  // listwise: PairLoss refuses them
  }
  return torch::Tensor();
}

}  // namespace

PairLossOutput PairLoss(LossKind kind, const PairLossInputs& in, const LossParams& params) {
  TORCH_CHECK(!IsListwise(kind), "PairLoss: \"", LossName(kind),
              "\" is a listwise loss (trainer/listwise_losses.h)");
  PairLossOutput out;
  torch::Tensor losses;
  if (!NeedsReference(kind)) {
    losses = ReferenceFreeLoss(kind, in, params, &out);
  } else {
    torch::Tensor rho_w = F32(in.policy_chosen) - F32(in.ref_chosen);
    torch::Tensor rho_l = F32(in.policy_rejected) - F32(in.ref_rejected);
    out.chosen_rewards = (params.beta * rho_w).detach();
    out.rejected_rewards = (params.beta * rho_l).detach();
    losses = ReferenceLoss(kind, in, params, rho_w, rho_l);
  }
  if (params.nll_weight > 0) {
    losses = losses + params.nll_weight * (-F32(in.policy_chosen) / F32(in.chosen_len));
  }
  out.losses = losses;
  return out;
}

}  // namespace spar::trainer
