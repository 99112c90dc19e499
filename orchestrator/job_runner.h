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
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "orchestrator/ports.h"
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
  // Run's body, inside the job boundary's try/catch: the base eval, then the round loop
  // (job_runner.cc), whose stages live in orchestrator/stage_*.cc.
  absl::Status RunRounds();

  std::string job_id_;
  std::string job_dir_;
  v1::JobSpec spec_;
  Ports ports_;
  JobRunnerCallbacks callbacks_;
  const std::atomic<bool>* cancel_;
  std::string data_root_;
  int current_round_ = 0;  // for error messages
  absl::Duration stage_retry_backoff_ = absl::Milliseconds(500);
  bool pipeline_judging_ = true;
  int judge_chunk_ = 64;
  int judge_in_flight_ = 4;
};

}  // namespace spar::orchestrator
