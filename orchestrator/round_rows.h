// The rows of a round's files (orchestrator/run_dir.h): samples.jsonl, judgments.jsonl (pairwise
// or side-by-side), pairs.jsonl, groups.jsonl, judgments.partial.jsonl and the eval
// answers (base_eval.jsonl,
// iter_NNN/eval_answers.jsonl). One struct per row kind, whose fields round_rows.cc lists once for
// both directions: ToJson is the row as the runner writes it (an nlohmann::json object, whose keys
// are sorted, so the bytes do not depend on the order fields are set; std::optional fields are
// written only when set), FromJson reads a row back: DataLoss naming the field instead of an
// exception. FromJson requires only what the runner reads; fields written later than a file may
// be (token ids, both-order probabilities, the pairs' finished flags) take their defaults when
// absent. Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace spar::orchestrator {

// One sample of a samples.jsonl row ("num_tokens" is written as token_ids' size).
struct SampledText {
  std::string text;
  double logprob = 0;    // sum of the response tokens' log-probs under the policy
  bool finished = true;  // false: cut at max_new_tokens before EOS (absent: true)
  std::vector<int32_t> token_ids;
  std::vector<double> token_logprobs;
};

// samples.jsonl: one row per prompt of the round, in prompt order.
struct SampleRow {
  int64_t index = 0;  // the prompt's position in the round
  std::string prompt;
  std::optional<std::string> gold;  // the reference answer when the task has one
  std::vector<SampledText> samples;

  nlohmann::json ToJson() const;
  static absl::StatusOr<SampleRow> FromJson(const nlohmann::json& row);
};

// judgments.jsonl, pairwise: one row per (prompt, i, j) the recipe asked for, in prompt order.
struct JudgmentRow {
  int64_t index = 0;  // the prompt's index (SampleRow::index)
  int i = 0;          // candidate indices (the samples, then the teacher)
  int j = 0;
  bool ok = false;
  double p_a_wins = 0;    // P(y_i > y_j)
  size_t comparison = 0;  // the distinct (prompt, text, text) comparison it took
  bool flipped = false;   // the comparison showed (y_j, y_i)
  double p_ab = 0;        // the judgment's own fields (oracle.proto Judgment)
  double p_ba = 0;
  std::string verdict_ab;
  std::string verdict_ba;
  // A reward-model oracle: the rewards of y_i and y_j (un-flipped); absent for a chat judge.
  std::optional<double> reward_i;
  std::optional<double> reward_j;
  std::optional<std::string> error;  // when !ok

  nlohmann::json ToJson() const;
  static absl::StatusOr<JudgmentRow> FromJson(const nlohmann::json& row);
};

// judgments.jsonl, side-by-side scoring ("scoring": "side_by_side"): one row per prompt
// (docs/algorithms.md).
struct ScoreRow {
  int64_t index = 0;
  bool ok = false;
  std::vector<int> shown;                  // candidate indices sent, in request order
  std::vector<int> order;                  // order[k]: the position in `shown` presented as id{k+1}
  std::vector<std::optional<int>> scores;  // per candidate; null when not shown or failed
  std::string verdict;                     // the judge's raw answer
  std::optional<std::string> error;        // when !ok

  nlohmann::json ToJson() const;
  static absl::StatusOr<ScoreRow> FromJson(const nlohmann::json& row);
};

// pairs.jsonl: one training pair (services/trainer reads it).
struct PairRow {
  std::string prompt;
  std::string chosen;
  std::string rejected;
  double chosen_win_rate = 0;  // on the trainer's [0, 1] scale
  double rejected_win_rate = 0;
  std::optional<int> chosen_score;  // side-by-side: the raw 0..6 scores
  std::optional<int> rejected_score;
  std::optional<double> p;      // the soft label P(chosen > rejected) (dno_soft_all)
  bool chosen_finished = true;  // false: cut at max_new_tokens (trained without EOS)
  bool rejected_finished = true;
  std::optional<int64_t> source_index;  // the prompt's index in its round
  std::optional<int> source_round;      // the round that built it (absent: the file's own)

  nlohmann::json ToJson() const;
  static absl::StatusOr<PairRow> FromJson(const nlohmann::json& row);
};

// One response of a groups.jsonl row.
struct GroupResponse {
  std::string text;
  double reward = 0;                       // the recipe's reward (docs/algorithms.md)
  std::optional<double> proposal_logprob;  // the sampler's log π_t(y|x) (samples.jsonl logprob)
  bool finished = true;                    // false: cut at max_new_tokens (trained without EOS)
};

// groups.jsonl (listwise recipes brain, rrhf): one training group per prompt (services/trainer
// reads it).
struct GroupRow {
  std::string prompt;
  std::vector<GroupResponse> responses;
  std::optional<int64_t> source_index;  // the prompt's index in its round
  std::optional<int> source_round;      // the round that built it

  nlohmann::json ToJson() const;
  static absl::StatusOr<GroupRow> FromJson(const nlohmann::json& row);
};

// judgments.partial.jsonl: an answered comparison kept when a judge stage failed its checks.
struct AnsweredRow {
  std::string prompt;
  std::string response_a;
  std::string response_b;
  double p_a_wins = 0;
  double p_ab = 0;
  double p_ba = 0;
  std::string verdict_ab;
  std::string verdict_ba;
  std::optional<double> reward_a;  // a reward-model oracle's rewards (oracle.proto Judgment)
  std::optional<double> reward_b;

  nlohmann::json ToJson() const;
  static absl::StatusOr<AnsweredRow> FromJson(const nlohmann::json& row);
};

// base_eval.jsonl and iter_NNN/eval_answers.jsonl: one greedy answer per eval prompt.
struct EvalAnswerRow {
  int64_t index = 0;
  std::string prompt;
  std::string text;

  nlohmann::json ToJson() const;
  static absl::StatusOr<EvalAnswerRow> FromJson(const nlohmann::json& row);
};

// Parses the rows of `path` (already read as JSON): DataLoss "<path>: row N: <field error>".
template <typename Row>
absl::StatusOr<std::vector<Row>> RowsFromJson(const std::string& path,
                                              const std::vector<nlohmann::json>& rows) {
  std::vector<Row> out;
  out.reserve(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    absl::StatusOr<Row> row = Row::FromJson(rows[i]);
    if (!row.ok()) {
      return absl::DataLossError(absl::StrCat(path, ": row ", i + 1, ": ", row.status().message()));
    }
    out.push_back(*std::move(row));
  }
  return out;
}

// Reads a round file of `Row`s (common/file_util.h ReadJsonl, then RowsFromJson).
template <typename Row>
absl::StatusOr<std::vector<Row>> ReadRows(const std::string& path) {
  absl::StatusOr<std::vector<nlohmann::json>> rows = ReadJsonl(path);
  if (!rows.ok()) return rows.status();
  return RowsFromJson<Row>(path, *rows);
}

// Writes `rows` atomically, one ToJson per line (common/file_util.h WriteJsonlAtomic).
template <typename Row>
absl::Status WriteRows(const std::string& path, const std::vector<Row>& rows) {
  std::vector<nlohmann::json> out;
  out.reserve(rows.size());
  for (const Row& row : rows) out.push_back(row.ToJson());
  return WriteJsonlAtomic(path, out);
}

}  // namespace spar::orchestrator
