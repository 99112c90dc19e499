// The judge stage: the recipe's comparisons of each prompt's samples (or, side by side, one
// scored question per prompt), asked of the oracle once per distinct question (judgments.jsonl).
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "orchestrator/internal/judge_calls.h"
#include "orchestrator/internal/stages.h"

namespace spar::orchestrator::internal {
namespace {

// The answered judgments of a judge stage that failed its checks (kept for the next try).
std::string PartialJudgments(const RunDir& dir, int t) {
  return JoinPath(dir.Round(t), "judgments.partial.jsonl");
}

absl::Status SaveAnswered(const StageContext& ctx, int t, const JudgedMap& judged) {
  std::vector<AnsweredRow> rows;
  for (const auto& [key, jd] : judged) {
    if (!jd.ok()) continue;
    AnsweredRow row;
    row.prompt = std::get<0>(key);
    row.response_a = std::get<1>(key);
    row.response_b = std::get<2>(key);
    row.p_a_wins = jd.p_a_wins();
    row.p_ab = jd.p_ab();
    row.p_ba = jd.p_ba();
    row.verdict_ab = jd.verdict_ab();
    row.verdict_ba = jd.verdict_ba();
    if (jd.has_reward_a()) row.reward_a = jd.reward_a();
    if (jd.has_reward_b()) row.reward_b = jd.reward_b();
    rows.push_back(std::move(row));
  }
  return WriteRows(PartialJudgments(ctx.dir(), t), rows);
}

absl::StatusOr<JudgedMap> LoadAnswered(const StageContext& ctx, int t) {
  JudgedMap judged;
  const std::string path = PartialJudgments(ctx.dir(), t);
  if (!PathExists(path)) return judged;
  SPAR_ASSIGN_OR_RETURN(std::vector<AnsweredRow> rows, ReadRows<AnsweredRow>(path));
  for (const AnsweredRow& r : rows) {
    v1::Judgment jd;
    jd.set_ok(true);
    jd.set_p_a_wins(r.p_a_wins);
    jd.set_p_ab(r.p_ab);
    jd.set_p_ba(r.p_ba);
    jd.set_verdict_ab(r.verdict_ab);
    jd.set_verdict_ba(r.verdict_ba);
    if (r.reward_a) jd.set_reward_a(*r.reward_a);
    if (r.reward_b) jd.set_reward_b(*r.reward_b);
    judged[std::make_tuple(r.prompt, r.response_a, r.response_b)] = std::move(jd);
  }
  return judged;
}

// The round's comparisons in prompt order (whatever order the judgments were obtained in, so the
// file is the same bytes pipelined or not): each (prompt, i, j) and the distinct comparison it
// takes.
struct ComparisonPlan {
  struct Ref {
    int64_t prompt_index;
    int i, j;
    size_t comparison;
    bool flipped;
  };
  std::vector<Ref> refs;
  std::vector<ComparisonKey> comparisons;  // distinct, in first-use order
};

ComparisonPlan PlanComparisons(const Recipe& recipe, const std::vector<SampleRow>& rows) {
  ComparisonPlan plan;
  std::map<ComparisonKey, size_t> unique;
  for (const SampleRow& row : rows) {
    for (RowComparison& c : RowComparisons(recipe, row)) {
      auto it = unique.find(c.key);
      if (it == unique.end()) {
        plan.comparisons.push_back(c.key);
        it = unique.emplace(std::move(c.key), plan.comparisons.size() - 1).first;
      }
      plan.refs.push_back({row.index, c.i, c.j, it->second, c.flipped});
    }
  }
  return plan;
}

std::vector<JudgmentRow> JudgmentRows(const ComparisonPlan& plan, const JudgedMap& judged) {
  std::vector<JudgmentRow> out;
  out.reserve(plan.refs.size());
  for (const ComparisonPlan::Ref& r : plan.refs) {
    const v1::Judgment& jd = judged.at(plan.comparisons[r.comparison]);
    JudgmentRow row;
    row.index = r.prompt_index;
    row.i = r.i;
    row.j = r.j;
    row.ok = jd.ok();
    // p_a_wins is P(y_i > y_j): the judged pair showed (y_j, y_i) when flipped.
    row.p_a_wins = r.flipped ? 1.0 - jd.p_a_wins() : jd.p_a_wins();
    row.comparison = r.comparison;
    row.flipped = r.flipped;
    row.p_ab = jd.p_ab();
    row.p_ba = jd.p_ba();
    row.verdict_ab = jd.verdict_ab();
    row.verdict_ba = jd.verdict_ba();
    if (jd.has_reward_a() && jd.has_reward_b()) {
      row.reward_i = r.flipped ? jd.reward_b() : jd.reward_a();
      row.reward_j = r.flipped ? jd.reward_a() : jd.reward_b();
    }
    if (!jd.ok()) row.error = jd.error();
    out.push_back(std::move(row));
  }
  return out;
}

// One prompt's side-by-side row: every candidate's score (null when not shown: a defect), which
// candidates were shown and in what order, the judge's answer.
ScoreRow ScoreRowOf(const RowScore& rs, int64_t index, const ScoredMap& scored) {
  ScoreRow o;
  o.index = index;
  o.scores.assign(rs.candidates.size(), std::nullopt);
  if (rs.key.second.empty()) {
    o.ok = true;
    return o;
  }
  const v1::ScoreResult& r = scored.at(rs.key);
  o.ok = r.ok();
  o.shown = rs.shown;
  o.order.assign(r.order().begin(), r.order().end());
  if (r.ok()) {
    // Duplicates of a shown text take its score.
    std::map<std::string, int> by_text;
    for (size_t s = 0; s < rs.shown.size(); ++s) by_text[rs.key.second[s]] = r.scores(s);
    // (Defects are decided by text, so no defect shares a shown text.)
    for (size_t c = 0; c < rs.candidates.size(); ++c) {
      auto it = by_text.find(rs.candidates[c]);
      if (it != by_text.end()) o.scores[c] = it->second;
    }
  }
  o.verdict = r.verdict();
  if (!r.ok()) o.error = r.error();
  return o;
}

}  // namespace

PromptRound RoundFromRow(const SampleRow& row) {
  PromptRound pr{row.prompt, row.gold, {}, {}};
  for (const SampledText& s : row.samples) {
    pr.samples.push_back(s.text);
    pr.finished.push_back(s.finished);  // absent in hand-written files: finished
  }
  return pr;
}

std::vector<RowComparison> RowComparisons(const Recipe& recipe, const SampleRow& row) {
  const PromptRound pr = RoundFromRow(row);
  // Candidate indices: the K samples, then the teacher (DNO-Prct) when the recipe adds it.
  const std::vector<std::string> candidates = recipe.Candidates(pr);
  std::vector<RowComparison> out;
  for (const PairRef& p : recipe.PairsToJudge(pr)) {
    const std::string& a = candidates[p.i];
    const std::string& b = candidates[p.j];
    const bool flipped = b < a;
    out.push_back(
        {p.i, p.j, flipped, std::make_tuple(pr.prompt, flipped ? b : a, flipped ? a : b)});
  }
  return out;
}

RowScore RowScoreOf(const Recipe& recipe, const SampleRow& row) {
  const PromptRound pr = RoundFromRow(row);
  RowScore out;
  out.candidates = recipe.Candidates(pr);
  out.shown = recipe.CandidatesToScore(pr);
  out.key.first = pr.prompt;
  for (int i : out.shown) out.key.second.push_back(out.candidates[i]);
  return out;
}

absl::Status JudgeRows(StageContext& ctx, int t, const std::vector<SampleRow>& rows,
                       JudgedMap* judged) {
  const ComparisonPlan plan = PlanComparisons(ctx.recipe(), rows);
  std::vector<ComparisonKey> sent;
  for (const ComparisonKey& c : plan.comparisons) {
    if (judged->count(c) == 0) sent.push_back(c);
  }
  SPAR_ASSIGN_OR_RETURN(std::vector<v1::Judgment> got,
                        CompareAll(ctx, t, ctx.Key(t, "judge"), sent, ctx.Cancelled(),
                                   [&](size_t received, size_t total) {
                                     FaultHold(t, "judge");  // test-only: some judged, not all
                                     if (received % 256 == 0 || received == total) {
                                       ctx.Emit(t, "judge", "progress", received, total);
                                     }
                                     return ctx.CheckCancelled();
                                   }));
  for (size_t k = 0; k < sent.size(); ++k) (*judged)[sent[k]] = std::move(got[k]);
  // A spent budget pauses, a refused key or too many failures fail the stage, instead of
  // training on a partial set. What was answered is kept (judgments.partial.jsonl) so that the
  // resumed stage asks only the rest, whatever the oracle's cache holds.
  JudgeFailures failures;
  for (const ComparisonKey& key : plan.comparisons) {
    const v1::Judgment& jd = judged->at(key);
    failures.Add(jd.ok(), jd.code(), jd.error());
  }
  if (absl::Status st = failures.Check(ctx.MaxJudgeFailureRate()); !st.ok()) {
    SPAR_RETURN_IF_ERROR(SaveAnswered(ctx, t, *judged));
    return st;
  }
  SPAR_RETURN_IF_ERROR(WriteRows(ctx.dir().Judgments(t), JudgmentRows(plan, *judged)));
  return RemoveAll(PartialJudgments(ctx.dir(), t));
}

absl::Status ScoreRows(StageContext& ctx, int t, const std::vector<SampleRow>& rows,
                       ScoredMap* scored) {
  std::vector<RowScore> per_row;
  per_row.reserve(rows.size());
  std::vector<ScoreKey> sent;
  std::set<ScoreKey> asked;
  for (const SampleRow& row : rows) {
    per_row.push_back(RowScoreOf(ctx.recipe(), row));
    const ScoreKey& key = per_row.back().key;
    if (key.second.empty() || scored->count(key) > 0 || !asked.insert(key).second) continue;
    sent.push_back(key);
  }
  SPAR_ASSIGN_OR_RETURN(std::vector<v1::ScoreResult> got,
                        ScoreAll(ctx, t, ctx.Key(t, "judge"), sent, ctx.Cancelled(),
                                 [&](size_t received, size_t total) {
                                   if (received % 64 == 0 || received == total) {
                                     ctx.Emit(t, "judge", "progress", received, total);
                                   }
                                   return ctx.CheckCancelled();
                                 }));
  for (size_t k = 0; k < sent.size(); ++k) (*scored)[sent[k]] = std::move(got[k]);
  // One row per prompt, in prompt order.
  std::vector<ScoreRow> out;
  out.reserve(rows.size());
  for (size_t k = 0; k < rows.size(); ++k) {
    out.push_back(ScoreRowOf(per_row[k], rows[k].index, *scored));
  }
  // A spent budget pauses, a refused key or too many failures fail the stage (as for pairwise
  // judgments; the oracle's cache keeps answered items from being paid again on resume).
  JudgeFailures failures;
  std::set<ScoreKey> counted;
  for (const RowScore& rs : per_row) {
    if (rs.key.second.empty() || !counted.insert(rs.key).second) continue;
    const v1::ScoreResult& r = scored->at(rs.key);
    failures.Add(r.ok(), r.code(), r.error());
  }
  SPAR_RETURN_IF_ERROR(failures.Check(ctx.MaxJudgeFailureRate()));
  return WriteRows(ctx.dir().Judgments(t), out);
}

absl::Status StageJudge(StageContext& ctx, int t) {
  SPAR_ASSIGN_OR_RETURN(std::vector<SampleRow> samples, ReadRows<SampleRow>(ctx.dir().Samples(t)));
  if (ctx.recipe().ScoresSideBySide()) {
    ScoredMap scored;
    return ScoreRows(ctx, t, samples, &scored);
  }
  SPAR_ASSIGN_OR_RETURN(JudgedMap judged, LoadAnswered(ctx, t));
  return JudgeRows(ctx, t, samples, &judged);
}

}  // namespace spar::orchestrator::internal
