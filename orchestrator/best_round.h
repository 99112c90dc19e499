// The best iterate (ALGORITHMS.md §1; DNO's Algorithm 1 returns the best of pi_1..pi_T by
// validation win rate): which evaluated round's policy is a job's result, by
// EvalSpec.select_best, compared on the validation split. Computed from the rounds' eval.json
// files, so a restarted or resumed job gets the same answer. Pure functions; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace spar::orchestrator {

// What select_best compares, from iter_NNN/eval.json: the round's numbers on the validation
// split, never the reported eval prompts'.
struct RoundEval {
  int round = 0;
  double win_rate_vs_base = 0;  // judged win rate vs pi_0's greedy answers
  double greedy_accuracy = -1;  // -1: no verifiable validation prompt
};

// "win_rate_vs_base" (the default), "greedy_accuracy" or "last".
inline constexpr const char* kSelectBestDefault = "win_rate_vs_base";
bool IsKnownSelectBest(const std::string& select_best);

// pi_0 as a candidate (round 0): its win rate against itself is 0.5; its greedy accuracy on the
// validation split (-1 when unknown).
RoundEval BaseRoundEval(double base_greedy_accuracy);

// The round `select_best` picks among `evals` (any order): the highest win_rate_vs_base, the
// highest greedy_accuracy, or the last round; ties go to the earlier round; "" means the default.
// By win rate or accuracy a round must beat pi_0 (`base`, round 0) to be picked: when none does,
// the answer is 0, pi_0 itself. 0 also when `evals` is empty. InvalidArgument for an unknown
// criterion.
absl::StatusOr<int> SelectBestRound(const std::vector<RoundEval>& evals,
                                    const std::string& select_best, const RoundEval& base);

// The evaluated rounds (STAGE records eval) among 1..rounds of run directory `job_dir`, in round
// order, with their numbers on the validation split (eval.json's "validation"); without
// `validation` (the job has no split) only the round numbers (-1 for the values). DataLoss naming
// the file when an eval.json cannot be read or lacks a field.
absl::StatusOr<std::vector<RoundEval>> ReadRoundEvals(const std::string& job_dir, int rounds,
                                                      bool validation);

}  // namespace spar::orchestrator
