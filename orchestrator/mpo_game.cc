#include "orchestrator/mpo_game.h"

#include <algorithm>
#include <cmath>
#include <complex>

namespace spar::orchestrator {

PreferenceMatrix WeightedRps(double a, double b, double c) {
  PreferenceMatrix p(3, std::vector<double>(3, 0.5));
  p[0][2] = 0.5 * (1 + a);  // rock > scissors
  p[2][0] = 1 - p[0][2];
  p[1][0] = 0.5 * (1 + b);  // paper > rock
  p[0][1] = 1 - p[1][0];
  p[2][1] = 0.5 * (1 + c);  // scissors > paper
  p[1][2] = 1 - p[2][1];
  return p;
}

std::vector<double> WeightedRpsEquilibrium(double a, double b, double c) {
  // With A = P - 1/2, the equilibrium solves A pi = 0: -b pi_P + a pi_S = 0, b pi_R - c pi_S = 0.
  double s = a + b + c;
  return {c / s, a / s, b / s};
}

std::vector<double> WinRatesVsPolicy(const PreferenceMatrix& p, const std::vector<double>& pi) {
  std::vector<double> q(p.size(), 0.0);
  for (size_t y = 0; y < p.size(); ++y) {
    for (size_t j = 0; j < pi.size(); ++j) q[y] += pi[j] * p[y][j];
  }
  return q;
}

std::vector<double> MagneticMirrorStep(const std::vector<double>& pi,
                                       const std::vector<double>& magnet,
                                       const std::vector<double>& q, double alpha, double eta) {
  const size_t n = pi.size();
  std::vector<double> logit(n);
  for (size_t y = 0; y < n; ++y) {
    logit[y] =
        (std::log(pi[y]) + alpha * eta * std::log(magnet[y]) + eta * q[y]) / (1 + alpha * eta);
  }
  double mx = *std::max_element(logit.begin(), logit.end());
  double z = 0;
  std::vector<double> out(n);
  for (size_t y = 0; y < n; ++y) z += out[y] = std::exp(logit[y] - mx);
  for (double& v : out) v /= z;
  return out;
}

double Exploitability(const PreferenceMatrix& p, const std::vector<double>& pi) {
  std::vector<double> q = WinRatesVsPolicy(p, pi);
  return *std::max_element(q.begin(), q.end()) - 0.5;
}

double L1Distance(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d += std::fabs(a[i] - b[i]);
  return d;
}

double MagnetPeriodGain(double alpha, double eta, int magnet_refresh, double omega) {
  const std::complex<double> r(1 / (1 + alpha * eta), eta * omega / (1 + alpha * eta));
  const double c = alpha * eta / (1 + alpha * eta);
  const std::complex<double> rm = std::pow(r, magnet_refresh);
  return std::abs(rm + c * (1.0 - rm) / (1.0 - r));
}

std::vector<std::vector<double>> RunMagneticMirrorDescent(const PreferenceMatrix& p,
                                                          const std::vector<double>& pi0,
                                                          double alpha, double eta,
                                                          int magnet_refresh, int iterations) {
  std::vector<std::vector<double>> iterates{pi0};
  std::vector<double> magnet = pi0;
  std::vector<double> pi = pi0;
  for (int k = 0; k < iterations; ++k) {
    pi = MagneticMirrorStep(pi, magnet, WinRatesVsPolicy(p, pi), alpha, eta);
    iterates.push_back(pi);
    if (magnet_refresh > 0 && (k + 1) % magnet_refresh == 0) magnet = pi;
  }
  return iterates;
}

}  // namespace spar::orchestrator
