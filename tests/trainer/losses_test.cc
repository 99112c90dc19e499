#include "trainer/losses.h"

#include <cmath>
#include <functional>
#include <numeric>
#include <utility>
#include <vector>

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

// --- The whole family (ALGORITHMS.md §7), table-driven. ---

double Ls(double z) { return -std::log1p(std::exp(-z)); }  // log σ(z), fine for |z| < 30
double Sq(double x) { return x * x; }

// Two hand-made examples; every field set so every loss has something to read.
std::vector<PairScalarInputs> Examples() {
  PairScalarInputs a;
  a.policy_chosen = -5;
  a.policy_rejected = -7;
  a.ref_chosen = -6;
  a.ref_rejected = -6.5;
  a.magnet_chosen = -5.5;
  a.magnet_rejected = -8;
  a.chosen_len = 2;
  a.rejected_len = 4;
  a.p = 0.8;
  a.win_chosen = 0.7;
  a.win_rejected = 0.35;
  a.token_policy_chosen = {-2, -3};
  a.token_policy_rejected = {-1, -2, -3, -1};
  a.token_ref_chosen = {-2.5, -3.5};
  a.token_ref_rejected = {-1, -2.5, -2, -1};
  a.token_magnet_chosen = {-2, -3.5};
  a.token_magnet_rejected = {-1.5, -2, -3.5, -1};
  PairScalarInputs b;
  b.policy_chosen = -3;
  b.policy_rejected = -2;
  b.ref_chosen = -3.2;
  b.ref_rejected = -2.5;
  b.magnet_chosen = -2.9;
  b.magnet_rejected = -2.1;
  b.chosen_len = 3;
  b.rejected_len = 1;
  b.p = 0.3;
  b.win_chosen = 0.45;
  b.win_rejected = 0.55;
  b.token_policy_chosen = {-1, -1.5, -0.5};
  b.token_policy_rejected = {-2};
  b.token_ref_chosen = {-1.2, -1.5, -0.5};
  b.token_ref_rejected = {-2.5};
  b.token_magnet_chosen = {-0.9, -1.4, -0.6};
  b.token_magnet_rejected = {-2.1};
  return {a, b};
}

struct Case {
  LossKind kind;
  LossParams params;
  // The §7 closed form written out independently of losses.cc.
  std::function<double(const PairScalarInputs&, const LossParams&)> expected;
};

std::vector<Case> Cases() {
  auto rho = [](const PairScalarInputs& x) {
    return std::make_pair(x.policy_chosen - x.ref_chosen, x.policy_rejected - x.ref_rejected);
  };
  LossParams base;
  LossParams sppo = base;
  sppo.beta = 0.5;  // η = 2 keeps the numbers readable
  LossParams simpo = base;
  simpo.beta = 2.0;
  simpo.simpo_gamma = 1.6;
  LossParams mpo = base;
  mpo.mpo_alpha = 0.1;
  mpo.mpo_eta = 3;
  return {
      {LossKind::kDpo, base,
       [=](const PairScalarInputs& x, const LossParams& q) {
         auto [w, l] = rho(x);
         return -Ls(q.beta * (w - l));
       }},
      {LossKind::kCdpo, base,
       [=](const PairScalarInputs& x, const LossParams& q) {
         auto [w, l] = rho(x);
         const double h = w - l, e = q.label_smoothing;
         return -(1 - e) * Ls(q.beta * h) - e * Ls(-q.beta * h);
       }},
      {LossKind::kRobust, base,
       [=](const PairScalarInputs& x, const LossParams& q) {
         auto [w, l] = rho(x);
         const double h = w - l, e = q.label_smoothing;
         return (-(1 - e) * Ls(q.beta * h) + e * Ls(-q.beta * h)) / (1 - 2 * e);
       }},
      {LossKind::kDno, base,
       [=](const PairScalarInputs& x, const LossParams& q) {
         auto [w, l] = rho(x);
         const double h = w - l;
         return -(x.p * Ls(q.beta * h) + (1 - x.p) * Ls(-q.beta * h));
       }},
      {LossKind::kIpo, base,
       [=](const PairScalarInputs& x, const LossParams& q) {
         auto [w, l] = rho(x);
         return Sq(w / x.chosen_len - l / x.rejected_len - 1 / (2 * q.beta));
       }},
      {LossKind::kHinge, base,
       [=](const PairScalarInputs& x, const LossParams& q) {
         auto [w, l] = rho(x);
         return std::max(0.0, 1 - q.beta * (w - l));
       }},
      {LossKind::kSppo, sppo,
       [=](const PairScalarInputs& x, const LossParams& q) {
         auto [w, l] = rho(x);
         const double eta = 1 / q.beta;
         return 0.5 * (Sq(w - eta * (x.win_chosen - 0.5)) + Sq(l - eta * (x.win_rejected - 0.5)));
       }},
      {LossKind::kSppoHard, sppo,
       [=](const PairScalarInputs& x, const LossParams& q) {
         auto [w, l] = rho(x);
         return Sq(w - 0.5 / q.beta) + Sq(l + 0.5 / q.beta);
       }},
      {LossKind::kSimpo, simpo,
       [=](const PairScalarInputs& x, const LossParams& q) {
         return -Ls(q.beta * x.policy_chosen / x.chosen_len -
                    q.beta * x.policy_rejected / x.rejected_len - q.simpo_gamma);
       }},
      {LossKind::kMpo, mpo,
       [=](const PairScalarInputs& x, const LossParams& q) {
         const double ae = q.mpo_alpha * q.mpo_eta;
         const double rw = x.policy_chosen - (x.ref_chosen + ae * x.magnet_chosen) / (1 + ae);
         const double rl = x.policy_rejected - (x.ref_rejected + ae * x.magnet_rejected) / (1 + ae);
         return Sq((rw - rl) - q.mpo_eta * (x.win_chosen - x.win_rejected) / (1 + ae));
       }},
      {LossKind::kMpoPg, mpo,
       [=](const PairScalarInputs& x, const LossParams& q) {
         double v = 0;
         auto side = [&](const std::vector<double>& pol, const std::vector<double>& ref,
                         const std::vector<double>& mag, double adv) {
           double seq = 0, kl_mag = 0, kl_ref = 0;
           for (size_t t = 0; t < pol.size(); ++t) {
             seq += pol[t];
             kl_mag += (pol[t] - mag[t]) * pol[t];
             kl_ref += (pol[t] - ref[t]) * pol[t];
           }
           return -adv * seq + q.mpo_alpha * kl_mag + kl_ref / q.mpo_eta;
         };
         v += side(x.token_policy_chosen, x.token_ref_chosen, x.token_magnet_chosen, x.p - 0.5);
         v += side(x.token_policy_rejected, x.token_ref_rejected, x.token_magnet_rejected,
                   0.5 - x.p);
         return v;
       }},
      {LossKind::kSft, base,
       [=](const PairScalarInputs& x, const LossParams&) {
         return -x.policy_chosen / x.chosen_len;
       }},
  };
}

// Packs the scalar examples into batched tensors (token rows right-padded with 0).
PairLossInputs Batch(const std::vector<PairScalarInputs>& xs, bool grad) {
  auto col = [&](auto get) {
    std::vector<float> v;
    for (const auto& x : xs) v.push_back(static_cast<float>(get(x)));
    return torch::tensor(v);
  };
  auto tok = [&](auto get) {
    size_t width = 0;
    for (const auto& x : xs) width = std::max(width, get(x).size());
    torch::Tensor t = torch::zeros({static_cast<int64_t>(xs.size()), static_cast<int64_t>(width)});
    for (size_t i = 0; i < xs.size(); ++i) {
      for (size_t j = 0; j < get(xs[i]).size(); ++j) t[i][j] = get(xs[i])[j];
    }
    return t;
  };
  PairLossInputs in;
  in.token_policy_chosen = tok([](const auto& x) { return x.token_policy_chosen; });
  in.token_policy_rejected = tok([](const auto& x) { return x.token_policy_rejected; });
  if (grad) {
    in.token_policy_chosen.requires_grad_(true);
    in.token_policy_rejected.requires_grad_(true);
  }
  // Sequence log-probs: the sums of the token rows where given (so mpo_pg is consistent).
  in.policy_chosen = col([](const auto& x) { return x.policy_chosen; });
  in.policy_rejected = col([](const auto& x) { return x.policy_rejected; });
  in.chosen_len = col([](const auto& x) { return x.chosen_len; });
  in.rejected_len = col([](const auto& x) { return x.rejected_len; });
  in.ref_chosen = col([](const auto& x) { return x.ref_chosen; });
  in.ref_rejected = col([](const auto& x) { return x.ref_rejected; });
  in.magnet_chosen = col([](const auto& x) { return x.magnet_chosen; });
  in.magnet_rejected = col([](const auto& x) { return x.magnet_rejected; });
  in.p = col([](const auto& x) { return x.p; });
  in.win_chosen = col([](const auto& x) { return x.win_chosen; });
  in.win_rejected = col([](const auto& x) { return x.win_rejected; });
  in.token_ref_chosen = tok([](const auto& x) { return x.token_ref_chosen; });
  in.token_ref_rejected = tok([](const auto& x) { return x.token_ref_rejected; });
  in.token_magnet_chosen = tok([](const auto& x) { return x.token_magnet_chosen; });
  in.token_magnet_rejected = tok([](const auto& x) { return x.token_magnet_rejected; });
  return in;
}

TEST(PairLossTest, EveryLossEqualsItsClosedForm) {
  std::vector<PairScalarInputs> xs = Examples();
  for (auto& x : xs) {  // mpo_pg reads token rows: make the sequence values their sums
    x.policy_chosen = std::accumulate(x.token_policy_chosen.begin(), x.token_policy_chosen.end(), 0.0);
    x.policy_rejected =
        std::accumulate(x.token_policy_rejected.begin(), x.token_policy_rejected.end(), 0.0);
  }
  for (const Case& c : Cases()) {
    SCOPED_TRACE(LossName(c.kind));
    PairLossOutput out = PairLoss(c.kind, Batch(xs, false), c.params);
    ASSERT_EQ(out.losses.numel(), 2);
    for (size_t i = 0; i < xs.size(); ++i) {
      const double want = c.expected(xs[i], c.params);
      EXPECT_NEAR(PairLossScalar(c.kind, xs[i], c.params), want, 1e-9 * (1 + std::abs(want)));
      EXPECT_NEAR(out.losses[i].item<double>(), want, 1e-5 * (1 + std::abs(want)));
    }
    // TRL rewards: β ρ with a reference, β ℓ/|y| without.
    const double b = c.params.beta;
    const double want_rc = NeedsReference(c.kind) ? b * (xs[0].policy_chosen - xs[0].ref_chosen)
                                                  : b * xs[0].policy_chosen / xs[0].chosen_len;
    EXPECT_NEAR(out.chosen_rewards[0].item<double>(), want_rc, 1e-5);
    EXPECT_FALSE(out.chosen_rewards.requires_grad());
  }
}

TEST(PairLossTest, OneGradientStepRaisesChosenAndLowersRejected) {
  // Policy == reference == magnet; soft labels and win rates favour y_w.
  PairScalarInputs x;
  x.policy_chosen = x.ref_chosen = x.magnet_chosen = -4;
  x.policy_rejected = x.ref_rejected = x.magnet_rejected = -4;
  x.chosen_len = x.rejected_len = 2;
  x.p = 0.9;
  x.win_chosen = 0.8;
  x.win_rejected = 0.2;
  x.token_policy_chosen = x.token_ref_chosen = x.token_magnet_chosen = {-2, -2};
  x.token_policy_rejected = x.token_ref_rejected = x.token_magnet_rejected = {-1, -3};
  for (const Case& c : Cases()) {
    if (!IsPairwise(c.kind)) continue;
    SCOPED_TRACE(LossName(c.kind));
    PairLossInputs in = Batch({x}, true);
    if (c.kind == LossKind::kMpoPg) {
      in.policy_chosen = in.token_policy_chosen.sum(-1);
      in.policy_rejected = in.token_policy_rejected.sum(-1);
    } else {
      in.policy_chosen.requires_grad_(true);
      in.policy_rejected.requires_grad_(true);
    }
    PairLoss(c.kind, in, c.params).losses.sum().backward();
    const torch::Tensor& gc = c.kind == LossKind::kMpoPg ? in.token_policy_chosen.grad()
                                                         : in.policy_chosen.grad();
    const torch::Tensor& gr = c.kind == LossKind::kMpoPg ? in.token_policy_rejected.grad()
                                                         : in.policy_rejected.grad();
    // Gradient descent moves ℓ(y_w) up and ℓ(y_l) down.
    EXPECT_LT(gc.sum().item<double>(), 0);
    EXPECT_GT(gr.sum().item<double>(), 0);
  }
}

TEST(PairLossTest, NamesRoundTrip) {
  for (const Case& c : Cases()) {
    absl::StatusOr<LossKind> k = ParseLossKind(LossName(c.kind));
    ASSERT_TRUE(k.ok());
    EXPECT_EQ(*k, c.kind);
  }
  EXPECT_EQ(ParseLossKind("kto").status().message(), "train.loss: unknown loss \"kto\"");
  EXPECT_FALSE(NeedsReference(LossKind::kSimpo));
  EXPECT_TRUE(NeedsReference(LossKind::kMpo));
}

}  // namespace
}  // namespace spar::trainer
