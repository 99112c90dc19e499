// The DPO loss (ALGORITHMS.md §7) as a small testable unit. Uses torch: include only from .cc
// files of trainer/ and from tests.
#pragma once

#include <torch/torch.h>

namespace spar::trainer {

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
