// MPO must-have test (ALGORITHMS.md §5): on a tabular intransitive game, the closed-form
// magnetic mirror-descent step with magnet refreshes makes the LAST iterate reach the original
// game's Nash equilibrium, while plain mirror descent (alpha = 0) cycles.
//
// Game: weighted rock-paper-scissors with margins a = 1 (rock > scissors), b = 0.5
// (paper > rock), c = 0.25 (scissors > paper); its equilibrium is (c, a, b)/(a+b+c) =
// (1/7, 4/7, 2/7), not uniform. Start pi0 = (0.6, 0.2, 0.2).
// MMD parameters: alpha = 0.1, eta = 2, magnet refreshed every M = 10 iterations, 2000 iterations.
// (Note: the LLM defaults alpha = 0.01, eta = 11, M = 2 do NOT converge on this table — with
// M = 2 the magnet follows the policy too closely and the iteration behaves like plain MD.)
#include "orchestrator/mpo_game.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

namespace spar::orchestrator {
namespace {

constexpr double kA = 1.0, kB = 0.5, kC = 0.25;
const std::vector<double> kPi0 = {0.6, 0.2, 0.2};

TEST(MpoGameTest, WeightedRpsEquilibriumIsExact) {
  PreferenceMatrix p = WeightedRps(kA, kB, kC);
  std::vector<double> eq = WeightedRpsEquilibrium(kA, kB, kC);
  EXPECT_NEAR(eq[0], 1.0 / 7, 1e-12);
  EXPECT_NEAR(eq[1], 4.0 / 7, 1e-12);
  EXPECT_NEAR(eq[2], 2.0 / 7, 1e-12);
  // Every pure response wins exactly half the time against the equilibrium.
  for (double q : WinRatesVsPolicy(p, eq)) EXPECT_NEAR(q, 0.5, 1e-12);
  EXPECT_NEAR(Exploitability(p, eq), 0.0, 1e-12);
  // P(i > j) + P(j > i) = 1.
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) EXPECT_NEAR(p[i][j] + p[j][i], 1.0, 1e-12);
}

TEST(MpoGameTest, ClosedFormStepMatchesFormula) {
  // One step by hand: log pi' = (log pi + a*e*log mag + e*q)/(1 + a*e) - log Z.
  std::vector<double> pi = {0.5, 0.3, 0.2}, mag = {0.2, 0.2, 0.6}, q = {0.4, 0.7, 0.5};
  double alpha = 0.5, eta = 3;
  std::vector<double> got = MagneticMirrorStep(pi, mag, q, alpha, eta);
  std::vector<double> want(3);
  double z = 0;
  for (int y = 0; y < 3; ++y) {
    want[y] = std::exp((std::log(pi[y]) + alpha * eta * std::log(mag[y]) + eta * q[y]) /
                       (1 + alpha * eta));
    z += want[y];
  }
  for (int y = 0; y < 3; ++y) EXPECT_NEAR(got[y], want[y] / z, 1e-12);
}

TEST(MpoGameTest, MagnetRefreshLastIterateReachesEquilibrium) {
  PreferenceMatrix p = WeightedRps(kA, kB, kC);
  std::vector<double> eq = WeightedRpsEquilibrium(kA, kB, kC);
  auto it = RunMagneticMirrorDescent(p, kPi0, /*alpha=*/0.1, /*eta=*/2, /*magnet_refresh=*/10,
                                     /*iterations=*/2000);
  EXPECT_GT(L1Distance(it.front(), eq), 0.9);
  EXPECT_LT(L1Distance(it.back(), eq), 1e-4);
  EXPECT_LT(Exploitability(p, it.back()), 1e-4);
  // Last-iterate convergence: the whole tail stays there (not just one lucky iterate).
  for (size_t k = it.size() - 100; k < it.size(); ++k) EXPECT_LT(L1Distance(it[k], eq), 1e-3);
}

TEST(MpoGameTest, FixedMagnetStopsAtRegularisedEquilibriumNotNash) {
  // Without refreshes the iteration converges, but to the alpha-regularised equilibrium w.r.t.
  // pi0, which is not the original game's equilibrium: the refreshes are what remove the bias.
  PreferenceMatrix p = WeightedRps(kA, kB, kC);
  std::vector<double> eq = WeightedRpsEquilibrium(kA, kB, kC);
  auto it = RunMagneticMirrorDescent(p, kPi0, 0.1, 2, /*magnet_refresh=*/0, 2000);
  EXPECT_LT(L1Distance(it[it.size() - 2], it.back()), 1e-6);  // converged
  EXPECT_GT(L1Distance(it.back(), eq), 0.2);                  // but not to the Nash
}

TEST(MpoGameTest, PlainMirrorDescentCycles) {
  // alpha = 0, same eta: multiplicative weights on a zero-sum game spirals instead of converging.
  PreferenceMatrix p = WeightedRps(kA, kB, kC);
  std::vector<double> eq = WeightedRpsEquilibrium(kA, kB, kC);
  auto it = RunMagneticMirrorDescent(p, kPi0, /*alpha=*/0, /*eta=*/2, 0, 2000);
  double tail_min = 1e9, tail_max = 0;
  for (size_t k = it.size() - 500; k < it.size(); ++k) {
    double d = L1Distance(it[k], eq);
    tail_min = std::min(tail_min, d);
    tail_max = std::max(tail_max, d);
  }
  EXPECT_GT(L1Distance(it.back(), eq), 0.5);
  EXPECT_GT(tail_min, 0.2);  // never comes close in the last 500 iterates
  EXPECT_GT(tail_max, 1.0);  // and keeps swinging far away
  EXPECT_GT(Exploitability(p, it.back()), 0.1);
}

}  // namespace
}  // namespace spar::orchestrator
