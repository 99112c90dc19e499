// The eval stage: greedy answers of the round's checkpoint on the held-out prompts, their
// accuracy on the built-in task (compared with pi_0's prompt by prompt: McNemar) and their judged
// win rates against pi_0 and the previous policy (eval_answers.jsonl, eval.json); the same on the
// validation split, where the best round is chosen (validation_answers.jsonl, eval.json's
// "validation"); and, once per job, pi_0's own answers on both (base_eval.jsonl,
// base_validation.jsonl).
#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/stats.h"
#include "common/status_macros.h"
#include "orchestrator/internal/judge_calls.h"
#include "orchestrator/internal/stages.h"
#include "orchestrator/internal/stream_tally.h"
#include "orchestrator/job_spec.h"
#include "orchestrator/prompt_file.h"
#include "tasks/arith/greedy_score.h"
#include "tasks/arith/problems.h"

namespace spar::orchestrator::internal {
namespace {

using nlohmann::json;

std::string EvalAnswers(const RunDir& dir, int t) {
  return JoinPath(dir.Round(t), "eval_answers.jsonl");
}

// A split pi_t is measured on: the eval prompts (reported) or the validation prompts (where the
// best round is chosen).
struct Split {
  const v1::PromptSource& source;
  arith::ArithSplit builtin;
  int num_prompts;
  std::string field;      // the spec field naming the source
  std::string key;        // the greedy answers' idempotency key suffix
  std::string base_file;  // pi_0's answers
};

Split EvalSplit(const StageContext& ctx) {
  const v1::JobSpec& s = ctx.spec();
  return {s.eval_prompts(), arith::ArithSplit::kEval, s.eval().num_prompts(), "eval_prompts",
          "eval",           ctx.dir().BaseEval()};
}

Split ValidationSplit(const StageContext& ctx) {
  const v1::JobSpec& s = ctx.spec();
  return {s.validation_prompts(),
          arith::ArithSplit::kValidation,
          s.eval().validation_num_prompts(),
          "validation_prompts",
          "validation",
          ctx.dir().BaseValidation()};
}

absl::StatusOr<std::vector<std::string>> SplitPrompts(const StageContext& ctx, const Split& split) {
  std::vector<std::string> out;
  if (split.source.has_builtin()) {
    for (const arith::ArithProblem& p :
         arith::MakeArithProblems(split.builtin, split.num_prompts, ctx.spec().seed())) {
      out.push_back(p.prompt);
    }
    return out;
  }
  const std::string field = split.field + ".path";
  SPAR_ASSIGN_OR_RETURN(std::string path,
                        ResolveDataPath(split.source.path(), ctx.data_root(), field));
  SPAR_ASSIGN_OR_RETURN(std::vector<PromptRow> rows, ReadPromptFile(path, field));
  for (PromptRow& r : rows) out.push_back(std::move(r.prompt));
  if (static_cast<int>(out.size()) > split.num_prompts) out.resize(split.num_prompts);
  return out;
}

json IntervalJson(const Interval& i) { return json::array({i.lo, i.hi}); }

void SetInterval(const Interval& from, v1::Interval* to) {
  to->set_lo(from.lo);
  to->set_hi(from.hi);
}

// The greedy answer of `policy` to each prompt.
absl::Status Greedy(const StageContext& ctx, const std::string& policy,
                    const std::vector<std::string>& prompts, const std::string& key,
                    std::vector<std::string>* texts) {
  v1::GenerateRequest req;
  req.set_policy(policy);
  for (const std::string& p : prompts) req.add_prompts(p);
  req.mutable_params()->set_num_samples(1);
  req.mutable_params()->set_temperature(0.0f);
  req.mutable_params()->set_top_p(1.0f);
  req.mutable_params()->set_max_new_tokens(ctx.spec().eval().max_new_tokens());
  req.mutable_params()->set_seed(ctx.spec().seed());
  req.set_chat_template(ctx.spec().chat_template());
  req.set_idempotency_key(key);
  texts->assign(prompts.size(), "");
  StreamTally tally(prompts.size(), "sampler");
  SPAR_RETURN_IF_ERROR(ctx.ports().sampler->Generate(
      req,
      [&](const v1::GenerateResponse& r) {
        if (r.samples_size() < 1) {
          return absl::InternalError(
              absl::StrCat("sampler returned a bad result for index ", r.index()));
        }
        SPAR_RETURN_IF_ERROR(tally.Receive(r.index()));
        (*texts)[r.index()] = r.samples(0).text();
        return ctx.CheckCancelled();
      },
      ctx.Cancelled()));
  if (!tally.whole()) {
    return absl::UnavailableError("sampler stream ended before every prompt had a result");
  }
  return absl::OkStatus();
}

std::vector<EvalAnswerRow> AnswerRows(const std::vector<std::string>& prompts,
                                      const std::vector<std::string>& texts) {
  std::vector<EvalAnswerRow> rows;
  for (size_t i = 0; i < prompts.size(); ++i) {
    rows.push_back({static_cast<int64_t>(i), prompts[i], texts[i]});
  }
  return rows;
}

// Greedy eval answers of the policy before round t (pi_0's for t = 1).
absl::StatusOr<std::vector<std::string>> PreviousEvalAnswers(const StageContext& ctx, int t) {
  const RunDir dir = ctx.dir();
  const std::string path = t <= 1 ? dir.BaseEval() : EvalAnswers(dir, t - 1);
  SPAR_ASSIGN_OR_RETURN(std::vector<EvalAnswerRow> rows, ReadRows<EvalAnswerRow>(path));
  std::vector<std::string> out;
  for (const EvalAnswerRow& r : rows) out.push_back(r.text);
  return out;
}

// P(ours > theirs) per prompt (0.5 for identical answers, without a judge call; -1 for a failed
// judgment, excluded from the mean), judged under key "<round>/eval/<key_suffix>".
absl::StatusOr<std::vector<double>> JudgeAgainst(const StageContext& ctx, int t,
                                                 const std::vector<std::string>& prompts,
                                                 const std::vector<std::string>& ours,
                                                 const std::vector<std::string>& theirs,
                                                 const std::string& key_suffix, int* failed) {
  std::vector<ComparisonKey> keys;
  std::vector<size_t> judged;  // the prompt of each key
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (ours[i] == theirs[i]) continue;  // identical answers: 0.5 without a judge call
    keys.emplace_back(prompts[i], ours[i], theirs[i]);
    judged.push_back(i);
  }
  SPAR_ASSIGN_OR_RETURN(std::vector<v1::Judgment> got,
                        CompareAll(ctx, t, ctx.Key(t, "eval/" + key_suffix), keys, ctx.Cancelled(),
                                   [&](size_t, size_t) { return ctx.CheckCancelled(); }));
  // As in the judge stage: a spent budget pauses the job, a refused key or too many failures
  // fail it (eval is re-run on resume; the oracle's cache holds what was answered).
  JudgeFailures failures;
  for (const v1::Judgment& jd : got) failures.Add(jd.ok(), jd.code(), jd.error());
  SPAR_RETURN_IF_ERROR(failures.Check(ctx.MaxJudgeFailureRate()));
  std::vector<double> p(prompts.size(), 0.5);
  *failed = 0;
  for (size_t k = 0; k < got.size(); ++k) {
    p[judged[k]] = got[k].ok() ? got[k].p_a_wins() : -1;
    *failed += got[k].ok() ? 0 : 1;
  }
  return p;
}

// Mean of the judged (>= 0) entries; 0.5 when there are none.
double MeanJudged(const std::vector<double>& v) {
  double sum = 0;
  int n = 0;
  for (double x : v) {
    if (x >= 0) {
      sum += x;
      ++n;
    }
  }
  return n > 0 ? sum / n : 0.5;
}

// eval.json of round t from its answers and judged win rates.
struct EvalSummary {
  arith::GreedyScore greedy;
  arith::PairedGreedy vs_base;  // accuracy vs pi_0's, prompt by prompt
  double win_base = 0.5, win_prev = 0.5;
  Interval win_base_ci{0, 1}, win_prev_ci{0, 1};
  double mean_len = 0;
  size_t max_len = 0;
  bool early_stop = false;
};

EvalSummary Summarize(const StageContext& ctx, int t, const std::vector<std::string>& prompts,
                      const std::vector<std::string>& base_texts,
                      const std::vector<std::string>& texts, const std::vector<double>& p_base,
                      const std::vector<double>& p_prev) {
  EvalSummary s;
  s.win_base = MeanJudged(p_base);
  s.win_prev = MeanJudged(p_prev);
  s.win_base_ci = MeanInterval(p_base);
  s.win_prev_ci = MeanInterval(p_prev);
  double len_sum = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    len_sum += static_cast<double>(texts[i].size());
    s.max_len = std::max(s.max_len, texts[i].size());
  }
  s.greedy = arith::ScoreGreedyAnswers(prompts, texts);
  s.vs_base = arith::CompareGreedyAnswers(prompts, base_texts, texts);
  s.mean_len = prompts.empty() ? 0 : len_sum / prompts.size();
  const double stop_below = ctx.spec().eval().early_stop_win_rate();
  s.early_stop = stop_below > 0 && t > 1 && s.win_prev < stop_below;
  return s;
}

// The round on the validation split: what select_best compares.
struct ValidationSummary {
  size_t num_prompts = 0;
  arith::GreedyScore greedy;
  double win_base = 0.5;
  Interval win_base_ci{0, 1};
  int failed = 0;
};

json ValidationJson(const std::optional<ValidationSummary>& v) {
  if (!v.has_value()) return nullptr;
  return {{"num_prompts", v->num_prompts},
          {"greedy_accuracy", v->greedy.accuracy},
          {"greedy_accuracy_ci95", IntervalJson(v->greedy.ci95)},
          {"win_rate_vs_base", v->win_base},
          {"win_rate_vs_base_ci95", IntervalJson(v->win_base_ci)},
          {"failed_judgments", v->failed}};
}

json EvalJson(int t, size_t num_prompts, const EvalSummary& s, int failed,
              const std::optional<ValidationSummary>& v) {
  return {{"round", t},
          {"num_prompts", num_prompts},
          {"greedy_accuracy", s.greedy.accuracy},
          {"greedy_accuracy_ci95", IntervalJson(s.greedy.ci95)},
          {"num_verifiable", s.greedy.verifiable},
          {"greedy_vs_base",
           {{"gained", s.vs_base.gained},
            {"lost", s.vs_base.lost},
            {"mcnemar_p", s.vs_base.mcnemar_p},
            {"accuracy_diff_ci95", IntervalJson(s.vs_base.diff_ci95)}}},
          {"win_rate_vs_base", s.win_base},
          {"win_rate_vs_base_ci95", IntervalJson(s.win_base_ci)},
          {"win_rate_vs_prev", s.win_prev},
          {"win_rate_vs_prev_ci95", IntervalJson(s.win_prev_ci)},
          {"failed_judgments", failed},
          {"mean_response_length_bytes", s.mean_len},
          {"max_response_length_bytes", s.max_len},
          {"early_stop", s.early_stop},
          {"validation", ValidationJson(v)}};
}

// The round summary and, when the stop rule fired, the early stop.
void RecordEval(StageContext& ctx, int t, const EvalSummary& s,
                const std::optional<ValidationSummary>& v) {
  ctx.UpdateJob([&](v1::Job& job) {
    v1::RoundSummary* r = job.mutable_rounds(t - 1);
    r->set_greedy_accuracy(s.greedy.accuracy);
    r->set_win_rate_vs_base(s.win_base);
    r->set_win_rate_vs_prev(s.win_prev);
    r->set_mean_response_length(s.mean_len);
    SetInterval(s.greedy.ci95, r->mutable_greedy_accuracy_ci95());
    SetInterval(s.win_base_ci, r->mutable_win_rate_vs_base_ci95());
    SetInterval(s.win_prev_ci, r->mutable_win_rate_vs_prev_ci95());
    r->set_greedy_gained_vs_base(s.vs_base.gained);
    r->set_greedy_lost_vs_base(s.vs_base.lost);
    r->set_greedy_mcnemar_p_vs_base(s.vs_base.mcnemar_p);
    SetInterval(s.vs_base.diff_ci95, r->mutable_greedy_accuracy_diff_vs_base_ci95());
    r->set_validation_win_rate_vs_base(v.has_value() ? v->win_base : -1);
    r->set_validation_greedy_accuracy(v.has_value() ? v->greedy.accuracy : -1);
  });
  if (!s.early_stop) return;
  ctx.set_early_stopped();
  ctx.Emit(t, "eval", "progress", 1, 1,
           absl::StrFormat("early stop: win rate vs the previous policy %.3f < %.3f", s.win_prev,
                           ctx.spec().eval().early_stop_win_rate()));
}

// pi_0's greedy answers on `split`, once per job (kept in split.base_file).
absl::StatusOr<arith::GreedyScore> EnsureBaseAnswers(StageContext& ctx, const Split& split) {
  if (PathExists(split.base_file)) {
    SPAR_ASSIGN_OR_RETURN(std::vector<EvalAnswerRow> rows,
                          ReadRows<EvalAnswerRow>(split.base_file));
    std::vector<std::string> prompts, texts;
    for (EvalAnswerRow& r : rows) {
      prompts.push_back(std::move(r.prompt));
      texts.push_back(std::move(r.text));
    }
    return arith::ScoreGreedyAnswers(prompts, texts);
  }
  SPAR_ASSIGN_OR_RETURN(std::vector<std::string> prompts, SplitPrompts(ctx, split));
  ctx.Emit(0, "eval", "stage_started", 0, prompts.size(),
           absl::StrCat("greedy answers of the base policy (", split.key, ")"));
  std::vector<std::string> texts;
  SPAR_RETURN_IF_ERROR(Greedy(ctx, ctx.PolicyFor(1), prompts, ctx.Key(0, split.key), &texts));
  SPAR_RETURN_IF_ERROR(WriteRows(split.base_file, AnswerRows(prompts, texts)));
  const arith::GreedyScore g = arith::ScoreGreedyAnswers(prompts, texts);
  ctx.Emit(0, "eval", "stage_finished", prompts.size(), prompts.size(),
           absl::StrFormat("base greedy accuracy %.3f [%.3f, %.3f] on %d %s prompts", g.accuracy,
                           g.ci95.lo, g.ci95.hi, g.verifiable, split.key));
  return g;
}

// Round t's checkpoint on the validation split: greedy answers, accuracy, win rate vs pi_0.
absl::StatusOr<ValidationSummary> Validate(const StageContext& ctx, int t) {
  const RunDir dir = ctx.dir();
  SPAR_ASSIGN_OR_RETURN(std::vector<EvalAnswerRow> base_rows,
                        ReadRows<EvalAnswerRow>(dir.BaseValidation()));
  std::vector<std::string> prompts, base_texts, texts;
  for (const EvalAnswerRow& r : base_rows) {
    prompts.push_back(r.prompt);
    base_texts.push_back(r.text);
  }
  SPAR_RETURN_IF_ERROR(Greedy(ctx, dir.Checkpoint(t), prompts, ctx.Key(t, "validation"), &texts));
  SPAR_RETURN_IF_ERROR(WriteRows(dir.ValidationAnswers(t), AnswerRows(prompts, texts)));
  ValidationSummary v;
  SPAR_ASSIGN_OR_RETURN(std::vector<double> p_base, JudgeAgainst(ctx, t, prompts, texts, base_texts,
                                                                 "validation_vs_base", &v.failed));
  v.num_prompts = prompts.size();
  v.greedy = arith::ScoreGreedyAnswers(prompts, texts);
  v.win_base = MeanJudged(p_base);
  v.win_base_ci = MeanInterval(p_base);
  return v;
}

}  // namespace

absl::Status EnsureBaseEval(StageContext& ctx) {
  SPAR_ASSIGN_OR_RETURN(arith::GreedyScore g, EnsureBaseAnswers(ctx, EvalSplit(ctx)));
  double validation_accuracy = -1;
  if (HasValidation(ctx.spec())) {
    SPAR_ASSIGN_OR_RETURN(arith::GreedyScore v, EnsureBaseAnswers(ctx, ValidationSplit(ctx)));
    validation_accuracy = v.accuracy;
  }
  ctx.UpdateJob([&](v1::Job& job) {
    job.set_base_greedy_accuracy(g.accuracy);
    SetInterval(g.ci95, job.mutable_base_greedy_accuracy_ci95());
    job.set_base_validation_greedy_accuracy(validation_accuracy);
  });
  return absl::OkStatus();
}

absl::Status StageEval(StageContext& ctx, int t) {
  const RunDir dir = ctx.dir();
  SPAR_ASSIGN_OR_RETURN(std::vector<EvalAnswerRow> base_rows,
                        ReadRows<EvalAnswerRow>(dir.BaseEval()));
  std::vector<std::string> prompts, base_texts;
  for (const EvalAnswerRow& r : base_rows) {
    prompts.push_back(r.prompt);
    base_texts.push_back(r.text);
  }
  SPAR_ASSIGN_OR_RETURN(std::vector<std::string> prev_texts, PreviousEvalAnswers(ctx, t));
  if (prev_texts.size() != prompts.size()) {
    return absl::DataLossError("previous round's eval answers do not match the eval prompts");
  }
  std::vector<std::string> texts;
  SPAR_RETURN_IF_ERROR(Greedy(ctx, dir.Checkpoint(t), prompts, ctx.Key(t, "eval"), &texts));
  SPAR_RETURN_IF_ERROR(WriteRows(EvalAnswers(dir, t), AnswerRows(prompts, texts)));
  FaultHold(t, "eval");  // test-only: greedy answers written, nothing judged yet

  // Judged win rates of pi_t vs pi_0 and vs the previous policy on held-out prompts.
  int failed_base = 0, failed_prev = 0;
  SPAR_ASSIGN_OR_RETURN(std::vector<double> p_base,
                        JudgeAgainst(ctx, t, prompts, texts, base_texts, "vs_base", &failed_base));
  std::vector<double> p_prev = p_base;
  if (t > 1) {
    SPAR_ASSIGN_OR_RETURN(
        p_prev, JudgeAgainst(ctx, t, prompts, texts, prev_texts, "vs_prev", &failed_prev));
  }
  std::optional<ValidationSummary> v;
  if (HasValidation(ctx.spec())) {
    SPAR_ASSIGN_OR_RETURN(v, Validate(ctx, t));
  }
  const EvalSummary s = Summarize(ctx, t, prompts, base_texts, texts, p_base, p_prev);
  SPAR_RETURN_IF_ERROR(WriteJsonFileAtomic(
      dir.Eval(t), EvalJson(t, prompts.size(), s, failed_base + failed_prev, v)));
  RecordEval(ctx, t, s, v);
  return absl::OkStatus();
}

}  // namespace spar::orchestrator::internal
