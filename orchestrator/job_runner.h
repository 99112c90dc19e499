// Runs one job's rounds against the ports, resuming from what the run directory holds: each
// stage's output is written atomically and STAGE records the last completed stage, so a restarted
// runner continues at the first unfinished stage. Every service call carries the idempotency key
// "<job>/iter_NNN/<stage>" (pipelined judge chunks "<job>/iter_NNN/judge/NNNN"). Sampling and
// judging overlap (set_pipeline_judging) on worker threads that only hand results back; callbacks,
// file writes and decisions stay on the runner's thread. Not thread-safe: one runner per job, on
// its own thread.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

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
  // and inside stages; when set, Run returns CancelledError. Run never throws: an exception
  // (std::bad_alloc included) becomes an Internal error naming it, and the job fails. Run keeps
  // the job's crash-loop count (orchestrator/start_guard.h).
  JobRunner(std::string job_id, std::string job_dir, v1::JobSpec spec, Ports ports,
            JobRunnerCallbacks callbacks, const std::atomic<bool>* cancel,
            std::string data_root = "");
  absl::Status Run();
  // First wait before re-running a stage whose service was UNAVAILABLE (doubles, capped at 8 s).
  void set_stage_retry_backoff(absl::Duration d) { stage_retry_backoff_ = d; }
  // Pipelining (default on): a round's comparisons go to the oracle, in chunks of up to
  // `judge_chunk` with at most `judge_in_flight` concurrent Compare calls, as soon as each
  // prompt's samples arrive. Off: judging starts when sampling has finished. The written files are
  // byte-identical either way.
  void set_pipeline_judging(bool on) { pipeline_judging_ = on; }
  void set_judge_chunking(int judge_chunk, int judge_in_flight) {
    judge_chunk_ = judge_chunk < 1 ? 1 : judge_chunk;
    judge_in_flight_ = judge_in_flight < 1 ? 1 : judge_in_flight;
  }

 private:
  struct RoundState;
  // Run's body, inside the job boundary's try/catch.
  absl::Status RunRounds();
  absl::Status EnsureBaseEval();
  // Runs `fn` again (with backoff) while it fails with UNAVAILABLE: a stage whose service went
  // away (killed, restarting) is re-run, not the job failed.
  absl::Status RetryUnavailable(int t, const std::string& stage,
                                const std::function<absl::Status()>& fn);
  absl::Status RunRound(int t);
  struct PromptItem {
    std::string prompt;
    std::optional<std::string> gold;
  };
  // One distinct comparison: (prompt, response_a, response_b) with a <= b.
  using ComparisonKey = std::tuple<std::string, std::string, std::string>;
  using JudgedMap = std::map<ComparisonKey, v1::Judgment>;
  absl::Status StageSample(int t, const std::string& policy);
  // Sampling with judging overlapped (pipelining): writes samples.jsonl and STAGE=sample when
  // sampling is whole, then judgments.jsonl once every comparison is judged.
  absl::Status StageSampleAndJudge(int t, const std::string& policy);
  absl::Status StageJudge(int t);
  // The answered judgments of round t's judge stage, kept when the stage failed its checks
  // (iter_NNN/judgments.partial.jsonl) and read back when it runs again: only the rest is asked.
  absl::Status SaveAnswered(int t, const JudgedMap& judged) const;
  absl::StatusOr<JudgedMap> LoadAnswered(int t) const;
  // spec.judge.max_failure_rate (docs/job-spec.md).
  double MaxJudgeFailureRate() const;
  // Judges what `judged` lacks of the round's comparisons (prompt order), writes judgments.jsonl.
  absl::Status JudgeRows(int t, const std::vector<nlohmann::json>& rows, JudgedMap* judged);
  // Side-by-side scoring (pairs.scoring = "side_by_side"): one distinct question per prompt,
  // (prompt, the candidate texts shown to the judge).
  using ScoreKey = std::pair<std::string, std::vector<std::string>>;
  using ScoredMap = std::map<ScoreKey, v1::ScoreResult>;
  // Scores what `scored` lacks of the round's prompts (one Oracle.Score item each), writes
  // judgments.jsonl (one row per prompt, docs/algorithms.md).
  absl::Status ScoreRows(int t, const std::vector<nlohmann::json>& rows, ScoredMap* scored);
  absl::StatusOr<nlohmann::json> SampleRow(const v1::GenerateResponse& r,
                                           const std::vector<PromptItem>& items) const;
  v1::GenerateRequest SampleRequest(int t, const std::string& policy,
                                    const std::vector<PromptItem>& items) const;
  void SampleFinished(int t, size_t num_prompts);
  absl::Status StagePairs(int t);
  absl::Status StageTrain(int t, const std::string& policy);
  // mpo: the magnet checkpoint of round t (JobSpec.mpo_magnet_refresh).
  std::string MagnetFor(int t) const;
  absl::Status StageEval(int t);
  // Recomputes the best round from the evaluated rounds' eval.json (spec.eval.select_best),
  // points runs/<job>/best at its checkpoint and records it as Job.best_round. Idempotent.
  absl::Status UpdateBestRound();
  absl::Status Greedy(const std::string& policy, const std::vector<std::string>& prompts,
                      const std::string& key, std::vector<std::string>* texts);
  absl::StatusOr<std::vector<PromptItem>> RoundPrompts(int t);
  // Greedy eval answers of the policy before round t (pi_0's for t = 1).
  absl::StatusOr<std::vector<std::string>> PreviousEvalAnswers(int t);
  absl::StatusOr<std::vector<double>> JudgeAgainst(int t, const std::vector<std::string>& prompts,
                                                   const std::vector<std::string>& ours,
                                                   const std::vector<std::string>& theirs,
                                                   const std::string& key_suffix, int* failed);
  absl::StatusOr<std::vector<std::string>> EvalPrompts();
  absl::Status CheckCancelled() const;
  // The same, as the ports ask it while a call waits.
  CancelCheck Cancelled() const;
  void Emit(int round, const std::string& stage, const std::string& kind, int64_t done,
            int64_t total, const std::string& message = "");
  std::string Key(int t, const std::string& stage) const;
  // The oracle's accounting scope: this job, round t, spec.judge_budget.
  void SetJudgeScope(int t, v1::CompareRequest* req) const;
  void SetJudgeScope(int t, v1::ScoreRequest* req) const;
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
  int current_round_ = 0;  // for error messages
  absl::Duration stage_retry_backoff_ = absl::Milliseconds(500);
  bool pipeline_judging_ = true;
  int judge_chunk_ = 64;
  int judge_in_flight_ = 4;
};

}  // namespace spar::orchestrator
