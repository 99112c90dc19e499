// Runs one job's rounds against the ports, resuming from what the run directory holds: each
// stage's output is written atomically and STAGE records the last completed stage, so a restarted
// runner continues at the first unfinished stage. Every service call carries the idempotency key
// "<job>/iter_NNN/<stage>". Not thread-safe: one runner per job, on its own thread.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "orchestrator/ports.h"
#include "orchestrator/recipe.h"
#include "spar/v1/orchestrator.pb.h"

namespace spar::orchestrator {

struct JobRunnerCallbacks {
  // Stage events (started, progress, finished). Called from the runner's thread.
  std::function<void(const v1::JobEvent&)> on_event;
  // Applies a change to the job record and persists it (job.json). Called from the runner's thread.
  std::function<void(const std::function<void(v1::Job&)>&)> update_job;
};

class JobRunner {
 public:
  // `spec` must have gone through WithDefaults + ValidateJobSpec. `cancel` is polled between
  // and inside stages; when set, Run returns CancelledError.
  JobRunner(std::string job_id, std::string job_dir, v1::JobSpec spec, Ports ports,
            JobRunnerCallbacks callbacks, const std::atomic<bool>* cancel,
            std::string data_root = "");
  absl::Status Run();
  // First wait before re-running a stage whose service was UNAVAILABLE (doubles, capped at 8 s).
  void set_stage_retry_backoff(absl::Duration d) { stage_retry_backoff_ = d; }

 private:
  struct RoundState;
  absl::Status EnsureBaseEval();
  // Runs `fn` again (with backoff) while it fails with UNAVAILABLE: a stage whose service went
  // away (killed, restarting) is re-run, not the job failed.
  absl::Status RetryUnavailable(int t, const std::string& stage,
                                const std::function<absl::Status()>& fn);
  absl::Status RunRound(int t);
  absl::Status StageSample(int t, const std::string& policy);
  absl::Status StageJudge(int t);
  absl::Status StagePairs(int t);
  absl::Status StageTrain(int t, const std::string& policy);
  // mpo: the magnet checkpoint of round t (JobSpec.mpo_magnet_refresh).
  std::string MagnetFor(int t) const;
  absl::Status StageEval(int t);
  absl::Status Greedy(const std::string& policy, const std::vector<std::string>& prompts,
                      const std::string& key, std::vector<std::string>* texts);
  struct PromptItem {
    std::string prompt;
    std::optional<std::string> gold;
  };
  absl::StatusOr<std::vector<PromptItem>> RoundPrompts(int t);
  // Greedy eval answers of the policy before round t (pi_0's for t = 1).
  absl::StatusOr<std::vector<std::string>> PreviousEvalAnswers(int t);
  absl::StatusOr<std::vector<double>> JudgeAgainst(int t, const std::vector<std::string>& prompts,
                                                   const std::vector<std::string>& ours,
                                                   const std::vector<std::string>& theirs,
                                                   const std::string& key_suffix, int* failed);
  absl::StatusOr<std::vector<std::string>> EvalPrompts();
  absl::Status CheckCancelled() const;
  void Emit(int round, const std::string& stage, const std::string& kind, int64_t done,
            int64_t total, const std::string& message = "");
  std::string Key(int t, const std::string& stage) const;
  // The oracle's accounting scope: this job, round t, spec.judge_budget.
  void SetJudgeScope(int t, v1::CompareRequest* req) const;
  std::string PolicyFor(int t) const;

  std::string job_id_;
  std::string job_dir_;
  v1::JobSpec spec_;
  Ports ports_;
  JobRunnerCallbacks callbacks_;
  const std::atomic<bool>* cancel_;
  std::string data_root_;
  std::unique_ptr<Recipe> recipe_;
  bool early_stopped_ = false;
  absl::Duration stage_retry_backoff_ = absl::Milliseconds(500);
};

}  // namespace spar::orchestrator
