// The round loop: a job's rounds, each the stages of the stage table in order (one file each,
// orchestrator/stage_*.cc), resumed at the first stage STAGE does not record.
#include "orchestrator/job_runner.h"

#include <algorithm>
#include <new>
#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "orchestrator/best_round.h"
#include "orchestrator/internal/stage_context.h"
#include "orchestrator/internal/stages.h"
#include "orchestrator/job_spec.h"
#include "orchestrator/run_dir.h"
#include "orchestrator/start_guard.h"

namespace spar::orchestrator {
namespace {

using internal::StageContext;

// Attempts per stage when a service is unavailable (about a minute of backoff in all).
constexpr int kStageAttempts = 8;

// The sample stage: alone, or (pipelined) with the judge stage. Pipelined, sample's STAGE marker
// is written when sampling is whole, so a retry after it only judges (the oracle's cache makes
// that free).
absl::Status RunSample(StageContext& ctx, int t, const std::string& policy) {
  if (!ctx.options().pipeline_judging) return internal::StageSample(ctx, t, policy);
  if (internal::ReadStage(ctx.dir(), t) == "sample") return internal::StageJudge(ctx, t);
  return internal::StageSampleAndJudge(ctx, t, policy);
}

// The stage table: kStages[s] (run_dir.h) runs kStageTable[s]; `policy` is the round's policy.
using StageFn = absl::Status (*)(StageContext& ctx, int t, const std::string& policy);
constexpr StageFn kStageTable[] = {
    RunSample,
    [](StageContext& ctx, int t, const std::string&) { return internal::StageJudge(ctx, t); },
    [](StageContext& ctx, int t, const std::string&) { return internal::StagePairs(ctx, t); },
    internal::StageTrain,
    [](StageContext& ctx, int t, const std::string&) { return internal::StageEval(ctx, t); },
};
static_assert(sizeof(kStageTable) / sizeof(kStageTable[0]) == kNumStages);

// Runs `fn` again (with backoff) while it fails with UNAVAILABLE: a stage whose service went away
// (killed, restarting) is re-run, not the job failed.
absl::Status RetryUnavailable(const StageContext& ctx, int t, const std::string& stage,
                              const std::function<absl::Status()>& fn) {
  absl::Duration backoff = ctx.options().stage_retry_backoff;
  absl::Status st;
  for (int attempt = 1;; ++attempt) {
    st = fn();
    if (!absl::IsUnavailable(st) || attempt >= kStageAttempts || !ctx.CheckCancelled().ok()) {
      break;
    }
    ctx.Emit(t, stage, "progress", 0, 0,
             absl::StrFormat("attempt %d failed (%s); retrying the stage", attempt, st.message()));
    SPAR_LOG(Warning) << ctx.Key(t, stage) << " attempt " << attempt << ": " << st;
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(8));
  }
  return st;
}

// Recomputes the best round from the evaluated rounds' eval.json (spec.eval.select_best), points
// runs/<job>/best at its checkpoint and records it as Job.best_round. Idempotent.
absl::Status UpdateBestRound(const StageContext& ctx) {
  const RunDir dir = ctx.dir();
  // Compared on the validation split; a job without one (a prompt file and no
  // validation_prompts, or a job from before splits) can only take the last round.
  const bool validation = HasValidation(ctx.spec());
  SPAR_ASSIGN_OR_RETURN(std::vector<RoundEval> evals,
                        ReadRoundEvals(ctx.job_dir(), ctx.spec().rounds(), validation));
  if (evals.empty()) return absl::OkStatus();
  // pi_0's accuracy is the job record's (the base eval set it): chosen and recorded in one update.
  absl::StatusOr<int> best;
  ctx.UpdateJob([&](v1::Job& job) {
    best = SelectBestRound(evals, validation ? ctx.spec().eval().select_best() : "last",
                           BaseRoundEval(job.base_validation_greedy_accuracy()));
    if (best.ok()) job.set_best_round(*best);
  });
  SPAR_RETURN_IF_ERROR(best.status());
  // A round's checkpoint by a relative link, so the run directory can be moved or mounted
  // elsewhere; pi_0 (no round beat it) by its own path. Re-applied when a finished round resumes.
  return ReplaceSymlink(*best > 0 ? RunDir::CheckpointInJobDir(*best) : ctx.PolicyFor(1),
                        dir.Best());
}

// Records stage `stage` of round t as done: STAGE, the round summary, the event.
absl::Status StageDone(const StageContext& ctx, int t, const std::string& stage) {
  SPAR_RETURN_IF_ERROR(internal::WriteStage(ctx.dir(), t, stage));
  ctx.UpdateJob([&](v1::Job& job) { job.mutable_rounds(t - 1)->set_stage(stage); });
  ctx.Emit(t, stage, "stage_finished", 1, 1);
  return absl::OkStatus();
}

// Runs round t's stages from the first one STAGE does not record.
absl::Status RunStages(StageContext& ctx, int t, int next) {
  const std::string policy = ctx.PolicyFor(t);
  const bool pipelined = ctx.options().pipeline_judging;
  for (int s = next; s < kNumStages; ++s) {
    SPAR_RETURN_IF_ERROR(ctx.CheckCancelled());
    const std::string stage = kStages[s];
    ctx.UpdateJob([&](v1::Job& job) { job.set_current_stage(stage); });
    ctx.Emit(t, stage, "stage_started", 0, 0);
    // A service that went away mid-stage (UNAVAILABLE: killed, restarting) costs a re-run of the
    // stage, not the job: outputs are written only when a stage is whole, samples are a pure
    // function of the seeds, and the oracle's cache keeps judged pairs from being paid twice.
    absl::Status st =
        RetryUnavailable(ctx, t, stage, [&] { return kStageTable[s](ctx, t, policy); });
    if (!st.ok()) {
      const std::string failed =
          s == 0 && pipelined && internal::ReadStage(ctx.dir(), t) == "sample" ? "judge" : stage;
      return absl::Status(st.code(),
                          absl::StrFormat("round %d stage %s: %s", t, failed, st.message()));
    }
    // Pipelined, the judge stage finished with sampling: record both and go on with pairs.
    if (s == 0 && pipelined) ++s;
    SPAR_RETURN_IF_ERROR(StageDone(ctx, t, kStages[s]));
  }
  return absl::OkStatus();
}

absl::Status RunRound(StageContext& ctx, int t) {
  const RunDir dir = ctx.dir();
  SPAR_RETURN_IF_ERROR(MakeDirs(dir.Round(t)));
  const int next = StageIndex(internal::ReadStage(dir, t)) + 1;
  if (next >= kNumStages) {  // round already complete (a resumed job): re-apply the stop rule
    auto eval = ReadJsonFile(dir.Eval(t));
    if (eval.ok() && eval->contains("early_stop") && (*eval)["early_stop"].get<bool>()) {
      ctx.set_early_stopped();
    }
    return UpdateBestRound(ctx);  // the link may predate a crash right after this round's eval
  }
  const absl::Time started = absl::Now();
  ctx.UpdateJob([t](v1::Job& job) {
    job.set_current_round(t);
    while (job.rounds_size() < t) job.add_rounds()->set_round(job.rounds_size());
  });
  SPAR_RETURN_IF_ERROR(RunStages(ctx, t, next));
  SPAR_RETURN_IF_ERROR(UpdateBestRound(ctx));
  const double seconds = absl::ToDoubleSeconds(absl::Now() - started);
  ctx.UpdateJob([&](v1::Job& job) {
    v1::RoundSummary* r = job.mutable_rounds(t - 1);
    r->set_seconds(r->seconds() + seconds);
  });
  ctx.Emit(t, "eval", "round_finished", 1, 1);
  return absl::OkStatus();
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

absl::Status JobRunner::Run() {
  SPAR_RETURN_IF_ERROR(RecordRunnerStart(job_dir_).status());
  absl::Status st;
  // The job boundary: no exception ends the server. An allocation failure or any other escaped
  // exception fails this job with the reason (R4); worker threads catch their own.
  try {
    st = RunRounds();
  } catch (const std::bad_alloc& e) {
    st = absl::InternalError(
        absl::StrCat("out of memory (std::bad_alloc) in round ", current_round_, ": ", e.what()));
  } catch (const std::exception& e) {
    st = absl::InternalError(
        absl::StrCat("unexpected exception in round ", current_round_, ": ", e.what()));
  }
  if (absl::Status cleared = ClearRunnerStarts(job_dir_); !cleared.ok()) {
    SPAR_LOG(Warning) << "job " << job_id_ << ": " << cleared;
  }
  return st;
}

absl::Status JobRunner::RunRounds() {
  SPAR_ASSIGN_OR_RETURN(std::unique_ptr<Recipe> recipe, MakeRecipe(spec_));
  internal::RunnerOptions options;
  options.stage_retry_backoff = stage_retry_backoff_;
  options.pipeline_judging = pipeline_judging_;
  options.judge_chunk = judge_chunk_;
  options.judge_in_flight = judge_in_flight_;
  StageContext ctx(job_id_, job_dir_, spec_, ports_, callbacks_, cancel_, data_root_, *recipe,
                   options);
  SPAR_RETURN_IF_ERROR(ctx.CheckCancelled());
  SPAR_RETURN_IF_ERROR(
      RetryUnavailable(ctx, 0, "eval", [&ctx] { return internal::EnsureBaseEval(ctx); }));
  for (int t = 1; t <= spec_.rounds() && !ctx.early_stopped(); ++t) {
    SPAR_RETURN_IF_ERROR(ctx.CheckCancelled());
    current_round_ = t;
    SPAR_RETURN_IF_ERROR(RunRound(ctx, t));
  }
  return absl::OkStatus();
}

}  // namespace spar::orchestrator
