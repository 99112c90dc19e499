#include "trainer/listwise_losses.h"

#include <initializer_list>
#include <limits>
#include <utility>

namespace spar::trainer {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// float64 stays float64 (the reference tests pin 1e-9); everything else computes in float32.
torch::ScalarType ComputeType(const ListwiseInputs& in) {
  return in.policy_logp.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

void CheckShapes(const char* loss, const ListwiseInputs& in,
                 std::initializer_list<std::pair<const char*, const torch::Tensor*>> fields) {
  TORCH_CHECK(in.mask.defined() && in.mask.dim() == 2, loss, ": mask must be [G, K]");
  for (const auto& [name, t] : fields) {
    TORCH_CHECK(t->defined() && t->sizes() == in.mask.sizes(), loss, ": ", name, " must be ",
                in.mask.sizes(), " like mask");
  }
}

// `x` in `type`, padded entries replaced by `fill`: whatever they held (NaN, inf) cannot reach
// the loss, and torch::where sends them zero gradient.
torch::Tensor Clean(const torch::Tensor& x, const torch::Tensor& valid, torch::ScalarType type,
                    double fill) {
  torch::Tensor t = x.to(type);
  return torch::where(valid, t, torch::full({}, fill, t.options()));
}

// log softmax over each row's valid entries (padding is -inf before the softmax, so it takes
// no mass and comes out -inf). A row with no valid entry is taken over all its (cleaned)
// entries instead, so that nothing is NaN; callers mask it out.
torch::Tensor MaskedLogSoftmax(const torch::Tensor& logits, const torch::Tensor& valid) {
  torch::Tensor keep = valid | ~valid.any(1, /*keepdim=*/true);
  return torch::log_softmax(logits.masked_fill(~keep, -kInf), 1);
}

}  // namespace

BrainOutput BrainLoss(const ListwiseInputs& in, double beta, BrainVariant variant) {
  CheckShapes("BrainLoss", in,
              {{"policy_logp", &in.policy_logp},
               {"proposal_logp", &in.proposal_logp},
               {"sft_logp", &in.sft_logp},
               {"rewards", &in.rewards}});
  TORCH_CHECK(beta > 0, "BrainLoss: beta must be > 0, got ", beta);
  const torch::ScalarType type = ComputeType(in);
  const torch::Tensor valid = in.mask.to(torch::kBool);
  const torch::Tensor zero = torch::zeros({}, torch::TensorOptions().dtype(type));
  torch::Tensor logp = Clean(in.policy_logp, valid, type, 0);
  torch::Tensor log_q = Clean(in.proposal_logp.detach(), valid, type, 0);
  torch::Tensor log_sft = Clean(in.sft_logp.detach(), valid, type, 0);
  torch::Tensor r = Clean(in.rewards.detach(), valid, type, 0);

  // α: self-normalized importance weights of π_SFT·exp(r/β) against the proposal q.
  torch::Tensor alpha = MaskedLogSoftmax(r / beta + log_sft - log_q, valid).exp();
  alpha = torch::where(valid, alpha, zero).detach();
  torch::Tensor terms;
  if (variant == BrainVariant::kSelfNormalizedBaseline) {
    // log β_i(θ), β = the policy's self-normalized importance weights against q.
    terms = torch::where(valid, MaskedLogSoftmax(logp - log_q, valid), zero);
  } else {
    terms = logp;
  }
  BrainOutput out;
  out.losses = -(alpha * terms).sum(1);
  out.target_weights = alpha;
  torch::Tensor ess = 1 / alpha.pow(2).sum(1).clamp_min(1e-30);
  out.effective_sample_size = torch::where(valid.any(1), ess, zero).detach();
  return out;
}

RrhfOutput RrhfLoss(const ListwiseInputs& in, double sft_weight) {
  CheckShapes(
      "RrhfLoss", in,
      {{"policy_logp", &in.policy_logp}, {"lengths", &in.lengths}, {"rewards", &in.rewards}});
  const torch::ScalarType type = ComputeType(in);
  const torch::Tensor valid = in.mask.to(torch::kBool);
  const torch::Tensor zero = torch::zeros({}, torch::TensorOptions().dtype(type));
  torch::Tensor logp = Clean(in.policy_logp, valid, type, 0);
  torch::Tensor p = logp / Clean(in.lengths, valid, type, 1).clamp_min(1);  // Eq. 1
  torch::Tensor r = Clean(in.rewards.detach(), valid, type, 0);

  // Eq. 2 over [G, K, K]: pair (i, j) when both are valid and r_i < r_j (ties are not ranked).
  torch::Tensor pairs = valid.unsqueeze(2) & valid.unsqueeze(1) & (r.unsqueeze(2) < r.unsqueeze(1));
  torch::Tensor hinge = torch::relu(p.unsqueeze(2) - p.unsqueeze(1));
  torch::Tensor rank = torch::where(pairs, hinge, zero).sum({1, 2});
  // Eqs. 3-4: -ℓ_θ of the highest reward; argmax returns the first of tied maxima.
  torch::Tensor best = r.masked_fill(~valid, -kInf).argmax(1, /*keepdim=*/true);
  torch::Tensor ft = torch::where(valid.any(1), -logp.gather(1, best).squeeze(1), zero);

  RrhfOutput out;
  out.losses = rank + sft_weight * ft;  // Eq. 5
  out.rank_losses = rank.detach();
  out.ft_losses = ft.detach();
  return out;
}

}  // namespace spar::trainer
