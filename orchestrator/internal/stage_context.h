// Internal to orchestrator/: what every stage of a round works with (orchestrator/job_runner.h):
// the job's id, spec, ports and callbacks, its run directory, the recipe, and the rules the
// stages share (idempotency keys, the judge's accounting scope, events, cancellation, the STAGE
// marker). One per running job, created by JobRunner::Run on the runner's thread; the pipelined
// judge stage's worker threads use only the const members (keys, scopes, ports, CheckCancelled).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "orchestrator/job_runner.h"
#include "orchestrator/ports.h"
#include "orchestrator/prompt_file.h"
#include "orchestrator/recipe.h"
#include "orchestrator/run_dir.h"
#include "spar/v1/orchestrator.pb.h"

namespace spar::orchestrator::internal {

// One prompt of a round, with its reference answer when the task has one.
using PromptItem = PromptRow;  // a prompt and its gold answer, if any

// One distinct comparison: (prompt, response_a, response_b) with a <= b.
using ComparisonKey = std::tuple<std::string, std::string, std::string>;
using JudgedMap = std::map<ComparisonKey, v1::Judgment>;
// Side-by-side scoring: one distinct question per prompt, (prompt, the texts shown to the judge).
using ScoreKey = std::pair<std::string, std::vector<std::string>>;
using ScoredMap = std::map<ScoreKey, v1::ScoreResult>;

// JobRunner's settings (its setters).
struct RunnerOptions {
  absl::Duration stage_retry_backoff = absl::Milliseconds(500);
  bool pipeline_judging = true;
  int judge_chunk = 64;
  int judge_in_flight = 4;
};

class StageContext {
 public:
  // Every reference must outlive the context.
  StageContext(const std::string& job_id, const std::string& job_dir, const v1::JobSpec& spec,
               const Ports& ports, const JobRunnerCallbacks& callbacks,
               const std::atomic<bool>* cancel, const std::string& data_root, const Recipe& recipe,
               RunnerOptions options);

  const std::string& job_id() const { return job_id_; }
  const std::string& job_dir() const { return job_dir_; }
  RunDir dir() const { return RunDir(job_dir_); }
  const v1::JobSpec& spec() const { return spec_; }
  const Ports& ports() const { return ports_; }
  const std::string& data_root() const { return data_root_; }
  const Recipe& recipe() const { return recipe_; }
  const RunnerOptions& options() const { return options_; }

  // CancelledError("job cancelled") once the job is cancelled.
  absl::Status CheckCancelled() const;
  // The same, as the ports ask it while a call waits.
  CancelCheck Cancelled() const;
  // A stage event (callbacks.on_event). Runner's thread only.
  void Emit(int round, const std::string& stage, const std::string& kind, int64_t done,
            int64_t total, const std::string& message = "") const;
  // Applies a change to the job record (callbacks.update_job). Runner's thread only.
  void UpdateJob(const std::function<void(v1::Job&)>& fn) const;
  // The idempotency key of round t's `stage`: "<job>/iter_NNN/<stage>".
  std::string Key(int t, const std::string& stage) const;
  // The oracle's accounting scope: this job, round t, spec.judge_budget.
  void SetJudgeScope(int t, v1::CompareRequest* req) const;
  void SetJudgeScope(int t, v1::ScoreRequest* req) const;
  // The policy round t samples from: the base model for t = 1, round t-1's checkpoint after.
  std::string PolicyFor(int t) const;
  // spec.judge.max_failure_rate (docs/job-spec.md).
  double MaxJudgeFailureRate() const;

  // Set by the eval stage (or a finished round's eval.json) when the stop rule fired.
  bool early_stopped() const { return early_stopped_; }
  void set_early_stopped() { early_stopped_ = true; }

 private:
  const std::string& job_id_;
  const std::string& job_dir_;
  const v1::JobSpec& spec_;
  const Ports& ports_;
  const JobRunnerCallbacks& callbacks_;
  const std::atomic<bool>* cancel_;
  const std::string& data_root_;
  const Recipe& recipe_;
  RunnerOptions options_;
  bool early_stopped_ = false;
};

// Test-only fault hook (tests/e2e/kill_test.py): with SPAR_ORCHESTRATOR_FAULT_HOLD_DIR set, a
// stage that reaches its hold point while DIR/hold-<round>-<stage> exists writes
// DIR/held-<round>-<stage> and waits until the hold file is removed, so a test can kill a service
// while the stage is provably in progress (pairs and eval otherwise take milliseconds; judge and
// train may end while a restarted service is still starting). Unset: does nothing.
void FaultHold(int t, const std::string& stage);

// Runs `fn` (on a worker thread), turning an escaped exception into an Internal error (an
// exception leaving a std::thread ends the process).
absl::Status Guarded(const std::function<absl::Status()>& fn);

// A seed for round `round`'s use `salt` of `seed` (sampling 1, training 3, mixing 100 + round).
uint64_t MixSeed(uint64_t seed, uint64_t round, uint64_t salt);

// STAGE: the last completed stage of round t ("" when none or unreadable). WriteStage also
// records the runner's progress (orchestrator/start_guard.h: the crash-loop count restarts).
std::string ReadStage(const RunDir& dir, int t);
absl::Status WriteStage(const RunDir& dir, int t, const std::string& stage);

}  // namespace spar::orchestrator::internal
