// DNO round logic that needs no services (ALGORITHMS.md §2): which pairs of one prompt's samples
// to judge, each sample's win rate R_t(y) = mean_{y'} P(y > y'), and the `dno_margin` pair policy
// with win rates in place of the 6-point scores. Pure functions; thread-safe.
#pragma once

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
};

// Win rate of each of the k samples against the others: mean over j != i of P(y_i > y_j), with
// 0.5 for identical texts; failed judgments are left out of the mean. A sample with no usable
// comparison gets 0.5.
std::vector<double> WinRates(const std::vector<std::string>& texts,
                             const std::vector<PairJudgment>& judgments);

struct PreferencePairRow {
  std::string prompt;
  std::string chosen;
  std::string rejected;
  double chosen_win_rate = 0;
  double rejected_win_rate = 0;
};

// dno_margin: a chosen response needs win rate >= gate; every (chosen, rejected) with
// win-rate gap >= min_gap and different texts is kept (not only best vs worst). Each distinct
// text is used once per role (duplicate samples do not multiply pairs).
std::vector<PreferencePairRow> DnoMarginPairs(const std::string& prompt,
                                              const std::vector<std::string>& texts,
                                              const std::vector<double>& win_rates, double gate,
                                              double min_gap);

}  // namespace spar::orchestrator
