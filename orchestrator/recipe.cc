#include "orchestrator/recipe.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <random>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"

namespace spar::orchestrator {
namespace {

// Which candidates are unfinished automatic negatives: none with pairs.unfinished_negative off
// (unset = on, as WithDefaults fills it). The teacher (DNO-Prct) is a complete response.
std::vector<bool> UnfinishedNegatives(const v1::JobSpec& spec, const PromptRound& r,
                                      const std::vector<std::string>& candidates) {
  std::vector<bool> out(candidates.size(), false);
  const v1::PairPolicy& pp = spec.pairs();
  if (pp.has_unfinished_negative() && !pp.unfinished_negative()) return out;
  const bool with_teacher = candidates.size() > r.samples.size();
  const std::set<std::string> unfinished = UnfinishedTexts(r, with_teacher);
  for (size_t i = 0; i < candidates.size(); ++i) out[i] = unfinished.count(candidates[i]) > 0;
  return out;
}

// DNO (ALGORITHMS.md §2), DNO-Prct's practical rules: K samples (+ the teacher response with
// pairs.use_teacher), repetition defects as automatic negatives, win rates from pairwise
// judgments, dno_margin with every qualifying pair.
class DnoRecipe final : public Recipe {
 public:
  explicit DnoRecipe(const v1::JobSpec& spec) : spec_(spec) {}
  std::string name() const override { return "dno"; }
  std::vector<std::string> Candidates(const PromptRound& r) const override {
    std::vector<std::string> c = r.samples;
    if (spec_.pairs().use_teacher() && r.gold.has_value()) c.push_back(*r.gold);
    return c;
  }
  std::vector<PairRef> PairsToJudge(const PromptRound& r) const override {
    std::vector<std::string> c = Candidates(r);
    return orchestrator::PairsToJudge(c, Negatives(r, c));
  }
  std::vector<PreferencePairRow> BuildPairs(const PromptRound& r,
                                            const std::vector<PairJudgment>& j) const override {
    std::vector<std::string> c = Candidates(r);
    if (spec_.pairs().policy() == "dno_soft_all") {  // DNO Algorithm 1, soft labels
      // R_t(y): win rates against the policy's own K samples (the teacher is a candidate, not
      // an opponent).
      const std::vector<bool> negative = Negatives(r, c);
      const int opponents = static_cast<int>(r.samples.size());
      return DnoSoftAllPairs(r.prompt, c, DefectAwareWinRates(c, j, negative, opponents), negative);
    }
    DnoMarginOptions o;
    o.gate = spec_.pairs().win_rate_gate();
    o.min_gap = spec_.pairs().min_gap();
    o.teacher_min_gap = spec_.pairs().teacher_min_gap();
    o.teacher_index = c.size() > r.samples.size() ? static_cast<int>(r.samples.size()) : -1;
    o.defective = Negatives(r, c);
    return DnoMarginPairs(r.prompt, c, DefectAwareWinRates(c, j, o.defective), o);
  }
  std::vector<double> MixPrevious() const override {
    return {spec_.pairs().mix_previous().begin(), spec_.pairs().mix_previous().end()};
  }
  bool NeedsGold() const override { return spec_.pairs().use_teacher(); }
  bool ScoresSideBySide() const override { return spec_.pairs().scoring() == "side_by_side"; }
  std::vector<int> CandidatesToScore(const PromptRound& r) const override {
    std::vector<std::string> c = Candidates(r);
    std::vector<bool> d = Negatives(r, c);
    std::vector<int> out;
    std::set<std::string> seen;
    for (size_t i = 0; i < c.size(); ++i) {
      if (!d[i] && seen.insert(c[i]).second) out.push_back(static_cast<int>(i));
    }
    return out;
  }
  std::vector<PreferencePairRow> BuildPairsFromScores(
      const PromptRound& r, const std::vector<int>& scores) const override {
    std::vector<std::string> c = Candidates(r);
    std::vector<double> values(c.size(), 0.0);
    for (size_t i = 0; i < c.size() && i < scores.size(); ++i) values[i] = std::max(0, scores[i]);
    const int teacher = c.size() > r.samples.size() ? static_cast<int>(r.samples.size()) : -1;
    return DnoMarginPairs(r.prompt, c, values, DnoScoreOptions(teacher, Negatives(r, c)));
  }

 private:
  // Automatic negatives: repetition defects and unfinished responses.
  std::vector<bool> Negatives(const PromptRound& r, const std::vector<std::string>& c) const {
    std::vector<bool> d = UnfinishedNegatives(spec_, r, c);
    for (size_t i = 0; i < c.size(); ++i) {
      d[i] = d[i] || HasRepeatedNgram(c[i], spec_.pairs().defect_ngram(),
                                      spec_.pairs().defect_max_repeats());
    }
    return d;
  }
  v1::JobSpec spec_;
};

class IterativeDpoRecipe final : public Recipe {
 public:
  explicit IterativeDpoRecipe(const v1::JobSpec& spec) : spec_(spec) {}
  std::string name() const override { return "dpo"; }
  std::vector<PairRef> PairsToJudge(const PromptRound& r) const override {
    return orchestrator::PairsToJudge(r.samples, UnfinishedNegatives(spec_, r, r.samples));
  }
  std::vector<PreferencePairRow> BuildPairs(const PromptRound& r,
                                            const std::vector<PairJudgment>& j) const override {
    const std::vector<bool> negative = UnfinishedNegatives(spec_, r, r.samples);
    return BestVsWorstPair(r.prompt, r.samples, DefectAwareWinRates(r.samples, j, negative),
                           spec_.pairs().min_gap(), negative);
  }
  std::vector<double> MixPrevious() const override {
    return {spec_.pairs().mix_previous().begin(), spec_.pairs().mix_previous().end()};
  }

 private:
  v1::JobSpec spec_;
};

class SpinRecipe final : public Recipe {
 public:
  explicit SpinRecipe(const v1::JobSpec& spec) : spec_(spec) {}
  std::string name() const override { return "spin"; }
  std::vector<PairRef> PairsToJudge(const PromptRound&) const override { return {}; }
  std::vector<PreferencePairRow> BuildPairs(const PromptRound& r,
                                            const std::vector<PairJudgment>&) const override {
    if (!r.gold.has_value()) return {};
    return GoldVsSamplePair(r.prompt, *r.gold, r.samples);
  }
  std::vector<double> MixPrevious() const override {
    if (spec_.pairs().mix_previous_size() > 0) {
      return {spec_.pairs().mix_previous().begin(), spec_.pairs().mix_previous().end()};
    }
    return {1.0};  // SPIN: the training set of round t is new pairs + round t-1's pairs
  }
  bool NeedsGold() const override { return true; }

 private:
  v1::JobSpec spec_;
};

// SPPO (ALGORITHMS.md §4): judge all pairs; P̂(y > pi_t) = mean over j including y itself
// (0.5); one pair, argmax vs argmin, carrying P̂ for the trainer's sppo loss.
class SppoRecipe final : public Recipe {
 public:
  explicit SppoRecipe(const v1::JobSpec& spec) : spec_(spec) {}
  std::string name() const override { return "sppo"; }
  std::vector<PairRef> PairsToJudge(const PromptRound& r) const override {
    return orchestrator::PairsToJudge(r.samples, UnfinishedNegatives(spec_, r, r.samples));
  }
  std::vector<PreferencePairRow> BuildPairs(const PromptRound& r,
                                            const std::vector<PairJudgment>& j) const override {
    const std::vector<bool> negative = UnfinishedNegatives(spec_, r, r.samples);
    return SppoArgmaxArgminPair(
        r.prompt, r.samples,
        SppoWinRates(r.samples, WithAutomaticNegatives(r.samples, j, negative)), negative);
  }
  std::vector<double> MixPrevious() const override {
    return {spec_.pairs().mix_previous().begin(), spec_.pairs().mix_previous().end()};
  }

 private:
  v1::JobSpec spec_;
};

// MPO batched regression (ALGORITHMS.md §5): judge all pairs; q̂(y) = P̂(y > pi_t) as SPPO
// estimates it; every distinct-text pair with gap >= min_gap ("mpo_pairs"). The magnet
// checkpoint is chosen by the job runner (JobSpec.mpo_magnet_refresh).
class MpoRecipe final : public Recipe {
 public:
  explicit MpoRecipe(const v1::JobSpec& spec) : spec_(spec) {}
  std::string name() const override { return "mpo"; }
  std::vector<PairRef> PairsToJudge(const PromptRound& r) const override {
    return orchestrator::PairsToJudge(r.samples, UnfinishedNegatives(spec_, r, r.samples));
  }
  std::vector<PreferencePairRow> BuildPairs(const PromptRound& r,
                                            const std::vector<PairJudgment>& j) const override {
    DnoMarginOptions o;
    o.gate = 0.0;
    o.min_gap = spec_.pairs().min_gap();
    o.defective = UnfinishedNegatives(spec_, r, r.samples);
    const std::vector<PairJudgment> all = WithAutomaticNegatives(r.samples, j, o.defective);
    return DnoMarginPairs(r.prompt, r.samples, SppoWinRates(r.samples, all), o);
  }
  std::vector<double> MixPrevious() const override {
    return {spec_.pairs().mix_previous().begin(), spec_.pairs().mix_previous().end()};
  }

 private:
  v1::JobSpec spec_;
};

// The listwise recipes, BRAIn (ALGORITHMS.md §9) and RRHF (§10): judge all pairs; every sample of
// a prompt trains together, its reward the reward model's own r(x, y) when the oracle is one
// (OracleRewards), else the SPPO win rate P̂(y > pi_t) within the prompt's samples (unfinished
// samples as automatic negatives). RRHF leaves out a prompt whose rewards are all
// equal: it ranks nothing and its SFT term would take an arbitrary response.
class ListwiseRecipe final : public Recipe {
 public:
  explicit ListwiseRecipe(const v1::JobSpec& spec) : spec_(spec) {}
  std::string name() const override { return spec_.algorithm(); }
  std::vector<PairRef> PairsToJudge(const PromptRound& r) const override {
    return orchestrator::PairsToJudge(r.samples, UnfinishedNegatives(spec_, r, r.samples));
  }
  std::vector<PreferencePairRow> BuildPairs(const PromptRound&,
                                            const std::vector<PairJudgment>&) const override {
    return {};
  }
  bool Listwise() const override { return true; }
  std::vector<double> GroupRewards(const PromptRound& r,
                                   const std::vector<PairJudgment>& j) const override {
    const std::vector<bool> negative = UnfinishedNegatives(spec_, r, r.samples);
    // A reward-model oracle's own rewards (ALGORITHMS.md §9: r_i from a reward model), else
    // each sample's win rate among the samples.
    std::optional<std::vector<double>> from_oracle = OracleRewards(r.samples, j, negative);
    std::vector<double> rewards =
        from_oracle ? *std::move(from_oracle)
                    : SppoWinRates(r.samples, WithAutomaticNegatives(r.samples, j, negative));
    const bool ranked =
        std::any_of(rewards.begin(), rewards.end(), [&](double x) { return x != rewards.front(); });
    if (spec_.algorithm() == "rrhf" && !ranked) return {};
    return rewards;
  }
  std::vector<double> MixPrevious() const override {
    return {spec_.pairs().mix_previous().begin(), spec_.pairs().mix_previous().end()};
  }

 private:
  v1::JobSpec spec_;
};

}  // namespace

std::vector<double> SppoWinRates(const std::vector<std::string>& texts,
                                 const std::vector<PairJudgment>& judgments) {
  // WinRates averages over the k-1 others (failed judgments left out); add y itself (0.5).
  const int k = static_cast<int>(texts.size());
  std::vector<int> n(k, 0);
  for (int i = 0; i < k; ++i) {
    for (int j = 0; j < k; ++j) n[i] += (i != j && texts[i] == texts[j]) ? 1 : 0;
  }
  for (const PairJudgment& jd : judgments) {
    if (!jd.ok || jd.i < 0 || jd.j < 0 || jd.i >= k || jd.j >= k || jd.i == jd.j) continue;
    ++n[jd.i];
    ++n[jd.j];
  }
  std::vector<double> w = WinRates(texts, judgments);
  for (int i = 0; i < k; ++i) w[i] = (w[i] * n[i] + 0.5) / (n[i] + 1);
  return w;
}

namespace {

// The best non-negative and the worst candidate (the worst negative when there is one), first
// index on ties; nullopt when every candidate is a negative.
std::optional<std::pair<size_t, size_t>> BestAndWorst(const std::vector<double>& values,
                                                      const std::vector<bool>& negative) {
  auto neg = [&](size_t i) { return i < negative.size() && negative[i]; };
  std::optional<size_t> best, worst;
  bool worst_neg = false;
  for (size_t i = 0; i < values.size(); ++i) {
    if (!neg(i) && (!best || values[i] > values[*best])) best = i;
    // A negative replaces a sound worst; otherwise the lower value wins.
    if (!worst || (neg(i) && !worst_neg) || (neg(i) == worst_neg && values[i] < values[*worst])) {
      worst = i;
      worst_neg = neg(i);
    }
  }
  if (!best) return std::nullopt;
  return std::make_pair(*best, *worst);
}

}  // namespace

std::vector<PreferencePairRow> SppoArgmaxArgminPair(const std::string& prompt,
                                                    const std::vector<std::string>& texts,
                                                    const std::vector<double>& win_rates,
                                                    const std::vector<bool>& negative) {
  if (texts.size() < 2) return {};
  auto bw = BestAndWorst(win_rates, negative);
  if (!bw) return {};
  const auto [best, worst] = *bw;
  const bool auto_negative = worst < negative.size() && negative[worst];
  if (texts[best] == texts[worst] || (!auto_negative && win_rates[best] <= win_rates[worst])) {
    return {};
  }
  return {{prompt, texts[best], texts[worst], win_rates[best], win_rates[worst]}};
}

std::vector<PreferencePairRow> BestVsWorstPair(const std::string& prompt,
                                               const std::vector<std::string>& texts,
                                               const std::vector<double>& win_rates, double min_gap,
                                               const std::vector<bool>& negative) {
  if (texts.size() < 2) return {};
  auto bw = BestAndWorst(win_rates, negative);
  if (!bw) return {};
  const auto [best, worst] = *bw;
  const bool auto_negative = worst < negative.size() && negative[worst];
  if (texts[best] == texts[worst] ||
      (!auto_negative && win_rates[best] - win_rates[worst] + 1e-9 < min_gap)) {
    return {};
  }
  return {{prompt, texts[best], texts[worst], win_rates[best], win_rates[worst]}};
}

std::set<std::string> UnfinishedTexts(const PromptRound& round, bool gold_is_response) {
  std::set<std::string> cut, done;
  for (size_t i = 0; i < round.samples.size(); ++i) {
    const bool finished = i >= round.finished.size() || round.finished[i];
    (finished ? done : cut).insert(round.samples[i]);
  }
  if (gold_is_response && round.gold.has_value()) done.insert(*round.gold);
  for (const std::string& t : done) cut.erase(t);
  return cut;
}

std::vector<PreferencePairRow> GoldVsSamplePair(const std::string& prompt, const std::string& gold,
                                                const std::vector<std::string>& texts) {
  for (const std::string& t : texts) {
    if (t != gold) return {{prompt, gold, t, 1.0, 0.0}};
  }
  return {};  // the policy already reproduces the gold answer: nothing to contrast
}

std::vector<size_t> MixSelection(size_t rows, double fraction, uint64_t seed) {
  std::vector<size_t> idx(rows);
  for (size_t i = 0; i < rows; ++i) idx[i] = i;
  std::mt19937_64 rng(seed);
  for (size_t i = rows; i > 1; --i) std::swap(idx[i - 1], idx[rng() % i]);
  size_t n = static_cast<size_t>(std::llround(std::clamp(fraction, 0.0, 1.0) * rows));
  idx.resize(n);
  std::sort(idx.begin(), idx.end());
  return idx;
}

absl::StatusOr<std::unique_ptr<Recipe>> MakeRecipe(const v1::JobSpec& spec) {
  if (spec.algorithm() == "dno") return std::unique_ptr<Recipe>(new DnoRecipe(spec));
  if (spec.algorithm() == "dpo") return std::unique_ptr<Recipe>(new IterativeDpoRecipe(spec));
  if (spec.algorithm() == "spin") return std::unique_ptr<Recipe>(new SpinRecipe(spec));
  if (spec.algorithm() == "sppo") return std::unique_ptr<Recipe>(new SppoRecipe(spec));
  if (spec.algorithm() == "mpo") return std::unique_ptr<Recipe>(new MpoRecipe(spec));
  if (spec.algorithm() == "brain" || spec.algorithm() == "rrhf") {
    return std::unique_ptr<Recipe>(new ListwiseRecipe(spec));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("spec.algorithm unknown algorithm \"", spec.algorithm(), "\""));
}

}  // namespace spar::orchestrator
