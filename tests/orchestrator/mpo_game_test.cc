// MPO must-have test (ALGORITHMS.md §5): on a tabular intransitive game, the closed-form
// magnetic mirror-descent step with magnet refreshes makes the LAST iterate reach the original
// game's Nash equilibrium, while plain mirror descent (alpha = 0) cycles.
//
// Game: weighted rock-paper-scissors with margins a = 1 (rock > scissors), b = 0.5
// (paper > rock), c = 0.25 (scissors > paper); its equilibrium is (c, a, b)/(a+b+c) =
// (1/7, 4/7, 2/7), not uniform. Start pi0 = (0.6, 0.2, 0.2).
// MMD parameters: alpha = 0.1, eta = 2, magnet refreshed every M = 10 iterations, 2000 iterations;
// and the job defaults (common/mpo_defaults.h: alpha 0.5, eta 11, M 2). ALGORITHMS.md's starting
// point alpha = 0.01, eta = 11, M = 2 does NOT converge: with (1 + alpha*eta)^M = 1.23 the magnet
// barely holds the policy between refreshes and the iteration cycles like plain MD.
#include "orchestrator/mpo_game.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "common/mpo_defaults.h"

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

TEST(MpoGameTest, DefaultsLastIterateReachesEquilibrium) {
  // The job defaults, one iterate per round with the magnet refreshed every M rounds as the job
  // runner does: the last iterate reaches the Nash equilibrium of the weighted game and of plain
  // rock-paper-scissors (the most intransitive 3-action game with P in [0, 1]).
  for (const std::vector<double>& m : {std::vector<double>{kA, kB, kC}, {1.0, 1.0, 1.0}}) {
    PreferenceMatrix p = WeightedRps(m[0], m[1], m[2]);
    std::vector<double> eq = WeightedRpsEquilibrium(m[0], m[1], m[2]);
    auto it = RunMagneticMirrorDescent(p, kPi0, kDefaultMpoAlpha, kDefaultMpoEta,
                                       kDefaultMpoMagnetRefresh, /*iterations=*/2000);
    EXPECT_LT(L1Distance(it.back(), eq), 1e-4) << "margins " << m[0] << " " << m[1] << " " << m[2];
    EXPECT_LT(Exploitability(p, it.back()), 1e-4);
    double tail_max = 0;
    for (size_t k = it.size() - 100; k < it.size(); ++k) {
      tail_max = std::max(tail_max, L1Distance(it[k], eq));
    }
    EXPECT_LT(tail_max, 1e-3);
  }
}

TEST(MpoGameTest, DefaultsContractNearTheEquilibriumOfEveryGame) {
  // Linearised, one magnet period scales the deviation from the equilibrium by
  // MagnetPeriodGain(omega); omega < 1/(2 sqrt 2) for every P with entries in [0, 1]. The weighted
  // game's omega is sqrt(abc / (4 (a + b + c))) = 0.134, plain rock-paper-scissors' 1/sqrt(12).
  const double omega_max = 1 / (2 * std::sqrt(2.0));
  double worst = 0;
  for (int i = 1; i <= 1000; ++i) {
    worst = std::max(worst, MagnetPeriodGain(kDefaultMpoAlpha, kDefaultMpoEta,
                                             kDefaultMpoMagnetRefresh, omega_max * i / 1000));
  }
  EXPECT_LT(worst, 1.0);
  const double omega_rps = 1 / std::sqrt(12.0);
  EXPECT_LT(MagnetPeriodGain(kDefaultMpoAlpha, kDefaultMpoEta, kDefaultMpoMagnetRefresh, omega_rps),
            0.96);
  // ALGORITHMS.md's starting point (alpha 0.01, eta 11, M 2) spirals out on both games.
  EXPECT_GT(MagnetPeriodGain(0.01, 11, 2, std::sqrt(kA * kB * kC / (4 * (kA + kB + kC)))), 2.5);
  EXPECT_GT(MagnetPeriodGain(0.01, 11, 2, omega_rps), 8.0);
  // A magnet refreshed every step is plain mirror descent (step eta / (1 + alpha eta)), whatever
  // alpha: it never contracts.
  for (double alpha : {0.01, 0.5, 10.0}) EXPECT_GT(MagnetPeriodGain(alpha, 11, 1, 0.05), 1.0);
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
