// Default MPO hyperparameters (Magnetic Preference Optimization, ALGORITHMS.md §5), shared by the
// trainer's TrainConfig / LossParams and the orchestrator's job-spec defaults so they cannot drift.
//
// ALGORITHMS.md's starting point (α 0.01, η 11, M 2) does not converge: with the magnet refreshed
// every 2 rounds, (1 + αη)^M = 1.23 and the last iterates cycle as with α = 0 (one magnet period
// multiplies the distance to the equilibrium by 2.6 on the weighted rock-paper-scissors game of
// tests/orchestrator/mpo_game_test.cc, by 9.0 on plain rock-paper-scissors). Keeping η and M and
// raising α to 0.5 gives (1 + αη)^M = 42: every period nearly reaches the α-regularised
// equilibrium around the magnet, and the linearised period gain (MagnetPeriodGain in
// orchestrator/mpo_game.h) is < 1 for every preference game with P in [0, 1] (0.947 on plain RPS,
// 0.984 on the weighted game, which ends within 2e-7 (L1) of its equilibrium after 2000 rounds).
// The per-round regression target η(q̂1 - q̂2)/(1 + αη) is then at most 1.7 nats. α in about
// [0.4, 1] converges too; α 0.3 or less cycles on plain RPS.
#pragma once

namespace spar {

inline constexpr double kDefaultMpoAlpha = 0.5;     // α: magnet strength
inline constexpr double kDefaultMpoEta = 11;        // η: mirror-descent step per round
inline constexpr int kDefaultMpoMagnetRefresh = 2;  // M: rounds between magnet refreshes

}  // namespace spar
