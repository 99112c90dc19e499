#include "trainer/losses.h"

#include <cmath>

namespace spar::trainer {

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
  // -log sigmoid(z) = softplus(-z), computed stably.
  const double z = t.margin;
  t.loss = z > 0 ? std::log1p(std::exp(-z)) : -z + std::log1p(std::exp(z));
  return t;
}

}  // namespace spar::trainer
