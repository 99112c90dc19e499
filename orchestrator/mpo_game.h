// Tabular preference games for MPO (ALGORITHMS.md §5, "Magnetic Preference Optimization",
// arXiv 2410.16714 — not TRL's Mixed Preference Optimization). Pure math used by the must-have
// test: the closed-form magnetic mirror-descent step
//   log pi_{k+1} = (log pi_k + alpha*eta*log pi_mag + eta*q_k) / (1 + alpha*eta) - log Z,
//   q_k(y) = P(y > pi_k),
// with the magnet refreshed to the current policy every M iterations. Thread-safe (no state).
#pragma once

#include <vector>

namespace spar::orchestrator {

// P[i][j] = P(y_i > y_j), with P[i][j] + P[j][i] = 1 and P[i][i] = 0.5.
using PreferenceMatrix = std::vector<std::vector<double>>;

// Weighted rock-paper-scissors (0 = rock, 1 = paper, 2 = scissors): rock beats scissors with
// margin a, paper beats rock with margin b, scissors beats paper with margin c, i.e.
// P(R > S) = (1 + a)/2, P(P > R) = (1 + b)/2, P(S > P) = (1 + c)/2, margins in (0, 1].
PreferenceMatrix WeightedRps(double a, double b, double c);
// Its unique (symmetric) Nash equilibrium, exactly: pi* = (c, a, b) / (a + b + c).
std::vector<double> WeightedRpsEquilibrium(double a, double b, double c);

// q(y) = P(y > pi) = sum_j pi(j) P[y][j].
std::vector<double> WinRatesVsPolicy(const PreferenceMatrix& p, const std::vector<double>& pi);

// One closed-form MMD step (alpha = 0: plain mirror descent / multiplicative weights).
std::vector<double> MagneticMirrorStep(const std::vector<double>& pi,
                                       const std::vector<double>& magnet,
                                       const std::vector<double>& q, double alpha, double eta);

// Exploitability max_y P(y > pi) - 1/2 (0 exactly at the equilibrium).
double Exploitability(const PreferenceMatrix& p, const std::vector<double>& pi);

double L1Distance(const std::vector<double>& a, const std::vector<double>& b);

// Local analysis of the magnet refreshes. Near an equilibrium, log-policy deviations evolve
// linearly; the game's Jacobian there has eigenvalues ±i*omega (a skew matrix: omega^2 <= half the
// sum of (P[i][j] - 1/2)^2 pi(i) pi(j) over i != j, so omega < 1/(2 sqrt 2) whenever P is in
// [0, 1]). One step scales an eigen-deviation x by r = (1 + i*eta*omega)/(1 + alpha*eta) and adds
// c*m, c = alpha*eta/(1 + alpha*eta), for the magnet's deviation m; one magnet period (M steps from
// pi = magnet, then the magnet moves to pi) scales it by g = r^M + c (1 - r^M)/(1 - r). Returns
// |g|: < 1 for every omega in (0, omega_max] means the last iterate converges near the
// equilibrium of every such game, > 1 means it spirals out (cycles). For M = 1, g = r + c with
// |g| > 1: refreshing every step is plain mirror descent. alpha*eta large enough that
// (1 + alpha*eta)^M >> 1 lets each period reach the regularised equilibrium (proximal point).
double MagnetPeriodGain(double alpha, double eta, int magnet_refresh, double omega);

// Runs `iterations` MMD steps from pi0; the magnet starts as pi0 and is set to the current
// policy after every `magnet_refresh` steps (<= 0: never refreshed). Returns every iterate
// (index 0 = pi0).
std::vector<std::vector<double>> RunMagneticMirrorDescent(const PreferenceMatrix& p,
                                                          const std::vector<double>& pi0,
                                                          double alpha, double eta,
                                                          int magnet_refresh, int iterations);

}  // namespace spar::orchestrator
