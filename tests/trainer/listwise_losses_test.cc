// BrainLoss and RrhfLoss (trainer/listwise_losses.h) pinned to literal numbers from an
// independent reference: tests/trainer/listwise_losses_reference.py writes both losses from the
// papers' equations as loops over unpadded lists of responses (not from listwise_losses.cc), and
// takes gradients by finite differences. Regenerate with
//   python3 tests/trainer/listwise_losses_reference.py
#include "trainer/listwise_losses.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace spar::trainer {
namespace {

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kBeta = 0.5;  // BETA of the reference
constexpr int64_t kK = 4;      // responses per group after padding

// One response: ℓ_θ, |y|, log q, log π_SFT, r (the reference's dict keys).
struct Response {
  double logp, n, q, sft, r;
};

// The reference's GROUPS: 3 responses + 1 padded; 1 response + 3 padded; 4 responses with the
// reward ties 0.5/0.5 and 0.9/0.9 (the best reward is tied).
const std::vector<std::vector<Response>>& Groups() {
  static const std::vector<std::vector<Response>> kGroups = {
      {{-12, 6, -11, -11.5, 0.7}, {-8, 2, -9, -8.3, 0.2}, {-20, 8, -18, -19, 1.3}},
      {{-5, 4, -5.5, -6, -0.4}},
      {{-6, 3, -6.5, -7, 0.5},
       {-9, 3, -8, -8.8, 0.9},
       {-4, 4, -4.2, -3.9, 0.5},
       {-7.5, 5, -7, -7.2, 0.9}},
  };
  return kGroups;
}

// What padded slots hold unless a test says otherwise: the highest reward of all and length 0,
// so a padded entry that leaked into a softmax, a ranking, the argmax or a division would show.
constexpr Response kPad = {-1, 0, 3, 7, 100};

torch::Tensor Field(double Response::*field, const Response& pad, torch::ScalarType type) {
  const auto& groups = Groups();
  torch::Tensor t = torch::empty({static_cast<int64_t>(groups.size()), kK}, torch::kFloat64);
  for (size_t g = 0; g < groups.size(); ++g) {
    for (int64_t k = 0; k < kK; ++k) {
      const size_t i = static_cast<size_t>(k);
      t[g][k] = i < groups[g].size() ? groups[g][i].*field : pad.*field;
    }
  }
  return t.to(type);
}

// The [3, 4] batch in `type`, with ℓ_θ a leaf with grad.
ListwiseInputs Batch(torch::ScalarType type = torch::kFloat64, const Response& pad = kPad) {
  ListwiseInputs in;
  in.policy_logp = Field(&Response::logp, pad, type).requires_grad_(true);
  in.lengths = Field(&Response::n, pad, type);
  in.proposal_logp = Field(&Response::q, pad, type);
  in.sft_logp = Field(&Response::sft, pad, type);
  in.rewards = Field(&Response::r, pad, type);
  in.mask = torch::zeros({3, kK}, torch::kBool);
  for (size_t g = 0; g < Groups().size(); ++g) {
    in.mask[g].narrow(0, 0, static_cast<int64_t>(Groups()[g].size())).fill_(true);
  }
  return in;
}

// One group's printed row: the loss and d loss / d ℓ_θ(y_i) for its valid responses.
struct Pinned {
  double loss;
  std::vector<double> grad;
};

// Printed by listwise_losses_reference.py ("brain (self-normalized baseline)").
const std::vector<Pinned> kBrain = {
    {2.06853856760281, {-0.121923641615636, 0.555398530829828, -0.433474889215413}},
    {0, {0}},
    {1.62661894846677,
     {0.30191925854541, -0.113581377728137, 0.0352131107823987, -0.223550991599653}},
};
// "brain (no baseline)"
const std::vector<Pinned> kBrainNoBaseline = {
    {14.6502948281857, {-0.236118840999981, -0.28839620365062, -0.475484955347956}},
    {5, {-1.00000000000026}},
    {6.63481329643217,
     {-0.126928871048963, -0.209270329563453, -0.282485397525845, -0.381315401862074}},
};
// α and 1/Σα² per group (the comments of the brain rows).
const std::vector<std::vector<double>> kAlpha = {
    {0.236118841000112, 0.28839620365112, 0.475484955348768},
    {1},
    {0.126928871048541, 0.209270329563683, 0.282485397525871, 0.381315401861905},
};
const double kEss[] = {2.73964781519109, 1, 3.50748653257326};
// "rrhf": the loss and gradients, then L_rank and L_ft. Group 2's L_rank is 3.5; ranking its
// tied pairs too would add 1 and 1.5, and taking the last of the tied best would give L_ft 7.5.
const std::vector<Pinned> kRrhf = {
    {20.5, {0.166666666663614, 0, -1.12500000000211}},
    {5, {-1.00000000000026}},
    {12.5, {0.333333333334333, -1.66666666666485, 0.499999999999279, -0.199999999999534}},
};
const double kRrhfRank[] = {0.5, 0, 3.5};
const double kRrhfFt[] = {20, 5, 9};

// tol(v) = abs_tol · (1 + |v|).
void ExpectPinned(const torch::Tensor& losses, const torch::Tensor& grad,
                  const std::vector<Pinned>& want, double abs_tol) {
  ASSERT_EQ(losses.sizes(), torch::IntArrayRef({3}));
  ASSERT_TRUE(grad.defined());
  for (size_t g = 0; g < want.size(); ++g) {
    SCOPED_TRACE(testing::Message() << "group " << g);
    EXPECT_NEAR(losses[g].item<double>(), want[g].loss, abs_tol * (1 + std::abs(want[g].loss)));
    for (int64_t k = 0; k < kK; ++k) {
      const size_t i = static_cast<size_t>(k);
      const double w = i < want[g].grad.size() ? want[g].grad[i] : 0.0;  // padding: exactly 0
      const double tol = i < want[g].grad.size() ? abs_tol * (1 + std::abs(w)) : 0.0;
      EXPECT_NEAR(grad[g][k].item<double>(), w, tol) << "response " << k;
    }
  }
}

TEST(ListwiseLossesTest, BrainMatchesTheIndependentReference) {
  for (auto [variant, want] : {std::pair{BrainVariant::kSelfNormalizedBaseline, &kBrain},
                               std::pair{BrainVariant::kNoBaseline, &kBrainNoBaseline}}) {
    SCOPED_TRACE(variant == BrainVariant::kNoBaseline ? "no baseline" : "self-normalized");
    ListwiseInputs in = Batch();
    BrainOutput out = BrainLoss(in, kBeta, variant);
    EXPECT_EQ(out.losses.scalar_type(), torch::kFloat64);
    out.losses.sum().backward();
    ExpectPinned(out.losses, in.policy_logp.grad(), *want, 1e-9);
    EXPECT_FALSE(out.target_weights.requires_grad());
    for (size_t g = 0; g < kAlpha.size(); ++g) {
      EXPECT_NEAR(out.effective_sample_size[g].item<double>(), kEss[g], 1e-9);
      for (int64_t k = 0; k < kK; ++k) {
        const size_t i = static_cast<size_t>(k);
        EXPECT_NEAR(out.target_weights[g][k].item<double>(),
                    i < kAlpha[g].size() ? kAlpha[g][i] : 0.0, 1e-12);
      }
    }
  }
}

TEST(ListwiseLossesTest, RrhfMatchesTheIndependentReference) {
  ListwiseInputs in = Batch();
  RrhfOutput out = RrhfLoss(in);
  out.losses.sum().backward();
  ExpectPinned(out.losses, in.policy_logp.grad(), kRrhf, 1e-9);
  for (int g = 0; g < 3; ++g) {
    EXPECT_NEAR(out.rank_losses[g].item<double>(), kRrhfRank[g], 1e-12);
    EXPECT_NEAR(out.ft_losses[g].item<double>(), kRrhfFt[g], 1e-12);
  }
  EXPECT_FALSE(out.rank_losses.requires_grad());
}

TEST(ListwiseLossesTest, Float32MatchesTheReferenceLoosely) {
  ListwiseInputs in = Batch(torch::kFloat32);
  BrainOutput brain = BrainLoss(in, kBeta, BrainVariant::kSelfNormalizedBaseline);
  EXPECT_EQ(brain.losses.scalar_type(), torch::kFloat32);
  brain.losses.sum().backward();
  ExpectPinned(brain.losses, in.policy_logp.grad(), kBrain, 2e-5);

  in = Batch(torch::kFloat32);
  RrhfOutput rrhf = RrhfLoss(in);
  rrhf.losses.sum().backward();
  ExpectPinned(rrhf.losses, in.policy_logp.grad(), kRrhf, 2e-5);
}

// The two mistakes a listwise implementation is likeliest to make land far from the pinned
// numbers: BRAIn without its self-normalized baseline, RRHF without length normalization.
TEST(ListwiseLossesTest, WrongVariantsGiveDifferentNumbers) {
  ListwiseInputs in = Batch();
  BrainOutput wrong = BrainLoss(in, kBeta, BrainVariant::kNoBaseline);
  wrong.losses.sum().backward();
  for (int g : {0, 2}) {
    EXPECT_GT(std::abs(wrong.losses[g].item<double>() - kBrain[g].loss), 1.0) << g;
    EXPECT_GT(std::abs(in.policy_logp.grad()[g][1].item<double>() - kBrain[g].grad[1]), 0.09) << g;
  }

  in = Batch();
  in.lengths = torch::ones_like(in.lengths);  // p_i = ℓ_θ(y_i): unnormalized
  RrhfOutput unnormalized = RrhfLoss(in);
  for (int g : {0, 2}) {
    EXPECT_GT(std::abs(unnormalized.losses[g].item<double>() - kRrhf[g].loss), 1.0) << g;
    EXPECT_GT(std::abs(unnormalized.rank_losses[g].item<double>() - kRrhfRank[g]), 1.0) << g;
  }
}

// Whatever padded slots hold (NaN, ±inf, huge), losses, weights and gradients are those of the
// default padding, padded gradients are exactly 0, and a float mask reads like a bool one.
TEST(ListwiseLossesTest, PaddedValuesChangeNothing) {
  auto run = [](const ListwiseInputs& in) {
    BrainOutput b = BrainLoss(in, kBeta, BrainVariant::kSelfNormalizedBaseline);
    BrainOutput nb = BrainLoss(in, kBeta, BrainVariant::kNoBaseline);
    RrhfOutput r = RrhfLoss(in);
    (b.losses.sum() + 2 * nb.losses.sum() + 3 * r.losses.sum()).backward();
    return std::vector<torch::Tensor>{b.losses.detach(), nb.losses.detach(), b.target_weights,
                                      r.losses.detach(), in.policy_logp.grad().clone()};
  };
  const std::vector<torch::Tensor> base = run(Batch());
  for (const Response& pad :
       {Response{kNan, kNan, kNan, kNan, kNan}, Response{kInf, 0, -kInf, kInf, kInf},
        Response{-1e30, -5, 1e30, -1e30, -1e30}}) {
    ListwiseInputs in = Batch(torch::kFloat64, pad);
    const std::vector<torch::Tensor> got = run(in);
    for (size_t i = 0; i < base.size(); ++i) {
      EXPECT_TRUE(torch::equal(got[i], base[i])) << "output " << i << " with pad.r " << pad.r;
    }
  }
  ListwiseInputs in = Batch();
  in.mask = in.mask.to(torch::kFloat32);
  const std::vector<torch::Tensor> got = run(in);
  for (size_t i = 0; i < base.size(); ++i) EXPECT_TRUE(torch::equal(got[i], base[i])) << i;
}

// α depends on reward differences within a group, and q enters α and β alike: shifting a
// group's rewards or its proposal log-probs by a constant changes no BRAIn number. RRHF only
// ranks rewards, so it ignores the shift too.
TEST(ListwiseLossesTest, BrainIgnoresPerGroupShiftsOfRewardsAndProposal) {
  const torch::Tensor shift = torch::tensor({1000.0, -50.0, 7.25}, torch::kFloat64).unsqueeze(1);
  for (bool shift_rewards : {true, false}) {
    SCOPED_TRACE(shift_rewards ? "rewards" : "proposal");
    ListwiseInputs in = Batch();
    (shift_rewards ? in.rewards : in.proposal_logp) += shift;
    BrainOutput out = BrainLoss(in, kBeta, BrainVariant::kSelfNormalizedBaseline);
    out.losses.sum().backward();
    ExpectPinned(out.losses, in.policy_logp.grad(), kBrain, 1e-9);
  }
  ListwiseInputs in = Batch();
  in.rewards += shift;
  RrhfOutput out = RrhfLoss(in);
  out.losses.sum().backward();
  ExpectPinned(out.losses, in.policy_logp.grad(), kRrhf, 1e-9);
}

// The paper's link to DPO: two samples from π_SFT (q = π_SFT) and argmax instead of softmax
// over rewards (β -> 0 makes α one-hot) give -log σ(ρ_w - ρ_l), ρ = ℓ_θ - log π_SFT.
TEST(ListwiseLossesTest, BrainWithTwoSftSamplesAndArgmaxWeightsIsDpo) {
  ListwiseInputs in;
  in.policy_logp = torch::tensor({{-3.0, -4.0}}, torch::kFloat64).requires_grad_(true);
  in.sft_logp = torch::tensor({{-3.5, -3.2}}, torch::kFloat64);
  in.proposal_logp = in.sft_logp.clone();
  in.rewards = torch::tensor({{1.0, 0.0}}, torch::kFloat64);
  in.mask = torch::ones({1, 2}, torch::kBool);
  BrainOutput out = BrainLoss(in, 1e-3, BrainVariant::kSelfNormalizedBaseline);
  const double h = (-3.0 + 3.5) - (-4.0 + 3.2);
  EXPECT_NEAR(out.losses[0].item<double>(), std::log1p(std::exp(-h)), 1e-12);
  out.losses.sum().backward();
  const double sigma = 1 / (1 + std::exp(h));  // d/dρ_w of -log σ(ρ_w - ρ_l) is -σ(-h)
  EXPECT_NEAR(in.policy_logp.grad()[0][0].item<double>(), -sigma, 1e-12);
  EXPECT_NEAR(in.policy_logp.grad()[0][1].item<double>(), sigma, 1e-12);
}

// float32 with rewards 1e6 at β 0.01 (softmax logits ~1e8) and a group with no valid response:
// everything stays finite; the empty group contributes 0 and receives no gradient.
TEST(ListwiseLossesTest, StableForLargeRewardsAndEmptyGroups) {
  ListwiseInputs in = Batch(torch::kFloat32);
  in.rewards = in.rewards * 1e6;
  in.mask[1].fill_(false);
  BrainOutput brain = BrainLoss(in, 0.01, BrainVariant::kSelfNormalizedBaseline);
  RrhfOutput rrhf = RrhfLoss(in);
  (brain.losses.sum() + rrhf.losses.sum()).backward();
  EXPECT_TRUE(torch::isfinite(brain.losses).all().item<bool>());
  EXPECT_TRUE(torch::isfinite(brain.target_weights).all().item<bool>());
  EXPECT_TRUE(torch::isfinite(in.policy_logp.grad()).all().item<bool>());
  EXPECT_EQ(brain.losses[1].item<float>(), 0.0f);
  EXPECT_EQ(brain.effective_sample_size[1].item<float>(), 0.0f);
  EXPECT_EQ(rrhf.losses[1].item<float>(), 0.0f);
  EXPECT_TRUE(torch::equal(in.policy_logp.grad()[1], torch::zeros({kK})));
  // Group 0: α is one-hot on the best reward (response 2).
  EXPECT_NEAR(brain.target_weights[0][2].item<float>(), 1.0f, 1e-6);
  EXPECT_NEAR(brain.effective_sample_size[0].item<float>(), 1.0f, 1e-5);
}

TEST(ListwiseLossesTest, RejectsBadShapesAndBeta) {
  ListwiseInputs in = Batch();
  EXPECT_THROW(BrainLoss(in, 0.0, BrainVariant::kSelfNormalizedBaseline), c10::Error);
  in.rewards = in.rewards.narrow(1, 0, 3);
  EXPECT_THROW(BrainLoss(in, kBeta, BrainVariant::kSelfNormalizedBaseline), c10::Error);
  EXPECT_THROW(RrhfLoss(in), c10::Error);
  in = Batch();
  in.sft_logp = torch::Tensor();
  EXPECT_THROW(BrainLoss(in, kBeta, BrainVariant::kNoBaseline), c10::Error);
  EXPECT_NO_THROW(RrhfLoss(in));  // RRHF does not read sft_logp
}

}  // namespace
}  // namespace spar::trainer
