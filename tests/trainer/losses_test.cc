// PairLoss, the function the trainer calls, pinned for every loss kind to literal numbers from an
// independent reference: tests/trainer/losses_reference.py writes each loss from ALGORITHMS.md
// §5/§7 and the papers (not from trainer/losses.cc) and prints the values below. A flipped sign,
// a misplaced β or a swapped p <-> 1-p changes them. Regenerate with
//   python3 tests/trainer/losses_reference.py
#include "trainer/losses.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace spar::trainer {
namespace {

// The reference's two examples (EXAMPLES in losses_reference.py). Sequence log-probs are the sums
// of the token rows, which only mpo_pg reads.
struct Example {
  double pc, pr, rc, rr, mc, mr, lw, ll, p, qw, ql;
  std::vector<double> tpc, tpr, trc, trr, tmc, tmr;
};

const std::vector<Example>& Examples() {
  static const std::vector<Example> kExamples = {
      {-5,
       -7,
       -6,
       -6.5,
       -5.5,
       -8,
       2,
       4,
       0.8,
       0.7,
       0.35,
       {-2, -3},
       {-1, -2, -3, -1},
       {-2.5, -3.5},
       {-1, -2.5, -2, -1},
       {-2, -3.5},
       {-1.5, -2, -3.5, -1}},
      {-3,
       -2,
       -3.2,
       -2.5,
       -2.9,
       -2.1,
       3,
       1,
       0.3,
       0.45,
       0.55,
       {-1, -1.5, -0.5},
       {-2},
       {-1.2, -1.5, -0.5},
       {-2.5},
       {-0.9, -1.4, -0.6},
       {-2.1}},
  };
  return kExamples;
}

torch::Tensor Column(double Example::*field) {
  std::vector<float> v;
  for (const Example& x : Examples()) v.push_back(static_cast<float>(x.*field));
  return torch::tensor(v);
}

// Token rows [2, T], right-padded with 0 (what the trainer's masked rows hold off-response).
torch::Tensor Rows(std::vector<double> Example::*field) {
  const std::vector<Example>& xs = Examples();
  size_t width = 0;
  for (const Example& x : xs) width = std::max(width, (x.*field).size());
  torch::Tensor t = torch::zeros({static_cast<int64_t>(xs.size()), static_cast<int64_t>(width)});
  for (size_t i = 0; i < xs.size(); ++i) {
    for (size_t j = 0; j < (xs[i].*field).size(); ++j) t[i][j] = (xs[i].*field)[j];
  }
  return t;
}

// The batch of both examples; the policy's sequence log-probs are leaves with grad.
PairLossInputs Batch() {
  PairLossInputs in;
  in.policy_chosen = Column(&Example::pc).requires_grad_(true);
  in.policy_rejected = Column(&Example::pr).requires_grad_(true);
  in.ref_chosen = Column(&Example::rc);
  in.ref_rejected = Column(&Example::rr);
  in.magnet_chosen = Column(&Example::mc);
  in.magnet_rejected = Column(&Example::mr);
  in.chosen_len = Column(&Example::lw);
  in.rejected_len = Column(&Example::ll);
  in.p = Column(&Example::p);
  in.win_chosen = Column(&Example::qw);
  in.win_rejected = Column(&Example::ql);
  return in;
}

// One row of the reference's table: the loss kind and its parameters, then per example {A, B}
// the loss, d loss / d ℓ_θ(y_w), d loss / d ℓ_θ(y_l), and the rewards.
struct Pinned {
  const char* name;
  LossKind kind;
  LossParams params;
  double loss[2], grad_chosen[2], grad_rejected[2], reward_chosen[2], reward_rejected[2];
};

LossParams Params(double beta, double eps = 0.1, double gamma = 1.6, double alpha = 0.01,
                  double eta = 11, double nll = 0) {
  return LossParams{beta, eps, gamma, alpha, eta, nll};
}

// Printed by losses_reference.py (PARAMS there gives each row's parameters).
const std::vector<Pinned>& Table() {
  static const std::vector<Pinned> kTable = {
      {"dpo",
       LossKind::kDpo,
       Params(0.5),
       {0.3868710061, 0.7709570478},
       {-0.1604106504, -0.2687149227},
       {0.1604106504, 0.2687149227},
       {0.5, 0.1},
       {-0.25, 0.25}},
      {"cdpo",
       LossKind::kCdpo,
       Params(0.5, 0.1),
       {0.4618710061, 0.7559570478},
       {-0.1104106504, -0.2187149227},
       {0.1104106504, 0.2187149227},
       {0.5, 0.1},
       {-0.25, 0.25}},
      {"robust",
       LossKind::kRobust,
       Params(0.5, 0.2),
       {0.1368710061, 0.8209570478},
       {-0.3270773171, -0.4353815893},
       {0.3270773171, 0.4353815893},
       {0.5, 0.1},
       {-0.25, 0.25}},
      {"dno",
       LossKind::kDno,
       Params(0.5),
       {0.5368710061, 0.6659570478},
       {-0.06041065041, 0.08128507734},
       {0.06041065041, -0.08128507734},
       {0.5, 0.1},
       {-0.25, 0.25}},
      {"ipo",
       LossKind::kIpo,
       Params(0.25),
       {1.890625, 5.921111111},
       {-1.375, -1.622222222},
       {0.6875, 4.866666667},
       {0.25, 0.05},
       {-0.125, 0.125}},
      {"ipo_sum",
       LossKind::kIpoSum,
       Params(0.25),
       {0.25, 5.29},
       {-1, -4.6},
       {1, 4.6},
       {0.25, 0.05},
       {-0.125, 0.125}},
      {"hinge",
       LossKind::kHinge,
       Params(0.5),
       {0.25, 1.15},
       {-0.5, -0.5},
       {0.5, 0.5},
       {0.5, 0.1},
       {-0.25, 0.25}},
      {"sppo",
       LossKind::kSppo,
       Params(0.5),
       {0.2, 0.125},
       {0.6, 0.3},
       {-0.2, 0.4},
       {0.5, 0.1},
       {-0.25, 0.25}},
      {"sppo_hard",
       LossKind::kSppoHard,
       Params(0.5),
       {0.25, 2.89},
       {0, -1.6},
       {1, 3},
       {0.5, 0.1},
       {-0.25, 0.25}},
      {"simpo",
       LossKind::kSimpo,
       Params(2.0, 0.1, 1.6),
       {3.144063968, 0.5130152524},
       {-0.956892745, -0.2675415599},
       {0.4784463725, 0.8026246798},
       {-5, -2},
       {-3.5, -4}},
      {"mpo",
       LossKind::kMpo,
       Params(0.1, 0.1, 1.6, 0.1, 3.0),
       {0.05325443787, 0.002130177515},
       {0.4615384615, -0.09230769231},
       {-0.4615384615, 0.09230769231},
       {0.1, 0.02},
       {-0.05, 0.05}},
      {"sft",
       LossKind::kSft,
       Params(0.1),
       {2.5, 1},
       {-0.5, -0.3333333333},
       {0, 0},
       {-0.25, -0.1},
       {0, 0}},
      {"dpo+nll",
       LossKind::kDpo,
       Params(0.5, 0.1, 1.6, 0.01, 11, 0.5),
       {1.636871006, 1.270957048},
       {-0.4104106504, -0.4353815893},
       {0.1604106504, 0.2687149227},
       {0.5, 0.1},
       {-0.25, 0.25}},
  };
  return kTable;
}

void ExpectClose(const torch::Tensor& got, const double (&want)[2], const char* what) {
  ASSERT_TRUE(got.defined()) << what;
  ASSERT_EQ(got.numel(), 2) << what;
  for (int i = 0; i < 2; ++i) {
    EXPECT_NEAR(got[i].item<double>(), want[i], 2e-5 * (1 + std::abs(want[i])))
        << what << " of example "
        << "AB"[i];
  }
}

TEST(PairLossTest, EveryLossMatchesTheIndependentReference) {
  ASSERT_EQ(Table().size(), 13u);
  for (const Pinned& row : Table()) {
    SCOPED_TRACE(row.name);
    PairLossInputs in = Batch();
    PairLossOutput out = PairLoss(row.kind, in, row.params);
    ExpectClose(out.losses, row.loss, "loss");
    ExpectClose(out.chosen_rewards, row.reward_chosen, "rewards/chosen");
    ExpectClose(out.rejected_rewards, row.reward_rejected, "rewards/rejected");
    EXPECT_FALSE(out.chosen_rewards.requires_grad());
    EXPECT_FALSE(out.rejected_rewards.requires_grad());
    out.losses.sum().backward();
    ExpectClose(in.policy_chosen.grad(), row.grad_chosen, "d loss / d logp_chosen");
    if (IsPairwise(row.kind)) {
      ExpectClose(in.policy_rejected.grad(), row.grad_rejected, "d loss / d logp_rejected");
    }
  }
}

// mpo_pg (ALGORITHMS.md §5) on the token rows: example A's advantages come from its win rates
// (q̂ - ½, no judged p), example B's from its judged p = 0.3 (p - ½, ½ - p); α 0.1, η 3.
TEST(PairLossTest, MpoPgMatchesTheIndependentReference) {
  const PairTargets a = TargetsFromJudgeData(std::nullopt, 0.7, 0.35);
  const PairTargets b = TargetsFromJudgeData(0.3, std::nullopt, std::nullopt);
  PairLossInputs in = Batch();
  in.token_policy_chosen = Rows(&Example::tpc).requires_grad_(true);
  in.token_policy_rejected = Rows(&Example::tpr).requires_grad_(true);
  in.policy_chosen = in.token_policy_chosen.sum(-1);
  in.policy_rejected = in.token_policy_rejected.sum(-1);
  in.token_ref_chosen = Rows(&Example::trc);
  in.token_ref_rejected = Rows(&Example::trr);
  in.token_magnet_chosen = Rows(&Example::tmc);
  in.token_magnet_rejected = Rows(&Example::tmr);
  auto f = [](double v) { return static_cast<float>(v); };
  in.adv_chosen = torch::tensor({f(a.adv_chosen), f(b.adv_chosen)});
  in.adv_rejected = torch::tensor({f(a.adv_rejected), f(b.adv_rejected)});
  EXPECT_NEAR(a.adv_chosen, 0.2, 1e-12);
  EXPECT_NEAR(a.adv_rejected, -0.15, 1e-12);
  EXPECT_NEAR(b.adv_chosen, -0.2, 1e-12);
  EXPECT_NEAR(b.adv_rejected, 0.2, 1e-12);
  PairLossOutput out = PairLoss(LossKind::kMpoPg, in, Params(0.1, 0.1, 1.6, 0.1, 3.0));
  ExpectClose(out.losses, {-0.5666666667, -0.6}, "loss");
  out.losses.sum().backward();
  // Surrogate gradients per token: -A + α(log π - log π_mag) + (log π - log π_k)/η.
  const std::vector<std::vector<double>> want_c = {{-0.03333333333, 0.01666666667},
                                                   {0.2566666667, 0.19, 0.21}};
  const std::vector<std::vector<double>> want_r = {{0.2, 0.3166666667, -0.1333333333, 0.15},
                                                   {-0.02333333333}};
  for (int i = 0; i < 2; ++i) {
    for (size_t t = 0; t < want_c[i].size(); ++t) {
      EXPECT_NEAR(in.token_policy_chosen.grad()[i][t].item<double>(), want_c[i][t], 2e-5);
    }
    for (size_t t = 0; t < want_r[i].size(); ++t) {
      EXPECT_NEAR(in.token_policy_rejected.grad()[i][t].item<double>(), want_r[i][t], 2e-5);
    }
  }
}

// The per-pair targets from a pairs row's judge data (the `targets` function of
// losses_reference.py). mpo_pg's advantage is the judged preference minus ½, or each response's
// own win rate minus ½ — never σ(q̂_w - q̂_l) - ½ (the soft label of dno).
TEST(PairTargetsTest, AdvantagesAreJudgedPreferenceOrWinRateMinusHalf) {
  struct Case {
    std::optional<double> p, qw, ql;
    double want[5];  // p, win_chosen, win_rejected, adv_chosen, adv_rejected
  };
  const std::vector<Case> cases = {
      {std::nullopt, 0.9, 0.8, {0.5249791875, 0.9, 0.8, 0.4, 0.3}},
      {0.7, 0.9, 0.8, {0.7, 0.9, 0.8, 0.2, -0.2}},
      {0.7, std::nullopt, std::nullopt, {0.7, 0.6, 0.4, 0.2, -0.2}},
      {std::nullopt, std::nullopt, std::nullopt, {1, 0.75, 0.25, 0.5, -0.5}},
      {std::nullopt, 0.2, 0.6, {0.4013123399, 0.2, 0.6, -0.3, 0.1}},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(i);
    const Case& c = cases[i];
    const PairTargets t = TargetsFromJudgeData(c.p, c.qw, c.ql);
    EXPECT_NEAR(t.p, c.want[0], 1e-9);
    EXPECT_NEAR(t.win_chosen, c.want[1], 1e-12);
    EXPECT_NEAR(t.win_rejected, c.want[2], 1e-12);
    EXPECT_NEAR(t.adv_chosen, c.want[3], 1e-12);
    EXPECT_NEAR(t.adv_rejected, c.want[4], 1e-12);
  }
}

TEST(PairLossTest, StableForLargeMargins) {
  PairLossInputs in;
  in.policy_chosen = torch::tensor({0.0f, 0.0f});
  in.policy_rejected = torch::tensor({-1e5f, 1000.0f});
  in.ref_chosen = torch::zeros({2});
  in.ref_rejected = torch::zeros({2});
  in.chosen_len = in.rejected_len = torch::ones({2});
  PairLossOutput out = PairLoss(LossKind::kDpo, in, Params(1.0));
  EXPECT_NEAR(out.losses[0].item<double>(), 0.0, 1e-6);
  EXPECT_NEAR(out.losses[1].item<double>(), 1000.0, 1e-3);
}

TEST(PairLossTest, NamesRoundTrip) {
  for (const Pinned& row : Table()) {
    absl::StatusOr<LossKind> k = ParseLossKind(LossName(row.kind));
    ASSERT_TRUE(k.ok());
    EXPECT_EQ(*k, row.kind);
  }
  for (const char* name : {"dpo", "cdpo", "robust", "dno", "ipo", "ipo_sum", "hinge", "sppo",
                           "sppo_hard", "simpo", "mpo", "mpo_pg", "sft"}) {
    absl::StatusOr<LossKind> k = ParseLossKind(name);
    ASSERT_TRUE(k.ok()) << name;
    EXPECT_EQ(std::string(LossName(*k)), name);
  }
  EXPECT_EQ(ParseLossKind("kto").status().message(), "train.loss: unknown loss \"kto\"");
  EXPECT_FALSE(NeedsReference(LossKind::kSimpo));
  EXPECT_TRUE(NeedsReference(LossKind::kMpo));
  EXPECT_TRUE(NeedsReference(LossKind::kIpoSum));
}

}  // namespace
}  // namespace spar::trainer
