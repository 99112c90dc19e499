// A recipe is what distinguishes DNO, iterative DPO, SPIN, SPPO, MPO, BRAIn and RRHF inside the one
// round engine (ALGORITHMS.md §1): which sample pairs to judge, how to turn samples + judgments
// (+ gold answers) into training pairs (or, listwise, groups), which earlier rounds' to mix back.
// Sampling, training and evaluation are shared. Recipes are stateless and thread-safe.
#pragma once

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "orchestrator/dno.h"
#include "spar/v1/orchestrator.pb.h"

namespace spar::orchestrator {

// One prompt's round data as the recipe sees it.
struct PromptRound {
  std::string prompt;
  std::optional<std::string> gold;  // the reference answer when the task has one
  std::vector<std::string> samples;
  // Per sample: false when cut at max_new_tokens (samples.jsonl "finished"); empty = all
  // finished (files written before the field was read).
  std::vector<bool> finished;
};

// The texts of the round that are unfinished: every sample with that text was cut at
// max_new_tokens (a text that also came out finished once is a finished response), and, when
// `gold_is_response` (the recipe trains on the gold answer: SPIN's winner, DNO's teacher), the
// text is not the gold answer, which is complete by definition.
std::set<std::string> UnfinishedTexts(const PromptRound& round, bool gold_is_response);

class Recipe {
 public:
  virtual ~Recipe() = default;
  virtual std::string name() const = 0;
  // The responses competing for the prompt: the K samples, plus the teacher for DNO-Prct with
  // pairs.use_teacher (candidate K). PairsToJudge / BuildPairs index into this list.
  virtual std::vector<std::string> Candidates(const PromptRound& round) const {
    return round.samples;
  }
  // Comparisons to send to the oracle (empty for judge-free recipes such as SPIN).
  virtual std::vector<PairRef> PairsToJudge(const PromptRound& round) const = 0;
  // Training pairs for one prompt from its samples and their judgments.
  virtual std::vector<PreferencePairRow> BuildPairs(
      const PromptRound& round, const std::vector<PairJudgment>& judgments) const = 0;
  // Side-by-side scoring (dno with pairs.scoring = "side_by_side"): the judge scores candidates
  // (Oracle.Score) instead of comparing PairsToJudge.
  virtual bool ScoresSideBySide() const { return false; }
  // The candidates to show the judge, by index into Candidates(): each distinct text once (first
  // occurrence), defects left out. Empty: nothing to score.
  virtual std::vector<int> CandidatesToScore(const PromptRound&) const { return {}; }
  // Training pairs from 6-point scores: scores[i] is candidate i's, or -1 when it was not scored
  // (a defect).
  virtual std::vector<PreferencePairRow> BuildPairsFromScores(const PromptRound&,
                                                              const std::vector<int>&) const {
    return {};
  }
  // Listwise recipes (brain, rrhf) train on groups (groups.jsonl) instead of pairs: every sample
  // of a prompt with its reward.
  virtual bool Listwise() const { return false; }
  // A listwise recipe's reward for each of the prompt's samples (as round.samples), from the
  // judgments; empty when the prompt yields no group.
  virtual std::vector<double> GroupRewards(const PromptRound&,
                                           const std::vector<PairJudgment>&) const {
    return {};
  }
  // Fractions of earlier rounds' pairs (or groups) mixed in (index 0 = round t-1).
  virtual std::vector<double> MixPrevious() const = 0;
  // True when the recipe needs a gold answer for every prompt.
  virtual bool NeedsGold() const { return false; }
};

// The recipe of a validated spec (after WithDefaults). InvalidArgument for an unknown algorithm.
absl::StatusOr<std::unique_ptr<Recipe>> MakeRecipe(const v1::JobSpec& spec);

// best_vs_worst (iterative DPO, §6): the sample with the highest win rate vs the one with the
// lowest, when their gap is >= min_gap and texts differ. With automatic negatives (`negative`,
// empty = none): the chosen one is the best non-negative, the rejected one the lowest negative
// when there is one (whatever the gap).
std::vector<PreferencePairRow> BestVsWorstPair(const std::string& prompt,
                                               const std::vector<std::string>& texts,
                                               const std::vector<double>& win_rates, double min_gap,
                                               const std::vector<bool>& negative = {});

// SPPO's P̂(y_i > pi_t) (ALGORITHMS.md §4): the mean over all k samples INCLUDING y_i itself
// (P(y_i > y_i) = 0.5); failed judgments are left out (a sample with none gets 0.5).
std::vector<double> SppoWinRates(const std::vector<std::string>& texts,
                                 const std::vector<PairJudgment>& judgments);

// sppo_argmax_argmin (§4): the sample with the highest P̂ vs the one with the lowest (first index
// on ties), when P̂ differs and texts differ; no gap filter. With automatic negatives: argmax
// over the non-negatives, argmin over the negatives when there is one.
std::vector<PreferencePairRow> SppoArgmaxArgminPair(const std::string& prompt,
                                                    const std::vector<std::string>& texts,
                                                    const std::vector<double>& win_rates,
                                                    const std::vector<bool>& negative = {});

// gold_vs_sample (SPIN, §3): the gold answer beats the first sample that differs from it.
std::vector<PreferencePairRow> GoldVsSamplePair(const std::string& prompt, const std::string& gold,
                                                const std::vector<std::string>& texts);

// Deterministic draw of round(fraction * rows) rows (without replacement) keyed by `seed`.
std::vector<size_t> MixSelection(size_t rows, double fraction, uint64_t seed);

}  // namespace spar::orchestrator
