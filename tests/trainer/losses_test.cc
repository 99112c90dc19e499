#include "trainer/losses.h"

#include <cmath>

#include "gtest/gtest.h"

namespace spar::trainer {
namespace {

TEST(DpoLossTest, ScalarMatchesHandComputedValues) {
  // rho_w = -5 - -6 = 1, rho_l = -7 - -6 = -1, h = 2, beta h = 0.2:
  // loss = log(1 + e^-0.2) = 0.598138869...
  DpoTerms t = DpoLossScalar(-5, -7, -6, -6, 0.1);
  EXPECT_NEAR(t.loss, 0.5981388693, 1e-9);
  EXPECT_NEAR(t.reward_chosen, 0.1, 1e-12);
  EXPECT_NEAR(t.reward_rejected, -0.1, 1e-12);
  EXPECT_NEAR(t.margin, 0.2, 1e-12);
  // h = -1: loss = log(1 + e^0.1) = 0.744396660...
  EXPECT_NEAR(DpoLossScalar(-3, -2, -3, -3, 0.1).loss, 0.7443966600, 1e-9);
  // Policy == reference: log 2.
  EXPECT_NEAR(DpoLossScalar(-4, -4, -4, -4, 0.5).loss, std::log(2.0), 1e-12);
  // Stable for large margins.
  EXPECT_NEAR(DpoLossScalar(0, -1e5, 0, 0, 1.0).loss, 0.0, 1e-12);
  EXPECT_NEAR(DpoLossScalar(0, 1e5, 0, 0, 1.0).loss, 1e5, 1e-6);
}

TEST(DpoLossTest, TensorVersionMatchesClosedForm) {
  torch::Tensor pc = torch::tensor({-5.0f, -3.0f});
  torch::Tensor pr = torch::tensor({-7.0f, -2.0f});
  torch::Tensor rc = torch::tensor({-6.0f, -3.0f});
  torch::Tensor rr = torch::tensor({-6.0f, -3.0f});
  DpoLossOutput out = DpoLoss(pc, pr, rc, rr, 0.1);
  EXPECT_NEAR(out.loss.item<double>(), (0.5981388693 + 0.7443966600) / 2, 1e-6);
  EXPECT_NEAR(out.chosen_rewards[0].item<double>(), 0.1, 1e-6);
  EXPECT_NEAR(out.chosen_rewards[1].item<double>(), 0.0, 1e-6);
  EXPECT_NEAR(out.rejected_rewards[0].item<double>(), -0.1, 1e-6);
  EXPECT_NEAR(out.rejected_rewards[1].item<double>(), 0.1, 1e-6);
  // Stable where a naive log(sigmoid) underflows.
  DpoLossOutput big = DpoLoss(torch::tensor({0.0f}), torch::tensor({1000.0f}),
                              torch::tensor({0.0f}), torch::tensor({0.0f}), 1.0);
  EXPECT_NEAR(big.loss.item<double>(), 1000.0, 1e-3);
}

TEST(DpoLossTest, GradientStepRaisesChosenOverRejected) {
  // Toy policy: log-probs of y_w and y_l are log_softmax over two logits.
  torch::Tensor logits = torch::zeros({2}, torch::requires_grad());
  torch::Tensor ref = torch::log_softmax(logits.detach(), 0);
  auto margin = [&]() {
    torch::Tensor lp = torch::log_softmax(logits, 0);
    return lp[0] - lp[1];
  };
  const double before = margin().item<double>();
  torch::Tensor lp = torch::log_softmax(logits, 0);
  DpoLossOutput out = DpoLoss(lp.slice(0, 0, 1), lp.slice(0, 1, 2), ref.slice(0, 0, 1),
                              ref.slice(0, 1, 2), 0.1);
  out.loss.backward();
  // d loss / d h = -beta * sigmoid(-beta h) = -0.05 at h = 0.
  {
    torch::NoGradGuard no_grad;
    logits -= 1.0 * logits.grad();
  }
  const double after = margin().item<double>();
  EXPECT_GT(after, before);
  EXPECT_NEAR(after - before, 0.1, 1e-5);  // grad on logits = [-0.05, +0.05] -> margin +0.1
}

}  // namespace
}  // namespace spar::trainer
