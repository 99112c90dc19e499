// Internal to orchestrator/: the stages of a round (orchestrator/job_runner.h runs them in the
// order of run_dir.h's kStages), one file each, and the pieces two stages share. A stage reads
// its inputs from the run directory and writes its outputs atomically when it is whole; the
// runner writes STAGE after it (the pipelined sample stage writes its own marker: see
// StageSampleAndJudge). Runner's thread only.
#pragma once

#include <cstddef>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "orchestrator/internal/stage_context.h"
#include "orchestrator/recipe.h"
#include "orchestrator/round_rows.h"
#include "spar/v1/sampler.pb.h"

namespace spar::orchestrator::internal {

// --- sample (stage_sample.cc) ---
// Round t's prompts: a fresh slice of the prompt pool per round (ALGORITHMS.md §2), wrapping
// around when the pool is smaller than rounds * prompts_per_round.
absl::StatusOr<std::vector<PromptItem>> RoundPrompts(const StageContext& ctx, int t);
// The Generate request of round t's sampling of `policy`.
v1::GenerateRequest SampleRequest(const StageContext& ctx, int t, const std::string& policy,
                                  const std::vector<PromptItem>& items);
// The samples.jsonl row of one sampler result for `item`.
SampleRow SampleRowOf(const v1::GenerateResponse& r, const PromptItem& item);
// Records the sample stage's counts in the job's round summary.
void SampleFinished(const StageContext& ctx, int t, size_t num_prompts);
// Writes samples.jsonl.
absl::Status StageSample(StageContext& ctx, int t, const std::string& policy);

// --- judge (stage_judge.cc) ---
// One sample row as the recipe sees it.
PromptRound RoundFromRow(const SampleRow& row);
// The comparisons of one sample row: each (i, j) the recipe wants judged, as a distinct text pair
// (a <= b) and whether (y_i, y_j) is that pair flipped. Each distinct text pair of a prompt is
// judged once (samples repeat: K = 4 may hold only two distinct answers); every (i, j) with those
// texts takes the judgment, flipped when the texts come in the other order.
struct RowComparison {
  int i, j;
  bool flipped;
  ComparisonKey key;
};
std::vector<RowComparison> RowComparisons(const Recipe& recipe, const SampleRow& row);
// Side-by-side: the candidates of one sample row the recipe wants scored (indices into
// Candidates()) and the question they make; no texts = nothing to score.
struct RowScore {
  std::vector<std::string> candidates;
  std::vector<int> shown;
  ScoreKey key;
};
RowScore RowScoreOf(const Recipe& recipe, const SampleRow& row);
// Judges what `judged` lacks of the round's comparisons (prompt order), writes judgments.jsonl.
// A spent budget, a refused key or too many failures fail the stage; what was answered is then
// kept in judgments.partial.jsonl, read back by the next StageJudge.
absl::Status JudgeRows(StageContext& ctx, int t, const std::vector<SampleRow>& rows,
                       JudgedMap* judged);
// Side-by-side scoring (pairs.scoring = "side_by_side"): scores what `scored` lacks of the
// round's prompts (one Oracle.Score item each), writes judgments.jsonl (one row per prompt,
// docs/algorithms.md).
absl::Status ScoreRows(StageContext& ctx, int t, const std::vector<SampleRow>& rows,
                       ScoredMap* scored);
// Judges (or scores) the round's samples.jsonl.
absl::Status StageJudge(StageContext& ctx, int t);

// --- sample and judge, pipelined (stage_judge_pipelined.cc) ---
// Sampling with judging overlapped: writes samples.jsonl and STAGE=sample when sampling is whole,
// then judgments.jsonl once every comparison is judged; the files are byte-identical to
// StageSample followed by StageJudge.
absl::Status StageSampleAndJudge(StageContext& ctx, int t, const std::string& policy);

// --- pairs (stage_pairs.cc) ---
// Builds pairs.jsonl (listwise recipes: groups.jsonl) from the round's samples and judgments, with
// earlier rounds' rows mixed in.
absl::Status StagePairs(StageContext& ctx, int t);

// --- train (stage_train.cc) ---
// Trains `policy` on pairs.jsonl (listwise: groups.jsonl) into round t's checkpoint (a copy when
// there is nothing to train on).
absl::Status StageTrain(StageContext& ctx, int t, const std::string& policy);

// --- eval (stage_eval.cc) ---
// base_eval.jsonl: the base policy's greedy answers (once per job).
absl::Status EnsureBaseEval(StageContext& ctx);
// Greedy answers of round t's checkpoint, judged against pi_0's and the previous policy's:
// eval_answers.jsonl and eval.json; sets early_stopped when the stop rule fires.
absl::Status StageEval(StageContext& ctx, int t);

}  // namespace spar::orchestrator::internal
