#include "trainer/losses.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace spar::trainer {
namespace {

constexpr std::pair<LossKind, const char*> kLossNames[] = {
    {LossKind::kDpo, "dpo"},         {LossKind::kCdpo, "cdpo"},   {LossKind::kRobust, "robust"},
    {LossKind::kDno, "dno"},         {LossKind::kIpo, "ipo"},     {LossKind::kHinge, "hinge"},
    {LossKind::kSppo, "sppo"},       {LossKind::kSppoHard, "sppo_hard"},
    {LossKind::kSimpo, "simpo"},     {LossKind::kMpo, "mpo"},     {LossKind::kMpoPg, "mpo_pg"},
    {LossKind::kSft, "sft"},
};

torch::Tensor F32(const torch::Tensor& t) { return t.to(torch::kFloat32); }

// log σ(z), stable.
double LogSigmoid(double z) { return z >= 0 ? -std::log1p(std::exp(-z)) : z - std::log1p(std::exp(z)); }

double Dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Σ_t (a_t - b_t) a_t: the value of Σ_t sg[a - b]·a.
double KlTermScalar(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += (a[i] - b[i]) * a[i];
  return s;
}

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

bool NeedsReference(LossKind kind) { return kind != LossKind::kSimpo && kind != LossKind::kSft; }
bool IsPairwise(LossKind kind) { return kind != LossKind::kSft; }

PairLossOutput PairLoss(LossKind kind, const PairLossInputs& in, const LossParams& params) {
  const double beta = params.beta;
  const double eps = params.label_smoothing;
  torch::Tensor lw = F32(in.policy_chosen);
  torch::Tensor ll = IsPairwise(kind) ? F32(in.policy_rejected) : torch::Tensor();
  torch::Tensor len_w = F32(in.chosen_len);
  torch::Tensor len_l = IsPairwise(kind) ? F32(in.rejected_len) : torch::Tensor();
  PairLossOutput out;
  if (!NeedsReference(kind)) {
    out.chosen_rewards = (beta * lw / len_w).detach();
    out.rejected_rewards =
        IsPairwise(kind) ? (beta * ll / len_l).detach() : torch::zeros_like(out.chosen_rewards);
    if (kind == LossKind::kSft) {
      out.losses = -lw / len_w;
    } else {  // SimPO
      out.losses = -torch::log_sigmoid(beta * lw / len_w - beta * ll / len_l - params.simpo_gamma);
    }
    return out;
  }
  torch::Tensor rho_w = lw - F32(in.ref_chosen);
  torch::Tensor rho_l = ll - F32(in.ref_rejected);
  torch::Tensor h = rho_w - rho_l;
  out.chosen_rewards = (beta * rho_w).detach();
  out.rejected_rewards = (beta * rho_l).detach();
  switch (kind) {
    case LossKind::kDpo:
      out.losses = -torch::log_sigmoid(beta * h);
      break;
    case LossKind::kCdpo:
      out.losses = -(1 - eps) * torch::log_sigmoid(beta * h) - eps * torch::log_sigmoid(-beta * h);
      break;
    case LossKind::kRobust:
      out.losses = (-(1 - eps) * torch::log_sigmoid(beta * h) + eps * torch::log_sigmoid(-beta * h)) /
                   (1 - 2 * eps);
      break;
    case LossKind::kDno: {
      torch::Tensor p = F32(in.p);
      out.losses = -(p * torch::log_sigmoid(beta * h) + (1 - p) * torch::log_sigmoid(-beta * h));
      break;
    }
    case LossKind::kIpo: {
      torch::Tensor h_bar = rho_w / len_w - rho_l / len_l;
      out.losses = (h_bar - 1 / (2 * beta)).pow(2);
      break;
    }
    case LossKind::kHinge:
      out.losses = torch::relu(1 - beta * h);
      break;
    case LossKind::kSppo: {
      const double eta = 1 / beta;
      out.losses = 0.5 * ((rho_w - eta * (F32(in.win_chosen) - 0.5)).pow(2) +
                          (rho_l - eta * (F32(in.win_rejected) - 0.5)).pow(2));
      break;
    }
    case LossKind::kSppoHard:
      out.losses = (rho_w - 0.5 / beta).pow(2) + (rho_l + 0.5 / beta).pow(2);
      break;
    case LossKind::kMpo: {
      const double a = params.mpo_alpha, eta = params.mpo_eta, z = 1 + a * eta;
      torch::Tensor rk_w = lw - (F32(in.ref_chosen) + a * eta * F32(in.magnet_chosen)) / z;
      torch::Tensor rk_l = ll - (F32(in.ref_rejected) + a * eta * F32(in.magnet_rejected)) / z;
      torch::Tensor target = eta * (F32(in.win_chosen) - F32(in.win_rejected)) / z;
      out.losses = ((rk_w - rk_l) - target).pow(2);
      break;
    }
    case LossKind::kMpoPg: {
      const double a = params.mpo_alpha, inv_eta = 1 / params.mpo_eta;
      torch::Tensor p = F32(in.p);
      torch::Tensor adv_w = p - 0.5, adv_l = 0.5 - p;  // A(y) = P̂(y ≻ y') - ½
      auto kl = [](const torch::Tensor& pol, const torch::Tensor& other) {
        torch::Tensor x = F32(pol);
        return ((x - F32(other)).detach() * x).sum(-1);
      };
      out.losses = -adv_w * lw - adv_l * ll +
                   a * (kl(in.token_policy_chosen, in.token_magnet_chosen) +
                        kl(in.token_policy_rejected, in.token_magnet_rejected)) +
                   inv_eta * (kl(in.token_policy_chosen, in.token_ref_chosen) +
                              kl(in.token_policy_rejected, in.token_ref_rejected));
      break;
    }
    case LossKind::kSimpo:
    case LossKind::kSft:
      break;  // handled above
  }
  return out;
}

double PairLossScalar(LossKind kind, const PairScalarInputs& in, const LossParams& params) {
  const double beta = params.beta, eps = params.label_smoothing;
  const double rho_w = in.policy_chosen - in.ref_chosen;
  const double rho_l = in.policy_rejected - in.ref_rejected;
  const double h = rho_w - rho_l;
  switch (kind) {
    case LossKind::kDpo:
      return -LogSigmoid(beta * h);
    case LossKind::kCdpo:
      return -(1 - eps) * LogSigmoid(beta * h) - eps * LogSigmoid(-beta * h);
    case LossKind::kRobust:
      return (-(1 - eps) * LogSigmoid(beta * h) + eps * LogSigmoid(-beta * h)) / (1 - 2 * eps);
    case LossKind::kDno:
      return -(in.p * LogSigmoid(beta * h) + (1 - in.p) * LogSigmoid(-beta * h));
    case LossKind::kIpo: {
      const double h_bar = rho_w / in.chosen_len - rho_l / in.rejected_len;
      return std::pow(h_bar - 1 / (2 * beta), 2);
    }
    case LossKind::kHinge:
      return std::max(0.0, 1 - beta * h);
    case LossKind::kSppo:
      return 0.5 * (std::pow(rho_w - (in.win_chosen - 0.5) / beta, 2) +
                    std::pow(rho_l - (in.win_rejected - 0.5) / beta, 2));
    case LossKind::kSppoHard:
      return std::pow(rho_w - 0.5 / beta, 2) + std::pow(rho_l + 0.5 / beta, 2);
    case LossKind::kSimpo:
      return -LogSigmoid(beta * in.policy_chosen / in.chosen_len -
                         beta * in.policy_rejected / in.rejected_len - params.simpo_gamma);
    case LossKind::kMpo: {
      const double a = params.mpo_alpha, eta = params.mpo_eta, z = 1 + a * eta;
      const double rk_w = in.policy_chosen - (in.ref_chosen + a * eta * in.magnet_chosen) / z;
      const double rk_l = in.policy_rejected - (in.ref_rejected + a * eta * in.magnet_rejected) / z;
      return std::pow((rk_w - rk_l) - eta * (in.win_chosen - in.win_rejected) / z, 2);
    }
    case LossKind::kMpoPg: {
      const double a = params.mpo_alpha, inv_eta = 1 / params.mpo_eta;
      const double lw = Dot(in.token_policy_chosen, std::vector<double>(in.token_policy_chosen.size(), 1.0));
      const double ll =
          Dot(in.token_policy_rejected, std::vector<double>(in.token_policy_rejected.size(), 1.0));
      return -(in.p - 0.5) * lw - (0.5 - in.p) * ll +
             a * (KlTermScalar(in.token_policy_chosen, in.token_magnet_chosen) +
                  KlTermScalar(in.token_policy_rejected, in.token_magnet_rejected)) +
             inv_eta * (KlTermScalar(in.token_policy_chosen, in.token_ref_chosen) +
                        KlTermScalar(in.token_policy_rejected, in.token_ref_rejected));
    }
    case LossKind::kSft:
      return -in.policy_chosen / in.chosen_len;
  }
  return 0;
}

DpoLossOutput DpoLoss(const torch::Tensor& policy_chosen, const torch::Tensor& policy_rejected,
                      const torch::Tensor& ref_chosen, const torch::Tensor& ref_rejected,
                      double beta) {
  torch::Tensor rho_w = policy_chosen.to(torch::kFloat32) - ref_chosen.to(torch::kFloat32);
  torch::Tensor rho_l = policy_rejected.to(torch::kFloat32) - ref_rejected.to(torch::kFloat32);
  torch::Tensor h = rho_w - rho_l;
  DpoLossOutput out;
  out.loss = -torch::log_sigmoid(beta * h).mean();
  out.chosen_rewards = (beta * rho_w).detach();
  out.rejected_rewards = (beta * rho_l).detach();
  return out;
}

DpoTerms DpoLossScalar(double policy_chosen, double policy_rejected, double ref_chosen,
                       double ref_rejected, double beta) {
  DpoTerms t;
  t.reward_chosen = beta * (policy_chosen - ref_chosen);
  t.reward_rejected = beta * (policy_rejected - ref_rejected);
  t.margin = t.reward_chosen - t.reward_rejected;
  t.loss = -LogSigmoid(t.margin);
  return t;
}

}  // namespace spar::trainer
