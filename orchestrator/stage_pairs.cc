// The pairs stage: the recipe's training pairs from the round's samples and judgments, with
// earlier rounds' own pairs mixed back in (pairs.jsonl); for a listwise recipe, its groups
// (groups.jsonl).
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "orchestrator/dno.h"
#include "orchestrator/internal/stages.h"

namespace spar::orchestrator::internal {
namespace {

using nlohmann::json;

// What the round's judgments say per prompt: the pairwise judgments, or (side_by_side) each
// prompt's candidate scores (-1: not scored; absent when scoring failed).
struct PromptJudgments {
  std::map<int64_t, std::vector<PairJudgment>> by_prompt;
  std::map<int64_t, std::vector<int>> scores_by_prompt;
  int failed = 0;
};

absl::StatusOr<PromptJudgments> ReadJudgments(const std::string& path, bool side_by_side) {
  PromptJudgments out;
  SPAR_ASSIGN_OR_RETURN(std::vector<json> rows, ReadJsonl(path));
  if (!side_by_side) {
    SPAR_ASSIGN_OR_RETURN(std::vector<JudgmentRow> judgments,
                          RowsFromJson<JudgmentRow>(path, rows));
    for (const JudgmentRow& j : judgments) {
      out.failed += j.ok ? 0 : 1;
      out.by_prompt[j.index].push_back({j.i, j.j, j.p_a_wins, j.ok, j.reward_i, j.reward_j});
    }
    return out;
  }
  for (const json& j : rows) {
    if (!j.contains("scores")) {
      return absl::DataLossError(absl::StrCat(path, ": prompt ", j.value("index", -1),
                                              " has no scores (not a side_by_side file)"));
    }
  }
  SPAR_ASSIGN_OR_RETURN(std::vector<ScoreRow> scored, RowsFromJson<ScoreRow>(path, rows));
  for (const ScoreRow& j : scored) {
    out.failed += j.ok ? 0 : 1;
    if (!j.ok) continue;
    std::vector<int>& sc = out.scores_by_prompt[j.index];
    for (const std::optional<int>& v : j.scores) sc.push_back(v.value_or(-1));
  }
  return out;
}

// One pairs.jsonl row of round t's prompt `index`. Side-by-side scores 0..6 go to the trainer's
// win-rate scale [0, 1] (score / 6), with the raw scores too. A response whose text is in
// `unfinished` (cut at max_new_tokens) is marked so that the trainer adds no EOS.
PairRow PairRowOf(const PreferencePairRow& p, bool side_by_side,
                  const std::set<std::string>& unfinished, int64_t index, int t) {
  const double scale = side_by_side ? 6.0 : 1.0;
  PairRow row;
  row.prompt = p.prompt;
  row.chosen = p.chosen;
  row.rejected = p.rejected;
  row.chosen_win_rate = p.chosen_win_rate / scale;
  row.rejected_win_rate = p.rejected_win_rate / scale;
  if (side_by_side) {
    row.chosen_score = static_cast<int>(p.chosen_win_rate);
    row.rejected_score = static_cast<int>(p.rejected_win_rate);
  }
  row.p = p.p;
  row.chosen_finished = p.chosen_finished && unfinished.count(p.chosen) == 0;
  row.rejected_finished = p.rejected_finished && unfinished.count(p.rejected) == 0;
  row.source_index = index;
  row.source_round = t;
  return row;
}

// The round's own pairs, prompt by prompt; counts the pairs dropped for an empty response.
std::vector<PairRow> BuildPairs(const Recipe& recipe, int t, const std::vector<SampleRow>& samples,
                                PromptJudgments& judged, int* dropped_empty) {
  const bool side_by_side = recipe.ScoresSideBySide();
  std::vector<PairRow> rows;
  for (const SampleRow& row : samples) {
    const PromptRound pr = RoundFromRow(row);
    const std::set<std::string> unfinished = UnfinishedTexts(pr, recipe.NeedsGold());
    std::vector<PreferencePairRow> built;
    if (side_by_side) {
      auto it = judged.scores_by_prompt.find(row.index);
      // A prompt whose scoring failed yields no pairs (never guessed scores).
      if (it != judged.scores_by_prompt.end()) built = recipe.BuildPairsFromScores(pr, it->second);
    } else {
      built = recipe.BuildPairs(pr, judged.by_prompt[row.index]);
    }
    for (const PreferencePairRow& p : built) {
      // The trainer rejects empty responses (nothing but EOS to score); such samples still count
      // in the win rates, they just cannot be one side of a training pair.
      if (p.chosen.empty() || p.rejected.empty()) {
        ++*dropped_empty;
        continue;
      }
      rows.push_back(PairRowOf(p, side_by_side, unfinished, row.index, t));
    }
  }
  return rows;
}

// The round's own groups (listwise recipes), prompt by prompt: every sample with its reward and
// its sampler log-prob (brain's proposal). Empty responses are dropped (the trainer scores
// nothing but EOS for them; they still count in the rewards), and a group left with fewer than 2.
std::vector<GroupRow> BuildGroups(const Recipe& recipe, int t,
                                  const std::vector<SampleRow>& samples, PromptJudgments& judged,
                                  int* dropped_empty) {
  std::vector<GroupRow> rows;
  for (const SampleRow& row : samples) {
    const std::vector<double> rewards =
        recipe.GroupRewards(RoundFromRow(row), judged.by_prompt[row.index]);
    if (rewards.size() != row.samples.size()) continue;
    GroupRow group;
    group.prompt = row.prompt;
    for (size_t k = 0; k < row.samples.size(); ++k) {
      const SampledText& s = row.samples[k];
      if (s.text.empty()) {
        ++*dropped_empty;
        continue;
      }
      group.responses.push_back({s.text, rewards[k], s.logprob, s.finished});
    }
    if (group.responses.size() < 2) continue;
    group.source_index = row.index;
    group.source_round = t;
    rows.push_back(std::move(group));
  }
  return rows;
}

// Earlier rounds' own rows (pairs or groups) mixed back in (not re-sampled), per the recipe: how
// many. `path` names round s's file.
template <typename Row>
absl::StatusOr<int> MixEarlier(const StageContext& ctx, int t,
                               std::string (RunDir::*path)(int) const, std::vector<Row>* rows) {
  int mixed = 0;
  const std::vector<double> mix = ctx.recipe().MixPrevious();
  for (size_t k = 0; k < mix.size(); ++k) {
    const int s_round = t - 1 - static_cast<int>(k);
    if (s_round < 1 || mix[k] <= 0) continue;
    SPAR_ASSIGN_OR_RETURN(std::vector<Row> prev, ReadRows<Row>((ctx.dir().*path)(s_round)));
    std::vector<Row> own;
    for (Row& p : prev) {
      if (p.source_round.value_or(s_round) == s_round) own.push_back(std::move(p));
    }
    for (size_t i :
         MixSelection(own.size(), mix[k], MixSeed(ctx.spec().seed(), t, 100 + s_round))) {
      rows->push_back(own[i]);
      ++mixed;
    }
  }
  return mixed;
}

// The round's own rows (pairs or groups, `noun`) with earlier rounds' mixed in, written to
// `path`; the counts go to the job's round summary and a progress event. `dropped` says what
// BuildPairs / BuildGroups left out for an empty response.
template <typename Row>
absl::Status WriteTrainingRows(StageContext& ctx, int t, std::string (RunDir::*path)(int) const,
                               std::vector<Row> rows, const char* noun, int failed,
                               const std::string& dropped) {
  FaultHold(t, "pairs");  // test-only: rows built, nothing written yet
  SPAR_ASSIGN_OR_RETURN(const int mixed, MixEarlier(ctx, t, path, &rows));
  SPAR_RETURN_IF_ERROR(WriteRows((ctx.dir().*path)(t), rows));
  const int kept = static_cast<int>(rows.size());
  ctx.UpdateJob([&](v1::Job& job) {
    job.mutable_rounds(t - 1)->set_pairs_kept(kept);
    job.mutable_rounds(t - 1)->set_pairs_mixed(mixed);
  });
  ctx.Emit(t, "pairs", "progress", kept, kept,
           absl::StrFormat("%d %s kept (%d from earlier rounds), %d failed judgments excluded, %s",
                           kept, noun, mixed, failed, dropped));
  return absl::OkStatus();
}

}  // namespace

absl::Status StagePairs(StageContext& ctx, int t) {
  const RunDir dir = ctx.dir();
  SPAR_ASSIGN_OR_RETURN(std::vector<SampleRow> samples, ReadRows<SampleRow>(dir.Samples(t)));
  SPAR_ASSIGN_OR_RETURN(PromptJudgments judged,
                        ReadJudgments(dir.Judgments(t), ctx.recipe().ScoresSideBySide()));
  int dropped_empty = 0;
  if (ctx.recipe().Listwise()) {  // groups.jsonl instead of pairs.jsonl
    std::vector<GroupRow> rows = BuildGroups(ctx.recipe(), t, samples, judged, &dropped_empty);
    return WriteTrainingRows(ctx, t, &RunDir::Groups, std::move(rows), "groups", judged.failed,
                             absl::StrFormat("%d empty responses dropped", dropped_empty));
  }
  std::vector<PairRow> rows = BuildPairs(ctx.recipe(), t, samples, judged, &dropped_empty);
  return WriteTrainingRows(
      ctx, t, &RunDir::Pairs, std::move(rows), "pairs", judged.failed,
      absl::StrFormat("%d pairs with an empty response dropped", dropped_empty));
}

}  // namespace spar::orchestrator::internal
