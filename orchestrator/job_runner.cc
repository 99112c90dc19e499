#include "orchestrator/job_runner.h"

#include <algorithm>
#include <cstdlib>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <new>
#include <stdexcept>
#include <set>
#include <thread>
#include <tuple>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "tasks/arith/greedy_score.h"
#include "tasks/arith/problems.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/mpo_defaults.h"
#include "common/stats.h"
#include "common/status_macros.h"
#include "orchestrator/best_round.h"
#include "orchestrator/dno.h"
#include "orchestrator/job_spec.h"
#include "orchestrator/run_dir.h"
#include "orchestrator/start_guard.h"
#include "orchestrator/training_config.h"

namespace spar::orchestrator {
namespace {

using nlohmann::json;

// Test-only fault hook (tests/e2e/kill_test.py): with SPAR_ORCHESTRATOR_FAULT_HOLD_DIR set, a stage
// that reaches its hold point while DIR/hold-<round>-<stage> exists writes DIR/held-<round>-<stage>
// and waits until the hold file is removed, so a test can kill a service while the stage is
// provably in progress (pairs and eval otherwise take milliseconds; judge and train may end
// while a restarted service is still starting). Unset: does nothing.
void FaultHold(int t, const std::string& stage) {
  static const char* dir = std::getenv("SPAR_ORCHESTRATOR_FAULT_HOLD_DIR");
  if (dir == nullptr || *dir == '\0') return;
  const std::string name = absl::StrCat(t, "-", stage);
  const std::string hold = absl::StrCat(dir, "/hold-", name);
  if (!PathExists(hold)) return;
  SPAR_LOG(Warning) << "fault hook: holding round " << t << " stage " << stage;
  absl::Status st = WriteFileAtomic(absl::StrCat(dir, "/held-", name), "");
  if (!st.ok()) SPAR_LOG(Warning) << "fault hook: " << st;
  while (PathExists(hold)) absl::SleepFor(absl::Milliseconds(10));
}

// Runs `fn` on a worker thread, turning an escaped exception into an Internal error (an exception
// leaving a std::thread ends the process).
absl::Status Guarded(const std::function<absl::Status()>& fn) {
  try {
    return fn();
  } catch (const std::bad_alloc& e) {
    return absl::InternalError(absl::StrCat("out of memory (std::bad_alloc): ", e.what()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("unexpected exception: ", e.what()));
  }
}

// Attempts per stage when a service is unavailable (about a minute of backoff in all).
constexpr int kStageAttempts = 8;

uint64_t MixSeed(uint64_t seed, uint64_t round, uint64_t salt) {
  uint64_t h = seed * 0x9E3779B97F4A7C15ULL ^ (round + 0x632BE59BD9B4E019ULL) * 0xBF58476D1CE4E5B9ULL;
  h ^= salt * 0x94D049BB133111EBULL;
  h ^= h >> 31;
  return h;
}

absl::Status WriteStage(const RunDir& dir, int t, const std::string& stage) {
  SPAR_RETURN_IF_ERROR(WriteFileAtomic(dir.Stage(t), stage + "\n"));
  return RecordRunnerProgress(dir.job_dir());  // progress: the crash-loop count restarts
}

// The answered judgments of a judge stage that failed its checks (JobRunner::SaveAnswered).
std::string PartialJudgments(const RunDir& dir, int t) {
  return JoinPath(dir.Round(t), "judgments.partial.jsonl");
}

std::string ReadStage(const RunDir& dir, int t) {
  auto text = ReadFile(dir.Stage(t));
  if (!text.ok()) return "";
  std::string s = *text;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

absl::StatusOr<std::vector<std::string>> ReadPromptFile(const std::string& path) {
  SPAR_ASSIGN_OR_RETURN(std::vector<json> rows, ReadJsonl(path));
  std::vector<std::string> out;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (!rows[i].is_object() || !rows[i].contains("prompt") || !rows[i]["prompt"].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", i + 1, ": expected {\"prompt\": \"...\"}"));
    }
    out.push_back(rows[i]["prompt"].get<std::string>());
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no prompts"));
  return out;
}

// Copies a checkpoint directory's files (used when a round has no pairs to train on).
absl::Status CopyCheckpoint(const std::string& from, const std::string& to) {
  std::string tmp = to + ".tmp-copy";
  SPAR_RETURN_IF_ERROR(RemoveAll(tmp));
  SPAR_RETURN_IF_ERROR(MakeDirs(tmp));
  auto remove_tmp = absl::MakeCleanup([&tmp] { (void)RemoveAll(tmp); });  // on any failure
  SPAR_ASSIGN_OR_RETURN(std::vector<std::string> names, ListDir(from));
  for (const std::string& n : names) {
    if (IsDirectory(JoinPath(from, n))) continue;
    SPAR_ASSIGN_OR_RETURN(std::string data, ReadFile(JoinPath(from, n)));
    SPAR_RETURN_IF_ERROR(WriteFileAtomic(JoinPath(tmp, n), data));
  }
  SPAR_RETURN_IF_ERROR(RemoveAll(to));
  return RenameDurable(tmp, to);
}

json IntervalJson(const Interval& i) { return json::array({i.lo, i.hi}); }

void SetInterval(const Interval& from, v1::Interval* to) {
  to->set_lo(from.lo);
  to->set_hi(from.hi);
}

}  // namespace

JobRunner::JobRunner(std::string job_id, std::string job_dir, v1::JobSpec spec, Ports ports,
                     JobRunnerCallbacks callbacks, const std::atomic<bool>* cancel,
                     std::string data_root)
    : job_id_(std::move(job_id)),
      job_dir_(std::move(job_dir)),
      spec_(std::move(spec)),
      ports_(ports),
      callbacks_(std::move(callbacks)),
      cancel_(cancel),
      data_root_(std::move(data_root)) {}

absl::Status JobRunner::CheckCancelled() const {
  if (cancel_ != nullptr && cancel_->load()) return absl::CancelledError("job cancelled");
  return absl::OkStatus();
}

CancelCheck JobRunner::Cancelled() const {
  return [cancel = cancel_] { return cancel != nullptr && cancel->load(); };
}

void JobRunner::SetJudgeScope(int t, v1::CompareRequest* req) const {
  req->set_job_id(job_id_);
  req->set_round(t);
  *req->mutable_budget() = spec_.judge_budget();
}

void JobRunner::SetJudgeScope(int t, v1::ScoreRequest* req) const {
  req->set_job_id(job_id_);
  req->set_round(t);
  *req->mutable_budget() = spec_.judge_budget();
}

std::string JobRunner::Key(int t, const std::string& stage) const {
  return absl::StrFormat("%s/iter_%03d/%s", job_id_, t, stage);
}

std::string JobRunner::PolicyFor(int t) const {
  if (t <= 1) {
    auto base = ResolveDataPath(spec_.base_model(), data_root_, "base_model");
    return base.ok() ? *base : spec_.base_model();
  }
  return RunDir(job_dir_).Checkpoint(t - 1);
}

std::string JobRunner::MagnetFor(int t) const {
  // pi_0 for rounds 1..M, the checkpoint of round M for rounds M+1..2M, ... (ALGORITHMS.md §5).
  const int m = std::max(1, spec_.has_mpo_magnet_refresh() ? spec_.mpo_magnet_refresh()
                                                            : kDefaultMpoMagnetRefresh);
  const int from = ((t - 1) / m) * m;  // the round whose output policy is the magnet (0 = pi_0)
  return PolicyFor(from + 1);
}

void JobRunner::Emit(int round, const std::string& stage, const std::string& kind, int64_t done,
                     int64_t total, const std::string& message) {
  if (!callbacks_.on_event) return;
  v1::JobEvent ev;
  ev.set_job_id(job_id_);
  ev.set_round(round);
  ev.set_stage(stage);
  ev.set_kind(kind);
  ev.set_done(done);
  ev.set_total(total);
  ev.set_message(message);
  callbacks_.on_event(ev);
}

absl::StatusOr<std::vector<JobRunner::PromptItem>> JobRunner::RoundPrompts(int t) {
  std::vector<PromptItem> all;
  if (spec_.prompts().has_builtin()) {
    for (const arith::ArithProblem& p : arith::MakeArithProblems(arith::ArithSplit::kTrain, -1, spec_.seed())) {
      all.push_back({p.prompt, p.answer});
    }
  } else {
    SPAR_ASSIGN_OR_RETURN(std::string path,
                          ResolveDataPath(spec_.prompts().path(), data_root_, "prompts.path"));
    SPAR_ASSIGN_OR_RETURN(std::vector<json> rows, ReadJsonl(path));
    for (size_t i = 0; i < rows.size(); ++i) {
      const json& r = rows[i];
      if (!r.is_object() || !r.contains("prompt") || !r["prompt"].is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ":", i + 1, ": expected {\"prompt\": \"...\"}"));
      }
      PromptItem item{r["prompt"].get<std::string>(), std::nullopt};
      if (r.contains("gold") && r["gold"].is_string()) item.gold = r["gold"].get<std::string>();
      if (recipe_->NeedsGold() && !item.gold.has_value()) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ":", i + 1, ": algorithm \"", spec_.algorithm(), "\" needs a \"gold\" answer"));
      }
      all.push_back(std::move(item));
    }
    if (all.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no prompts"));
  }
  // A fresh slice per round (ALGORITHMS.md §2: disjoint prompt partitions), wrapping around when
  // the pool is smaller than rounds * prompts_per_round.
  std::vector<PromptItem> out;
  const size_t n = static_cast<size_t>(spec_.prompts_per_round());
  const size_t start = static_cast<size_t>(t - 1) * n;
  for (size_t i = 0; i < n; ++i) out.push_back(all[(start + i) % all.size()]);
  return out;
}

absl::StatusOr<std::vector<std::string>> JobRunner::EvalPrompts() {
  std::vector<std::string> out;
  if (spec_.eval_prompts().has_builtin()) {
    for (const arith::ArithProblem& p :
         arith::MakeArithProblems(arith::ArithSplit::kEval, spec_.eval().num_prompts(), spec_.seed())) {
      out.push_back(p.prompt);
    }
    return out;
  }
  SPAR_ASSIGN_OR_RETURN(std::string path, ResolveDataPath(spec_.eval_prompts().path(), data_root_,
                                                          "eval_prompts.path"));
  SPAR_ASSIGN_OR_RETURN(out, ReadPromptFile(path));
  if (static_cast<int>(out.size()) > spec_.eval().num_prompts()) {
    out.resize(spec_.eval().num_prompts());
  }
  return out;
}

absl::Status JobRunner::Greedy(const std::string& policy, const std::vector<std::string>& prompts,
                               const std::string& key, std::vector<std::string>* texts) {
  v1::GenerateRequest req;
  req.set_policy(policy);
  for (const std::string& p : prompts) req.add_prompts(p);
  req.mutable_params()->set_num_samples(1);
  req.mutable_params()->set_temperature(0.0f);
  req.mutable_params()->set_top_p(1.0f);
  req.mutable_params()->set_max_new_tokens(spec_.eval().max_new_tokens());
  req.mutable_params()->set_seed(spec_.seed());
  req.set_chat_template(spec_.chat_template());
  req.set_idempotency_key(key);
  texts->assign(prompts.size(), "");
  std::vector<bool> seen(prompts.size(), false);
  SPAR_RETURN_IF_ERROR(ports_.sampler->Generate(req, [&](const v1::GenerateResponse& r) {
    if (r.index() < 0 || r.index() >= static_cast<int64_t>(prompts.size()) || r.samples_size() < 1) {
      return absl::InternalError(absl::StrCat("sampler returned a bad result for index ", r.index()));
    }
    (*texts)[r.index()] = r.samples(0).text();
    seen[r.index()] = true;
    return CheckCancelled();
  }, Cancelled()));
  if (std::find(seen.begin(), seen.end(), false) != seen.end()) {
    return absl::UnavailableError("sampler stream ended before every prompt had a result");
  }
  return absl::OkStatus();
}

absl::Status JobRunner::EnsureBaseEval() {
  RunDir dir(job_dir_);
  if (PathExists(dir.BaseEval())) return absl::OkStatus();
  SPAR_ASSIGN_OR_RETURN(std::vector<std::string> prompts, EvalPrompts());
  Emit(0, "eval", "stage_started", 0, prompts.size(), "greedy answers of the base policy");
  std::vector<std::string> texts;
  SPAR_RETURN_IF_ERROR(Greedy(PolicyFor(1), prompts, Key(0, "eval"), &texts));
  std::vector<json> rows;
  for (size_t i = 0; i < prompts.size(); ++i) {
    rows.push_back({{"index", i}, {"prompt", prompts[i]}, {"text", texts[i]}});
  }
  SPAR_RETURN_IF_ERROR(WriteJsonlAtomic(dir.BaseEval(), rows));
  const arith::GreedyScore g = arith::ScoreGreedyAnswers(prompts, texts);
  callbacks_.update_job([&g](v1::Job& job) {
    job.set_base_greedy_accuracy(g.accuracy);
    SetInterval(g.ci95, job.mutable_base_greedy_accuracy_ci95());
  });
  Emit(0, "eval", "stage_finished", prompts.size(), prompts.size(),
       absl::StrFormat("base greedy accuracy %.3f [%.3f, %.3f] on %d prompts", g.accuracy,
                       g.ci95.lo, g.ci95.hi, g.verifiable));
  return absl::OkStatus();
}

absl::Status JobRunner::RetryUnavailable(int t, const std::string& stage,
                                         const std::function<absl::Status()>& fn) {
  absl::Duration backoff = stage_retry_backoff_;
  absl::Status st;
  for (int attempt = 1;; ++attempt) {
    st = fn();
    if (!absl::IsUnavailable(st) || attempt >= kStageAttempts || !CheckCancelled().ok()) break;
    Emit(t, stage, "progress", 0, 0,
         absl::StrFormat("attempt %d failed (%s); retrying the stage", attempt, st.message()));
    SPAR_LOG(Warning) << Key(t, stage) << " attempt " << attempt << ": " << st;
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(8));
  }
  return st;
}

absl::Status JobRunner::Run() {
  SPAR_RETURN_IF_ERROR(RecordRunnerStart(job_dir_).status());
  absl::Status st;
  // The job boundary: no exception ends the server. An allocation failure or any other escaped
  // exception fails this job with the reason (R4); worker threads catch their own.
  try {
    st = RunRounds();
  } catch (const std::bad_alloc& e) {
    st = absl::InternalError(absl::StrCat("out of memory (std::bad_alloc) in round ",
                                          current_round_, ": ", e.what()));
  } catch (const std::exception& e) {
    st = absl::InternalError(absl::StrCat("unexpected exception in round ", current_round_, ": ",
                                          e.what()));
  }
  if (absl::Status cleared = ClearRunnerStarts(job_dir_); !cleared.ok()) {
    SPAR_LOG(Warning) << "job " << job_id_ << ": " << cleared;
  }
  return st;
}

absl::Status JobRunner::RunRounds() {
  SPAR_ASSIGN_OR_RETURN(recipe_, MakeRecipe(spec_));
  SPAR_RETURN_IF_ERROR(CheckCancelled());
  SPAR_RETURN_IF_ERROR(RetryUnavailable(0, "eval", [this] { return EnsureBaseEval(); }));
  for (int t = 1; t <= spec_.rounds() && !early_stopped_; ++t) {
    SPAR_RETURN_IF_ERROR(CheckCancelled());
    current_round_ = t;
    SPAR_RETURN_IF_ERROR(RunRound(t));
  }
  return absl::OkStatus();
}

absl::Status JobRunner::RunRound(int t) {
  RunDir dir(job_dir_);
  SPAR_RETURN_IF_ERROR(MakeDirs(dir.Round(t)));
  std::string done = ReadStage(dir, t);
  int next = StageIndex(done) + 1;
  if (next >= kNumStages) {  // round already complete (a resumed job): re-apply the stop rule
    auto eval = ReadJsonFile(dir.Eval(t));
    if (eval.ok() && eval->contains("early_stop") && (*eval)["early_stop"].get<bool>()) {
      early_stopped_ = true;
    }
    return UpdateBestRound();  // the link may predate a crash right after this round's eval
  }
  absl::Time started = absl::Now();
  callbacks_.update_job([t](v1::Job& job) {
    job.set_current_round(t);
    while (job.rounds_size() < t) job.add_rounds()->set_round(job.rounds_size());
  });
  const std::string policy = PolicyFor(t);
  for (int s = next; s < kNumStages; ++s) {
    SPAR_RETURN_IF_ERROR(CheckCancelled());
    const std::string stage = kStages[s];
    callbacks_.update_job([&](v1::Job& job) { job.set_current_stage(stage); });
    Emit(t, stage, "stage_started", 0, 0);
    absl::Status st;
    // A service that went away mid-stage (UNAVAILABLE: killed, restarting) costs a re-run of the
    // stage, not the job: outputs are written only when a stage is whole, samples are a pure
    // function of the seeds, and the oracle's cache keeps judged pairs from being paid twice.
    st = RetryUnavailable(t, stage, [&] {
      switch (s) {
        case 0:
          if (!pipeline_judging_) return StageSample(t, policy);
          // Pipelined: sample and judge together (sample's STAGE marker is written when sampling
          // is whole, so a retry after it only judges; the oracle's cache makes that free).
          if (ReadStage(dir, t) == "sample") return StageJudge(t);
          return StageSampleAndJudge(t, policy);
        case 1: return StageJudge(t);
        case 2: return StagePairs(t);
        case 3: return StageTrain(t, policy);
        default: return StageEval(t);
      }
    });
    if (!st.ok()) {
      const std::string failed =
          s == 0 && pipeline_judging_ && ReadStage(dir, t) == "sample" ? "judge" : stage;
      return absl::Status(st.code(), absl::StrFormat("round %d stage %s: %s", t, failed,
                                                     st.message()));
    }
    if (s == 0 && pipeline_judging_) {
      // The judge stage finished with it: record both and go on with pairs.
      ++s;
      const std::string judge = kStages[s];
      SPAR_RETURN_IF_ERROR(WriteStage(dir, t, judge));
      callbacks_.update_job([&](v1::Job& job) { job.mutable_rounds(t - 1)->set_stage(judge); });
      Emit(t, judge, "stage_finished", 1, 1);
      continue;
    }
    SPAR_RETURN_IF_ERROR(WriteStage(dir, t, stage));
    callbacks_.update_job([&](v1::Job& job) { job.mutable_rounds(t - 1)->set_stage(stage); });
    Emit(t, stage, "stage_finished", 1, 1);
  }
  SPAR_RETURN_IF_ERROR(UpdateBestRound());
  double seconds = absl::ToDoubleSeconds(absl::Now() - started);
  callbacks_.update_job([&](v1::Job& job) {
    v1::RoundSummary* r = job.mutable_rounds(t - 1);
    r->set_seconds(r->seconds() + seconds);
  });
  Emit(t, "eval", "round_finished", 1, 1);
  return absl::OkStatus();
}

v1::GenerateRequest JobRunner::SampleRequest(int t, const std::string& policy,
                                             const std::vector<PromptItem>& items) const {
  v1::GenerateRequest req;
  req.set_policy(policy);
  for (const PromptItem& it : items) req.add_prompts(it.prompt);
  *req.mutable_params() = spec_.sampling();
  req.mutable_params()->set_seed(MixSeed(spec_.sampling().seed(), t, 1));
  req.set_chat_template(spec_.chat_template());
  req.set_idempotency_key(Key(t, "sample"));
  return req;
}

absl::StatusOr<json> JobRunner::SampleRow(const v1::GenerateResponse& r,
                                          const std::vector<PromptItem>& items) const {
  if (r.index() < 0 || r.index() >= static_cast<int64_t>(items.size())) {
    return absl::InternalError(absl::StrCat("sampler returned index ", r.index()));
  }
  json samples = json::array();
  for (const v1::Sample& s : r.samples()) {
    samples.push_back({{"text", s.text()}, {"logprob", s.logprob()}, {"finished", s.finished()},
                       {"num_tokens", s.token_ids_size()},
                       {"token_ids", json(std::vector<int32_t>(s.token_ids().begin(),
                                                               s.token_ids().end()))},
                       {"token_logprobs", json(std::vector<double>(s.token_logprobs().begin(),
                                                                   s.token_logprobs().end()))}});
  }
  const PromptItem& item = items[r.index()];
  json row = {{"index", r.index()}, {"prompt", item.prompt}, {"samples", samples}};
  if (item.gold.has_value()) row["gold"] = *item.gold;
  return row;
}

void JobRunner::SampleFinished(int t, size_t num_prompts) {
  callbacks_.update_job([&](v1::Job& job) {
    v1::RoundSummary* r = job.mutable_rounds(t - 1);
    r->set_num_prompts(static_cast<int>(num_prompts));
    r->set_num_samples(static_cast<int>(num_prompts) * spec_.sampling().num_samples());
  });
}

absl::Status JobRunner::StageSample(int t, const std::string& policy) {
  RunDir dir(job_dir_);
  SPAR_ASSIGN_OR_RETURN(std::vector<PromptItem> items, RoundPrompts(t));
  v1::GenerateRequest req = SampleRequest(t, policy, items);
  std::vector<json> rows(items.size());
  size_t received = 0;
  int64_t total = static_cast<int64_t>(items.size());
  SPAR_RETURN_IF_ERROR(ports_.sampler->Generate(req, [&](const v1::GenerateResponse& r) {
    SPAR_ASSIGN_OR_RETURN(rows[r.index()], SampleRow(r, items));
    ++received;
    if (received % 32 == 0 || received == items.size()) {
      Emit(t, "sample", "progress", received, total);
    }
    return CheckCancelled();
  }, Cancelled()));
  if (received != items.size()) {
    return absl::UnavailableError(absl::StrFormat("sampler returned %d of %d prompts", received,
                                                  items.size()));
  }
  SPAR_RETURN_IF_ERROR(WriteJsonlAtomic(dir.Samples(t), rows));
  SampleFinished(t, items.size());
  return absl::OkStatus();
}

namespace {

// The comparisons of one sample row: each (i, j) the recipe wants judged, as a distinct text pair
// (a <= b) and whether (y_i, y_j) is that pair flipped. Each distinct text pair of a prompt is
// judged once (samples repeat: K = 4 may hold only two distinct answers); every (i, j) with those
// texts takes the judgment, flipped when the texts come in the other order.
struct RowComparison {
  int i, j;
  bool flipped;
  std::tuple<std::string, std::string, std::string> key;
};

PromptRound RoundFromRow(const json& row) {
  PromptRound pr{row["prompt"].get<std::string>(), std::nullopt, {}};
  if (row.contains("gold")) pr.gold = row["gold"].get<std::string>();
  for (const json& s : row["samples"]) {
    pr.samples.push_back(s["text"].get<std::string>());
    pr.finished.push_back(s.value("finished", true));  // absent in hand-written files: finished
  }
  return pr;
}

std::vector<RowComparison> RowComparisons(const Recipe& recipe, const json& row) {
  const PromptRound pr = RoundFromRow(row);
  // Candidate indices: the K samples, then the teacher (DNO-Prct) when the recipe adds it.
  const std::vector<std::string> candidates = recipe.Candidates(pr);
  std::vector<RowComparison> out;
  for (const PairRef& p : recipe.PairsToJudge(pr)) {
    const std::string& a = candidates[p.i];
    const std::string& b = candidates[p.j];
    const bool flipped = b < a;
    out.push_back({p.i, p.j, flipped, std::make_tuple(pr.prompt, flipped ? b : a,
                                                      flipped ? a : b)});
  }
  return out;
}

// Side-by-side: the candidates of one sample row the recipe wants scored (indices into
// Candidates()) and the question they make; no texts = nothing to score.
struct RowScore {
  std::vector<std::string> candidates;
  std::vector<int> shown;
  std::pair<std::string, std::vector<std::string>> key;
};

RowScore RowScoreOf(const Recipe& recipe, const json& row) {
  const PromptRound pr = RoundFromRow(row);
  RowScore out;
  out.candidates = recipe.Candidates(pr);
  out.shown = recipe.CandidatesToScore(pr);
  out.key.first = pr.prompt;
  for (int i : out.shown) out.key.second.push_back(out.candidates[i]);
  return out;
}

// The judge's failures over one stage's distinct judgments (Judgment.code / ScoreResult.code;
// never the error's text). Check() decides what they mean for the job.
struct JudgeFailures {
  int total = 0;
  int failed = 0;
  std::string first_error;
  std::string budget_error;   // first RESOURCE_EXHAUSTED: a budget or quota is spent
  absl::StatusCode refused = absl::StatusCode::kOk;  // UNAUTHENTICATED / PERMISSION_DENIED
  std::string refused_error;

  void Add(bool ok, int code, const std::string& error) {
    ++total;
    if (ok) return;
    ++failed;
    if (first_error.empty()) first_error = error;
    const auto c = static_cast<absl::StatusCode>(code);
    if (c == absl::StatusCode::kResourceExhausted && budget_error.empty()) budget_error = error;
    if ((c == absl::StatusCode::kUnauthenticated || c == absl::StatusCode::kPermissionDenied) &&
        refused == absl::StatusCode::kOk) {
      refused = c;
      refused_error = error;
    }
  }

  // ResourceExhausted (the job pauses; ResumeJob with a raised budget continues) for a spent
  // budget; the refusal's own code (the job fails) for a refused key; FailedPrecondition when
  // more than max_rate of the judgments failed (the round is not done).
  absl::Status Check(double max_rate) const {
    if (!budget_error.empty()) {
      return absl::ResourceExhaustedError(absl::StrCat("judge: ", budget_error));
    }
    if (refused != absl::StatusCode::kOk) {
      return absl::Status(refused, absl::StrCat("the judge refused the API key (HTTP 401/403): ",
                                                refused_error, "; fix the key, then ResumeJob"));
    }
    if (total == 0 || failed <= max_rate * total) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrFormat(
        "%d of %d judgments failed (%.1f%%, above judge.max_failure_rate %.1f%%); first error: %s; "
        "ResumeJob once the judge is fixed re-asks only the failed ones",
        failed, total, 100.0 * failed / total, 100.0 * max_rate, first_error));
  }
};

}  // namespace

double JobRunner::MaxJudgeFailureRate() const {
  return spec_.judge().has_max_failure_rate() ? spec_.judge().max_failure_rate()
                                              : kDefaultJudgeMaxFailureRate;
}

absl::Status JobRunner::ScoreRows(int t, const std::vector<json>& rows, ScoredMap* scored) {
  RunDir dir(job_dir_);
  std::vector<RowScore> per_row;
  per_row.reserve(rows.size());
  v1::ScoreRequest req;
  req.set_idempotency_key(Key(t, "judge"));
  SetJudgeScope(t, &req);
  std::vector<ScoreKey> sent;
  std::set<ScoreKey> asked;
  for (const json& row : rows) {
    per_row.push_back(RowScoreOf(*recipe_, row));
    const ScoreKey& key = per_row.back().key;
    if (key.second.empty() || scored->count(key) > 0 || !asked.insert(key).second) continue;
    v1::ScoreItem* item = req.add_items();
    item->set_prompt(key.first);
    for (const std::string& text : key.second) item->add_responses(text);
    sent.push_back(key);
  }
  std::vector<bool> seen(sent.size(), false);
  size_t received = 0;
  const int64_t total = static_cast<int64_t>(sent.size());
  if (total > 0) {
    SPAR_RETURN_IF_ERROR(ports_.oracle->Score(req, [&](const v1::ScoreResult& r) {
      if (r.index() < 0 || r.index() >= total || seen[r.index()]) {
        return absl::InternalError(
            absl::StrCat("oracle returned score index ", r.index(), " twice or out of range"));
      }
      if (r.ok() && r.scores_size() != static_cast<int>(sent[r.index()].second.size())) {
        return absl::InternalError(absl::StrCat("oracle returned ", r.scores_size(),
                                                " scores for ", sent[r.index()].second.size(),
                                                " responses"));
      }
      seen[r.index()] = true;
      (*scored)[sent[r.index()]] = r;
      ++received;
      if (received % 64 == 0 || static_cast<int64_t>(received) == total) {
        Emit(t, "judge", "progress", received, total);
      }
      return CheckCancelled();
    }, Cancelled()));
  }
  if (static_cast<int64_t>(received) != total) {
    return absl::UnavailableError(
        absl::StrFormat("oracle returned %d of %d score results", received, total));
  }
  // One row per prompt, in prompt order: every candidate's score (null when not shown: a defect),
  // which candidates were shown and in what order, the judge's answer.
  std::vector<json> out;
  out.reserve(rows.size());
  for (size_t k = 0; k < rows.size(); ++k) {
    const RowScore& rs = per_row[k];
    json o = {{"index", rows[k]["index"].get<int64_t>()}, {"scoring", "side_by_side"}};
    json scores = json::array();
    for (size_t c = 0; c < rs.candidates.size(); ++c) scores.push_back(nullptr);
    if (rs.key.second.empty()) {
      o["ok"] = true;
      o["shown"] = json::array();
      o["order"] = json::array();
      o["scores"] = std::move(scores);
      o["verdict"] = "";
      out.push_back(std::move(o));
      continue;
    }
    const v1::ScoreResult& r = scored->at(rs.key);
    o["ok"] = r.ok();
    o["shown"] = rs.shown;
    o["order"] = std::vector<int>(r.order().begin(), r.order().end());
    if (r.ok()) {
      // Duplicates of a shown text take its score.
      std::map<std::string, int> by_text;
      for (size_t s = 0; s < rs.shown.size(); ++s) by_text[rs.key.second[s]] = r.scores(s);
      // (Defects are decided by text, so no defect shares a shown text.)
      for (size_t c = 0; c < rs.candidates.size(); ++c) {
        auto it = by_text.find(rs.candidates[c]);
        if (it != by_text.end()) scores[c] = it->second;
      }
    }
    o["scores"] = std::move(scores);
    o["verdict"] = r.verdict();
    if (!r.ok()) o["error"] = r.error();
    out.push_back(std::move(o));
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
  SPAR_RETURN_IF_ERROR(failures.Check(MaxJudgeFailureRate()));
  return WriteJsonlAtomic(dir.Judgments(t), out);
}

absl::Status JobRunner::JudgeRows(int t, const std::vector<json>& rows, JudgedMap* judged) {
  RunDir dir(job_dir_);
  // The comparison list in prompt order (whatever order the judgments were obtained in), so the
  // file is the same bytes pipelined or not.
  struct Ref {
    int64_t prompt_index;
    int i, j;
    size_t comparison;
    bool flipped;
  };
  std::vector<Ref> refs;
  std::vector<ComparisonKey> comparisons;
  std::map<ComparisonKey, size_t> unique;
  for (const json& row : rows) {
    for (RowComparison& c : RowComparisons(*recipe_, row)) {
      auto it = unique.find(c.key);
      if (it == unique.end()) {
        comparisons.push_back(c.key);
        it = unique.emplace(std::move(c.key), comparisons.size() - 1).first;
      }
      refs.push_back({row["index"].get<int64_t>(), c.i, c.j, it->second, c.flipped});
    }
  }
  v1::CompareRequest req;
  req.set_idempotency_key(Key(t, "judge"));
  SetJudgeScope(t, &req);
  std::vector<size_t> sent;  // comparison index of each request entry
  for (size_t c = 0; c < comparisons.size(); ++c) {
    if (judged->count(comparisons[c]) > 0) continue;
    v1::Comparison* cmp = req.add_comparisons();
    cmp->set_prompt(std::get<0>(comparisons[c]));
    cmp->set_response_a(std::get<1>(comparisons[c]));
    cmp->set_response_b(std::get<2>(comparisons[c]));
    sent.push_back(c);
  }
  std::vector<bool> seen(sent.size(), false);
  size_t received = 0;
  const int64_t total = static_cast<int64_t>(sent.size());
  if (total > 0) {
    SPAR_RETURN_IF_ERROR(ports_.oracle->Compare(req, [&](const v1::Judgment& jd) {
      if (jd.index() < 0 || jd.index() >= total || seen[jd.index()]) {
        return absl::InternalError(
            absl::StrCat("oracle returned index ", jd.index(), " twice or out of range"));
      }
      seen[jd.index()] = true;
      (*judged)[comparisons[sent[jd.index()]]] = jd;
      ++received;
      FaultHold(t, "judge");  // test-only: some judged, not all
      if (received % 256 == 0 || static_cast<int64_t>(received) == total) {
        Emit(t, "judge", "progress", received, total);
      }
      return CheckCancelled();
    }, Cancelled()));
  }
  if (static_cast<int64_t>(received) != total) {
    return absl::UnavailableError(absl::StrFormat("oracle returned %d of %d judgments", received,
                                                  total));
  }
  std::vector<json> out;
  out.reserve(refs.size());
  for (const Ref& r : refs) {
    const v1::Judgment& jd = judged->at(comparisons[r.comparison]);
    // p_a_wins is P(y_i > y_j): the judged pair showed (y_j, y_i) when flipped.
    double p = r.flipped ? 1.0 - jd.p_a_wins() : jd.p_a_wins();
    json row = {{"index", r.prompt_index}, {"i", r.i}, {"j", r.j}, {"ok", jd.ok()},
                {"p_a_wins", p}, {"comparison", r.comparison}, {"flipped", r.flipped},
                {"p_ab", jd.p_ab()}, {"p_ba", jd.p_ba()},
                {"verdict_ab", jd.verdict_ab()}, {"verdict_ba", jd.verdict_ba()}};
    if (!jd.ok()) row["error"] = jd.error();
    out.push_back(std::move(row));
  }
  // A spent budget pauses, a refused key or too many failures fail the stage, instead of
  // training on a partial set. What was answered is kept (judgments.partial.jsonl) so that the
  // resumed stage asks only the rest, whatever the oracle's cache holds.
  JudgeFailures failures;
  for (const ComparisonKey& key : comparisons) {
    const v1::Judgment& jd = judged->at(key);
    failures.Add(jd.ok(), jd.code(), jd.error());
  }
  if (absl::Status st = failures.Check(MaxJudgeFailureRate()); !st.ok()) {
    SPAR_RETURN_IF_ERROR(SaveAnswered(t, *judged));
    return st;
  }
  SPAR_RETURN_IF_ERROR(WriteJsonlAtomic(dir.Judgments(t), out));
  return RemoveAll(PartialJudgments(dir, t));
}

absl::Status JobRunner::StageJudge(int t) {
  RunDir dir(job_dir_);
  SPAR_ASSIGN_OR_RETURN(std::vector<json> samples, ReadJsonl(dir.Samples(t)));
  if (recipe_->ScoresSideBySide()) {
    ScoredMap scored;
    return ScoreRows(t, samples, &scored);
  }
  SPAR_ASSIGN_OR_RETURN(JudgedMap judged, LoadAnswered(t));
  return JudgeRows(t, samples, &judged);
}

absl::Status JobRunner::SaveAnswered(int t, const JudgedMap& judged) const {
  std::vector<json> rows;
  for (const auto& [key, jd] : judged) {
    if (!jd.ok()) continue;
    rows.push_back({{"prompt", std::get<0>(key)}, {"response_a", std::get<1>(key)},
                    {"response_b", std::get<2>(key)}, {"p_a_wins", jd.p_a_wins()},
                    {"p_ab", jd.p_ab()}, {"p_ba", jd.p_ba()}, {"verdict_ab", jd.verdict_ab()},
                    {"verdict_ba", jd.verdict_ba()}});
  }
  return WriteJsonlAtomic(PartialJudgments(RunDir(job_dir_), t), rows);
}

absl::StatusOr<JobRunner::JudgedMap> JobRunner::LoadAnswered(int t) const {
  JudgedMap judged;
  const std::string path = PartialJudgments(RunDir(job_dir_), t);
  if (!PathExists(path)) return judged;
  SPAR_ASSIGN_OR_RETURN(std::vector<json> rows, ReadJsonl(path));
  try {
    for (const json& r : rows) {
      v1::Judgment jd;
      jd.set_ok(true);
      jd.set_p_a_wins(r.at("p_a_wins").get<double>());
      jd.set_p_ab(r.at("p_ab").get<double>());
      jd.set_p_ba(r.at("p_ba").get<double>());
      jd.set_verdict_ab(r.at("verdict_ab").get<std::string>());
      jd.set_verdict_ba(r.at("verdict_ba").get<std::string>());
      judged[std::make_tuple(r.at("prompt").get<std::string>(),
                             r.at("response_a").get<std::string>(),
                             r.at("response_b").get<std::string>())] = std::move(jd);
    }
  } catch (const json::exception& e) {
    return absl::DataLossError(absl::StrCat(path, ": ", e.what()));
  }
  return judged;
}

absl::Status JobRunner::StageSampleAndJudge(int t, const std::string& policy) {
  RunDir dir(job_dir_);
  SPAR_ASSIGN_OR_RETURN(std::vector<PromptItem> items, RoundPrompts(t));
  const v1::GenerateRequest req = SampleRequest(t, policy, items);
  const int64_t total = static_cast<int64_t>(items.size());

  // Worker threads (the sampler stream, one per judge chunk) only hand results to this thread
  // through `sh`; every callback, file write and decision happens here.
  // A chunk is comparisons (pairwise) or prompts to score (side_by_side), never both.
  struct Chunk {
    std::vector<ComparisonKey> keys;
    std::vector<v1::Judgment> judgments;
    std::vector<ScoreKey> score_keys;
    std::vector<v1::ScoreResult> scores;
    absl::Status status;
  };
  const bool side_by_side = recipe_->ScoresSideBySide();
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<v1::GenerateResponse> results;
    bool sampling_done = false;
    absl::Status sampling_status;
    std::deque<Chunk> chunks;
    std::atomic<bool> abort{false};
  } sh;
  auto notify = [&sh](const std::function<void()>& fn) {
    {
      std::lock_guard<std::mutex> lock(sh.mu);
      fn();
    }
    sh.cv.notify_all();
  };
  // The streams below end soon after the round stops or the job is cancelled.
  const CancelCheck round_stopped = [&] { return sh.abort.load() || !CheckCancelled().ok(); };
  std::thread sampler_thread([&] {
    absl::Status st = Guarded([&] {
      return ports_.sampler->Generate(req, [&](const v1::GenerateResponse& r) {
        if (sh.abort.load()) return absl::CancelledError("round stopped");
        notify([&] { sh.results.push_back(r); });
        return CheckCancelled();
      }, round_stopped);
    });
    notify([&] {
      sh.sampling_done = true;
      sh.sampling_status = st;
    });
  });
  std::vector<std::thread> judges;
  int in_flight = 0, chunk_no = 0;
  auto dispatch = [&](std::vector<ComparisonKey> keys) {
    ++in_flight;
    const std::string key = absl::StrFormat("%s/%04d", Key(t, "judge"), chunk_no++);
    judges.emplace_back([this, t, &sh, &notify, &round_stopped, key,
                         keys = std::move(keys)]() mutable {
      v1::CompareRequest creq;
      creq.set_idempotency_key(key);
      SetJudgeScope(t, &creq);
      for (const ComparisonKey& k : keys) {
        v1::Comparison* c = creq.add_comparisons();
        c->set_prompt(std::get<0>(k));
        c->set_response_a(std::get<1>(k));
        c->set_response_b(std::get<2>(k));
      }
      Chunk ch;
      ch.judgments.resize(keys.size());
      std::vector<bool> seen(keys.size(), false);
      size_t received = 0;
      ch.status = Guarded([&] { return ports_.oracle->Compare(creq, [&](const v1::Judgment& jd) {
        if (sh.abort.load()) return absl::CancelledError("round stopped");
        if (jd.index() < 0 || jd.index() >= static_cast<int64_t>(keys.size()) ||
            seen[jd.index()]) {
          return absl::InternalError(
              absl::StrCat("oracle returned index ", jd.index(), " twice or out of range"));
        }
        seen[jd.index()] = true;
        ch.judgments[jd.index()] = jd;
        ++received;
        return CheckCancelled();
      }, round_stopped); });
      if (ch.status.ok() && received != keys.size()) {
        ch.status = absl::UnavailableError(
            absl::StrFormat("oracle returned %d of %d judgments", received, keys.size()));
      }
      ch.keys = std::move(keys);
      notify([&] { sh.chunks.push_back(std::move(ch)); });
    });
  };
  auto dispatch_scores = [&](std::vector<ScoreKey> keys) {
    ++in_flight;
    const std::string key = absl::StrFormat("%s/%04d", Key(t, "judge"), chunk_no++);
    judges.emplace_back([this, t, &sh, &notify, &round_stopped, key,
                         keys = std::move(keys)]() mutable {
      v1::ScoreRequest sreq;
      sreq.set_idempotency_key(key);
      SetJudgeScope(t, &sreq);
      for (const ScoreKey& k : keys) {
        v1::ScoreItem* item = sreq.add_items();
        item->set_prompt(k.first);
        for (const std::string& text : k.second) item->add_responses(text);
      }
      Chunk ch;
      ch.scores.resize(keys.size());
      std::vector<bool> seen(keys.size(), false);
      size_t received = 0;
      ch.status = Guarded([&] { return ports_.oracle->Score(sreq, [&](const v1::ScoreResult& r) {
        if (sh.abort.load()) return absl::CancelledError("round stopped");
        if (r.index() < 0 || r.index() >= static_cast<int64_t>(keys.size()) || seen[r.index()]) {
          return absl::InternalError(
              absl::StrCat("oracle returned score index ", r.index(), " twice or out of range"));
        }
        if (r.ok() && r.scores_size() != static_cast<int>(keys[r.index()].second.size())) {
          return absl::InternalError(absl::StrCat("oracle returned ", r.scores_size(),
                                                  " scores for ",
                                                  keys[r.index()].second.size(), " responses"));
        }
        seen[r.index()] = true;
        ch.scores[r.index()] = r;
        ++received;
        return CheckCancelled();
      }, round_stopped); });
      if (ch.status.ok() && received != keys.size()) {
        ch.status = absl::UnavailableError(
            absl::StrFormat("oracle returned %d of %d score results", received, keys.size()));
      }
      ch.score_keys = std::move(keys);
      notify([&] { sh.chunks.push_back(std::move(ch)); });
    });
  };

  std::vector<json> rows(items.size());
  size_t sampled = 0;
  std::set<ComparisonKey> requested;
  std::deque<ComparisonKey> pending;
  JudgedMap judged;
  std::set<ScoreKey> requested_scores;
  std::deque<ScoreKey> pending_scores;
  ScoredMap scored;
  absl::Status sample_error, judge_error;
  bool sampling_finished = false, judge_started = false;
  for (;;) {
    std::deque<v1::GenerateResponse> got;
    std::deque<Chunk> finished;
    bool sampling_ended_now = false;
    absl::Status sampling_status;
    {
      std::unique_lock<std::mutex> lock(sh.mu);
      sh.cv.wait(lock, [&] {
        return !sh.results.empty() || !sh.chunks.empty() ||
               (sh.sampling_done && !sampling_finished);
      });
      got.swap(sh.results);
      finished.swap(sh.chunks);
      if (sh.sampling_done && !sampling_finished) {
        sampling_ended_now = true;
        sampling_status = sh.sampling_status;
      }
    }
    for (const v1::GenerateResponse& r : got) {
      if (!sample_error.ok()) break;
      absl::StatusOr<json> row = SampleRow(r, items);
      if (!row.ok()) {
        sample_error = row.status();
        break;
      }
      if (rows[r.index()].is_null()) ++sampled;
      rows[r.index()] = *std::move(row);
      if (sampled % 32 == 0 || static_cast<int64_t>(sampled) == total) {
        Emit(t, "sample", "progress", sampled, total);
      }
      if (side_by_side) {
        RowScore rs = RowScoreOf(*recipe_, rows[r.index()]);
        if (!rs.key.second.empty() && requested_scores.insert(rs.key).second) {
          pending_scores.push_back(std::move(rs.key));
        }
        continue;
      }
      for (RowComparison& c : RowComparisons(*recipe_, rows[r.index()])) {
        if (requested.insert(c.key).second) pending.push_back(std::move(c.key));
      }
    }
    for (Chunk& ch : finished) {
      --in_flight;
      if (!ch.status.ok()) {
        if (judge_error.ok()) judge_error = ch.status;
        continue;
      }
      for (size_t k = 0; k < ch.keys.size(); ++k) judged[ch.keys[k]] = ch.judgments[k];
      for (size_t k = 0; k < ch.score_keys.size(); ++k) scored[ch.score_keys[k]] = ch.scores[k];
      if (sampling_finished) FaultHold(t, "judge");  // test-only: sampled, judging under way
      // Judge progress while sampling still runs shows the overlap (message: prompts sampled).
      Emit(t, "judge", "progress", judged.size() + scored.size(),
           requested.size() + requested_scores.size(),
           absl::StrFormat("%d of %d prompts sampled", sampled, total));
    }
    if (sampling_ended_now) {
      sampling_finished = true;
      if (sample_error.ok()) sample_error = sampling_status;
      if (sample_error.ok() && static_cast<int64_t>(sampled) != total) {
        sample_error = absl::UnavailableError(
            absl::StrFormat("sampler returned %d of %d prompts", sampled, total));
      }
      if (sample_error.ok()) {
        // Sampling is whole: its output and marker, exactly as the unpipelined stage writes them.
        sample_error = WriteJsonlAtomic(dir.Samples(t), rows);
        if (sample_error.ok()) sample_error = WriteStage(dir, t, "sample");
        if (sample_error.ok()) {
          SampleFinished(t, items.size());
          callbacks_.update_job([&](v1::Job& job) {
            job.mutable_rounds(t - 1)->set_stage("sample");
            job.set_current_stage("judge");
          });
          Emit(t, "sample", "stage_finished", 1, 1);
        }
      }
    }
    if (!sample_error.ok()) break;
    if (!CheckCancelled().ok()) {
      judge_error = CheckCancelled();
      if (!sampling_finished) sample_error = judge_error;
      break;
    }
    while (judge_error.ok() && !(pending.empty() && pending_scores.empty()) &&
           in_flight < judge_in_flight_ &&
           (static_cast<int>(pending.size() + pending_scores.size()) >= judge_chunk_ ||
            in_flight == 0 || sampling_finished)) {
      if (!judge_started) {
        judge_started = true;
        Emit(t, "judge", "stage_started", 0, 0,
             sampling_finished ? "" : "pipelined: judging while sampling continues");
      }
      if (side_by_side) {
        std::vector<ScoreKey> keys;
        while (!pending_scores.empty() && static_cast<int>(keys.size()) < judge_chunk_) {
          keys.push_back(std::move(pending_scores.front()));
          pending_scores.pop_front();
        }
        dispatch_scores(std::move(keys));
        continue;
      }
      std::vector<ComparisonKey> keys;
      while (!pending.empty() && static_cast<int>(keys.size()) < judge_chunk_) {
        keys.push_back(std::move(pending.front()));
        pending.pop_front();
      }
      dispatch(std::move(keys));
    }
    if (sampling_finished && in_flight == 0) break;
  }
  sh.abort.store(true);
  sampler_thread.join();
  for (std::thread& th : judges) th.join();
  if (!sample_error.ok()) return sample_error;
  if (!judge_error.ok()) return judge_error;
  if (!judge_started) Emit(t, "judge", "stage_started", 0, 0);
  if (side_by_side) return ScoreRows(t, rows, &scored);
  return JudgeRows(t, rows, &judged);
}

namespace {

// One pairs.jsonl row (before its source_index / source_round). Side-by-side scores 0..6 go to
// the trainer's win-rate scale [0, 1] (score / 6), with the raw scores too. A response whose text
// is in `unfinished` (cut at max_new_tokens) is marked so that the trainer adds no EOS.
json PairJson(const PreferencePairRow& p, bool side_by_side,
              const std::set<std::string>& unfinished) {
  const double scale = side_by_side ? 6.0 : 1.0;
  json row = {{"prompt", p.prompt},
              {"chosen", p.chosen},
              {"rejected", p.rejected},
              {"chosen_win_rate", p.chosen_win_rate / scale},
              {"rejected_win_rate", p.rejected_win_rate / scale}};
  if (side_by_side) {
    row["chosen_score"] = static_cast<int>(p.chosen_win_rate);
    row["rejected_score"] = static_cast<int>(p.rejected_win_rate);
  }
  if (p.p.has_value()) row["p"] = *p.p;
  row["chosen_finished"] = p.chosen_finished && unfinished.count(p.chosen) == 0;
  row["rejected_finished"] = p.rejected_finished && unfinished.count(p.rejected) == 0;
  return row;
}

}  // namespace

absl::Status JobRunner::StagePairs(int t) {
  RunDir dir(job_dir_);
  SPAR_ASSIGN_OR_RETURN(std::vector<json> samples, ReadJsonl(dir.Samples(t)));
  SPAR_ASSIGN_OR_RETURN(std::vector<json> judgments, ReadJsonl(dir.Judgments(t)));
  const bool side_by_side = recipe_->ScoresSideBySide();
  std::map<int64_t, std::vector<PairJudgment>> by_prompt;
  // side_by_side: each prompt's candidate scores (-1: not scored); absent when scoring failed.
  std::map<int64_t, std::vector<int>> scores_by_prompt;
  int failed = 0;
  for (const json& j : judgments) {
    bool ok = j["ok"].get<bool>();
    failed += ok ? 0 : 1;
    if (side_by_side) {
      if (!j.contains("scores")) {
        return absl::DataLossError(absl::StrCat(dir.Judgments(t), ": prompt ", j.value("index", -1),
                                                " has no scores (not a side_by_side file)"));
      }
      if (!ok) continue;
      std::vector<int>& sc = scores_by_prompt[j["index"].get<int64_t>()];
      for (const json& v : j["scores"]) sc.push_back(v.is_null() ? -1 : v.get<int>());
      continue;
    }
    by_prompt[j["index"].get<int64_t>()].push_back(
        {j["i"].get<int>(), j["j"].get<int>(), j["p_a_wins"].get<double>(), ok});
  }
  std::vector<json> rows;
  int dropped_empty = 0;
  for (const json& row : samples) {
    const PromptRound pr = RoundFromRow(row);
    const std::set<std::string> unfinished = UnfinishedTexts(pr, recipe_->NeedsGold());
    int64_t index = row["index"].get<int64_t>();
    std::vector<PreferencePairRow> built;
    if (side_by_side) {
      auto it = scores_by_prompt.find(index);
      // A prompt whose scoring failed yields no pairs (never guessed scores).
      if (it != scores_by_prompt.end()) built = recipe_->BuildPairsFromScores(pr, it->second);
    } else {
      built = recipe_->BuildPairs(pr, by_prompt[index]);
    }
    for (const PreferencePairRow& p : built) {
      // The trainer rejects empty responses (nothing but EOS to score); such samples still count
      // in the win rates, they just cannot be one side of a training pair.
      if (p.chosen.empty() || p.rejected.empty()) {
        ++dropped_empty;
        continue;
      }
      rows.push_back(PairJson(p, side_by_side, unfinished));
      rows.back()["source_index"] = index;
      rows.back()["source_round"] = t;
    }
  }
  FaultHold(t, "pairs");  // test-only: pairs built, nothing written yet
  // Earlier rounds' own pairs mixed back in (not re-sampled), per the recipe.
  int mixed = 0;
  std::vector<double> mix = recipe_->MixPrevious();
  for (size_t k = 0; k < mix.size(); ++k) {
    int s_round = t - 1 - static_cast<int>(k);
    if (s_round < 1 || mix[k] <= 0) continue;
    SPAR_ASSIGN_OR_RETURN(std::vector<json> prev, ReadJsonl(dir.Pairs(s_round)));
    std::vector<json> own;
    for (const json& p : prev) {
      if (p.value("source_round", s_round) == s_round) own.push_back(p);
    }
    for (size_t i : MixSelection(own.size(), mix[k], MixSeed(spec_.seed(), t, 100 + s_round))) {
      rows.push_back(own[i]);
      ++mixed;
    }
  }
  SPAR_RETURN_IF_ERROR(WriteJsonlAtomic(dir.Pairs(t), rows));
  int kept = static_cast<int>(rows.size());
  callbacks_.update_job([&](v1::Job& job) {
    job.mutable_rounds(t - 1)->set_pairs_kept(kept);
    job.mutable_rounds(t - 1)->set_pairs_mixed(mixed);
  });
  Emit(t, "pairs", "progress", kept, kept,
       absl::StrFormat("%d pairs kept (%d from earlier rounds), %d failed judgments excluded, "
                       "%d pairs with an empty response dropped",
                       kept, mixed, failed, dropped_empty));
  return absl::OkStatus();
}

absl::Status JobRunner::StageTrain(int t, const std::string& policy) {
  RunDir dir(job_dir_);
  SPAR_ASSIGN_OR_RETURN(std::vector<json> pairs, ReadJsonl(dir.Pairs(t)));
  if (pairs.empty()) {
    // Nothing to learn from: pi_{t+1} = pi_t.
    SPAR_RETURN_IF_ERROR(CopyCheckpoint(policy, dir.Checkpoint(t)));
    return WriteJsonFileAtomic(dir.Train(t), {{"skipped", true}, {"reason", "no pairs"}});
  }
  v1::StartTrainingRequest req;
  req.set_idempotency_key(Key(t, "train"));
  req.set_init_checkpoint(policy);
  req.set_pairs_path(dir.Pairs(t));
  req.set_output_checkpoint(dir.Checkpoint(t));
  req.set_chat_template(spec_.chat_template());
  *req.mutable_config() = RoundTrainingConfig(spec_, t);
  req.mutable_config()->set_seed(MixSeed(req.config().seed(), t, 3));
  if (spec_.algorithm() == "mpo") req.mutable_config()->set_magnet_checkpoint(MagnetFor(t));
  SPAR_ASSIGN_OR_RETURN(
      v1::TrainingEvent last,
      ports_.trainer->Train(
          req,
          [&](const v1::TrainingEvent& ev) {
            Emit(t, "train", "progress", ev.step(), ev.total_steps(),
                 absl::StrFormat("loss %.4f", ev.loss()));
            if (ev.step() > 0) FaultHold(t, "train");  // test-only: the trainer is stepping
          },
          Cancelled()));
  if (!PathExists(JoinPath(dir.Checkpoint(t), "config.json"))) {
    return absl::InternalError(absl::StrCat("trainer reported success but ", dir.Checkpoint(t),
                                            " has no config.json"));
  }
  json metrics = json::object();
  for (const auto& [k, v] : last.metrics()) metrics[k] = v;
  double acc = last.metrics().count("rewards/accuracies") ? last.metrics().at("rewards/accuracies") : 0;
  SPAR_RETURN_IF_ERROR(WriteJsonFileAtomic(
      dir.Train(t), {{"steps", last.step()}, {"final_loss", last.loss()}, {"metrics", metrics}}));
  callbacks_.update_job([&](v1::Job& job) {
    job.mutable_rounds(t - 1)->set_train_loss(last.loss());
    job.mutable_rounds(t - 1)->set_reward_accuracy(acc);
  });
  return absl::OkStatus();
}

absl::Status JobRunner::UpdateBestRound() {
  RunDir dir(job_dir_);
  SPAR_ASSIGN_OR_RETURN(std::vector<RoundEval> evals, ReadRoundEvals(job_dir_, spec_.rounds()));
  SPAR_ASSIGN_OR_RETURN(int best, SelectBestRound(evals, spec_.eval().select_best()));
  if (best > 0) {
    // Relative, so the run directory can be moved or mounted elsewhere.
    SPAR_RETURN_IF_ERROR(ReplaceSymlink(RunDir::CheckpointInJobDir(best), dir.Best()));
  }
  callbacks_.update_job([best](v1::Job& job) { job.set_best_round(best); });
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> JobRunner::PreviousEvalAnswers(int t) {
  RunDir dir(job_dir_);
  std::string path = t <= 1 ? dir.BaseEval() : JoinPath(dir.Round(t - 1), "eval_answers.jsonl");
  SPAR_ASSIGN_OR_RETURN(std::vector<json> rows, ReadJsonl(path));
  std::vector<std::string> out;
  for (const json& r : rows) out.push_back(r["text"].get<std::string>());
  return out;
}

absl::StatusOr<std::vector<double>> JobRunner::JudgeAgainst(
    int t, const std::vector<std::string>& prompts, const std::vector<std::string>& ours,
    const std::vector<std::string>& theirs, const std::string& key_suffix, int* failed) {
  v1::CompareRequest req;
  req.set_idempotency_key(Key(t, "eval/" + key_suffix));
  SetJudgeScope(t, &req);
  std::vector<size_t> judged;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (ours[i] == theirs[i]) continue;  // identical answers: 0.5 without a judge call
    v1::Comparison* c = req.add_comparisons();
    c->set_prompt(prompts[i]);
    c->set_response_a(ours[i]);
    c->set_response_b(theirs[i]);
    judged.push_back(i);
  }
  std::vector<double> p(prompts.size(), 0.5);
  std::vector<bool> ok(prompts.size(), true);
  JudgeFailures failures;
  if (!judged.empty()) {
    SPAR_RETURN_IF_ERROR(ports_.oracle->Compare(req, [&](const v1::Judgment& jd) {
      if (jd.index() < 0 || jd.index() >= static_cast<int64_t>(judged.size())) {
        return absl::InternalError("oracle returned an out-of-range index");
      }
      p[judged[jd.index()]] = jd.p_a_wins();
      ok[judged[jd.index()]] = jd.ok();
      failures.Add(jd.ok(), jd.code(), jd.error());
      return CheckCancelled();
    }, Cancelled()));
  }
  // As in StageJudge: a spent budget pauses the job, a refused key or too many failures fail it
  // (eval is re-run on resume; the oracle's cache holds what was answered).
  SPAR_RETURN_IF_ERROR(failures.Check(MaxJudgeFailureRate()));
  *failed = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (!ok[i]) {
      p[i] = -1;  // excluded from the mean
      ++*failed;
    }
  }
  return p;
}

absl::Status JobRunner::StageEval(int t) {
  RunDir dir(job_dir_);
  SPAR_ASSIGN_OR_RETURN(std::vector<json> base_rows, ReadJsonl(dir.BaseEval()));
  std::vector<std::string> prompts, base_texts;
  for (const json& r : base_rows) {
    prompts.push_back(r["prompt"].get<std::string>());
    base_texts.push_back(r["text"].get<std::string>());
  }
  SPAR_ASSIGN_OR_RETURN(std::vector<std::string> prev_texts, PreviousEvalAnswers(t));
  if (prev_texts.size() != prompts.size()) {
    return absl::DataLossError("previous round's eval answers do not match the eval prompts");
  }
  std::vector<std::string> texts;
  SPAR_RETURN_IF_ERROR(Greedy(dir.Checkpoint(t), prompts, Key(t, "eval"), &texts));
  std::vector<json> answers;
  for (size_t i = 0; i < prompts.size(); ++i) {
    answers.push_back({{"index", i}, {"prompt", prompts[i]}, {"text", texts[i]}});
  }
  SPAR_RETURN_IF_ERROR(WriteJsonlAtomic(JoinPath(dir.Round(t), "eval_answers.jsonl"), answers));
  FaultHold(t, "eval");  // test-only: greedy answers written, nothing judged yet

  // Judged win rates of pi_t vs pi_0 and vs the previous policy on held-out prompts.
  int failed_base = 0, failed_prev = 0;
  SPAR_ASSIGN_OR_RETURN(std::vector<double> p_base,
                        JudgeAgainst(t, prompts, texts, base_texts, "vs_base", &failed_base));
  std::vector<double> p_prev = p_base;
  if (t > 1) {
    SPAR_ASSIGN_OR_RETURN(p_prev,
                          JudgeAgainst(t, prompts, texts, prev_texts, "vs_prev", &failed_prev));
  }
  auto mean = [](const std::vector<double>& v) {
    double sum = 0;
    int n = 0;
    for (double x : v) {
      if (x >= 0) {
        sum += x;
        ++n;
      }
    }
    return n > 0 ? sum / n : 0.5;
  };
  double win_base = mean(p_base), win_prev = mean(p_prev);
  const Interval win_base_ci = MeanInterval(p_base), win_prev_ci = MeanInterval(p_prev);
  double len_sum = 0;
  size_t max_len = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    len_sum += static_cast<double>(texts[i].size());
    max_len = std::max(max_len, texts[i].size());
  }
  const arith::GreedyScore g = arith::ScoreGreedyAnswers(prompts, texts);
  const double acc = g.accuracy;
  double mean_len = prompts.empty() ? 0 : len_sum / prompts.size();
  const double stop_below = spec_.eval().early_stop_win_rate();
  bool early_stop = stop_below > 0 && t > 1 && win_prev < stop_below;
  json eval = {{"round", t},
               {"num_prompts", prompts.size()},
               {"greedy_accuracy", acc},
               {"greedy_accuracy_ci95", IntervalJson(g.ci95)},
               {"num_verifiable", g.verifiable},
               {"win_rate_vs_base", win_base},
               {"win_rate_vs_base_ci95", IntervalJson(win_base_ci)},
               {"win_rate_vs_prev", win_prev},
               {"win_rate_vs_prev_ci95", IntervalJson(win_prev_ci)},
               {"failed_judgments", failed_base + failed_prev},
               {"mean_response_length_bytes", mean_len},
               {"max_response_length_bytes", max_len},
               {"early_stop", early_stop}};
  SPAR_RETURN_IF_ERROR(WriteJsonFileAtomic(dir.Eval(t), eval));
  callbacks_.update_job([&](v1::Job& job) {
    v1::RoundSummary* r = job.mutable_rounds(t - 1);
    r->set_greedy_accuracy(acc);
    r->set_win_rate_vs_base(win_base);
    r->set_win_rate_vs_prev(win_prev);
    r->set_mean_response_length(mean_len);
    SetInterval(g.ci95, r->mutable_greedy_accuracy_ci95());
    SetInterval(win_base_ci, r->mutable_win_rate_vs_base_ci95());
    SetInterval(win_prev_ci, r->mutable_win_rate_vs_prev_ci95());
  });
  if (early_stop) {
    early_stopped_ = true;
    Emit(t, "eval", "progress", 1, 1,
         absl::StrFormat("early stop: win rate vs the previous policy %.3f < %.3f", win_prev,
                         stop_below));
  }
  return absl::OkStatus();
}

}  // namespace spar::orchestrator
