// DNO round logic that needs no services (ALGORITHMS.md §2): which pairs of one prompt's samples
// to judge, each sample's win rate R_t(y) = mean_{y'} P(y > y'), and the `dno_margin` pair policy
// with win rates in place of the 6-point scores. Pure functions; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace spar::orchestrator {

// One comparison between samples i < j of a prompt.
struct PairRef {
  int i = 0;
  int j = 0;
};

// All pairs i < j whose texts differ. Identical texts are not sent to the judge: their
// preference is 0.5 by definition, so paying for them would buy nothing.
std::vector<PairRef> PairsToJudge(const std::vector<std::string>& texts);

struct PairJudgment {
  int i = 0;
  int j = 0;
  double p_i_wins = 0.5;  // P(y_i > y_j)
  bool ok = true;         // failed judgments are recorded but carry no preference
  // A reward-model oracle: the rewards of y_i and y_j; unset for a chat judge.
  std::optional<double> reward_i;
  std::optional<double> reward_j;
};

// Win rate of each of the k samples against the others: mean over j != i of P(y_i > y_j), with
// 0.5 for identical texts; failed judgments are left out of the mean. A sample with no usable
// comparison gets 0.5. `opponents` >= 0: only texts[0, opponents) count as the y_j (DNO's R_t(y)
// is a win rate against the policy's own samples, not against the teacher candidate after them).
std::vector<double> WinRates(const std::vector<std::string>& texts,
                             const std::vector<PairJudgment>& judgments, int opponents = -1);

struct PreferencePairRow {
  std::string prompt;
  std::string chosen;
  std::string rejected;
  double chosen_win_rate = 0;
  double rejected_win_rate = 0;
  std::optional<double> p;  // the soft label P(chosen ≻ rejected) (dno_soft_all)
  // False for a response cut at max_new_tokens: the trainer scores it without EOS.
  bool chosen_finished = true;
  bool rejected_finished = true;
};

// dno_margin: a chosen response needs win rate >= gate; every (chosen, rejected) with
// win-rate gap >= min_gap and different texts is kept (not only best vs worst). Each distinct
// text is used once per role (duplicate samples do not multiply pairs).
std::vector<PreferencePairRow> DnoMarginPairs(const std::string& prompt,
                                              const std::vector<std::string>& texts,
                                              const std::vector<double>& win_rates, double gate,
                                              double min_gap);

// ---- DNO-Prct (ALGORITHMS.md §2): teacher candidate, repetition defects, 6-point scores ----

// A repetition defect: some run of `n` consecutive whitespace-separated words occurs more than
// `max_repeats` times in `text` (overlapping occurrences count). n <= 0: never.
// Each sample's reward as a reward-model oracle gave it (every usable judgment carries
// reward_i/reward_j): identical texts share one; an automatic negative (`negative[i]`, never
// judged) takes the lowest reward of the others, so it ranks above none. nullopt when the oracle
// was a chat judge (no rewards), or when a sample that is not a negative has no usable judgment
// (the caller then uses win rates).
std::optional<std::vector<double>> OracleRewards(const std::vector<std::string>& texts,
                                                 const std::vector<PairJudgment>& judgments,
                                                 const std::vector<bool>& negative);

bool HasRepeatedNgram(const std::string& text, int n, int max_repeats);

// PairsToJudge without the defective candidates: a defect is an automatic negative, so
// comparing it buys nothing.
std::vector<PairRef> PairsToJudge(const std::vector<std::string>& texts,
                                  const std::vector<bool>& defective);

// The judgments with automatic negatives' outcomes fixed: every judgment involving a negative is
// dropped (whatever a judge said) and every sound candidate beats every negative with a
// different text (P = 1, no judge call). Negatives are not compared with each other.
std::vector<PairJudgment> WithAutomaticNegatives(const std::vector<std::string>& texts,
                                                 const std::vector<PairJudgment>& judgments,
                                                 const std::vector<bool>& negative);

// WinRates where every defective candidate loses to every sound one (P = 1 without a judge
// call) and has win rate 0 itself.
std::vector<double> DefectAwareWinRates(const std::vector<std::string>& texts,
                                        const std::vector<PairJudgment>& judgments,
                                        const std::vector<bool>& defective, int opponents = -1);

struct DnoMarginOptions {
  double gate = 0.5;             // a chosen candidate needs a value >= gate
  double min_gap = 0.25;         // gap needed when the chosen candidate is a policy sample
  double teacher_min_gap = 0.5;  // gap needed when the chosen candidate is the teacher
  int teacher_index = -1;        // index of the teacher among the candidates (-1: none)
  std::vector<bool> defective;   // never chosen; rejected against every chosen candidate
};

// dno_margin over K samples (+ the teacher): every (chosen, rejected) with chosen >= gate and
// gap >= min_gap (teacher_min_gap when the chosen one is the teacher: the margin is relaxed
// for the model's own samples); defective candidates are never chosen and are paired against
// every candidate that passes the gate, whatever the gap. Works on win rates or on 6-point
// scores (DnoScoreOptions).
std::vector<PreferencePairRow> DnoMarginPairs(const std::string& prompt,
                                              const std::vector<std::string>& texts,
                                              const std::vector<double>& values,
                                              const DnoMarginOptions& options);

// dno_soft_all (DNO Algorithm 1, soft labels; ALGORITHMS.md §2): one pair per two distinct texts
// of the prompt, labelled p = σ(R_t(y1) - R_t(y2)) from `win_rates` (R_t: each candidate's win
// rate against the policy's own samples). Not the pair's judged P(y1 ≻ y2): a confident judge
// would make every label ≈ 1, i.e. hard-label DPO with no finite optimum. Oriented so that
// p >= ½ (chosen = the side with the higher win rate; the DNO loss is the same either way). Pairs
// of two automatic negatives carry no preference and are left out.
std::vector<PreferencePairRow> DnoSoftAllPairs(const std::string& prompt,
                                               const std::vector<std::string>& texts,
                                               const std::vector<double>& win_rates,
                                               const std::vector<bool>& negative);

// DNO-Prct's side-by-side scoring thresholds: a positive scores >= 5 of 6; gap >= 2 when the
// positive is the teacher, >= 1 when it is the model's own sample.
DnoMarginOptions DnoScoreOptions(int teacher_index, std::vector<bool> defective);

}  // namespace spar::orchestrator
