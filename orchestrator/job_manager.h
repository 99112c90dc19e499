// Jobs: create (idempotent by request_id), get, list, cancel, resume, watch. Each job lives in
// runs/<job_id>/ (job.json is its record, rewritten atomically); a running job has a JobRunner on
// its own thread. On start the manager reloads every job and resumes those that were running.
// Thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/metrics/registry.h"
#include "orchestrator/ports.h"
#include "spar/v1/orchestrator.pb.h"

namespace spar::orchestrator {

struct JobManagerConfig {
  // Directory holding one subdirectory per job.
  std::string runs_dir = "runs";
  // Job paths (base_model, prompt files) must resolve inside this directory; "" = no confinement.
  std::string data_root;
  // Resume jobs found in state RUNNING/PENDING at start.
  bool resume_on_start = true;
};

class JobManager {
 public:
  static absl::StatusOr<std::unique_ptr<JobManager>> Create(JobManagerConfig config, Ports ports,
                                                            metrics::Registry* registry);
  ~JobManager();

  // INVALID_ARGUMENT naming the field for a bad spec or one over the bounds of
  // request_limits.h; the same request_id with the same spec returns the same job, with a
  // different spec ALREADY_EXISTS naming request_id.
  // `owner`: the holder of the caller's token, recorded in the job (Job.owner); a request_id
  // another owner used is refused (ALREADY_EXISTS), never answered with that owner's job.
  absl::StatusOr<v1::Job> CreateJob(const v1::CreateJobRequest& request,
                                    const std::string& owner = "");
  absl::StatusOr<v1::Job> GetJob(const std::string& job_id) const;
  // Every job in `filter`'s state (UNSPECIFIED = all), oldest first.
  std::vector<v1::Job> ListJobs(v1::JobState filter) const;
  // One page of ListJobs (see ListJobsRequest in orchestrator.proto): INVALID_ARGUMENT for a
  // negative page_size or a page_token this manager did not hand out.
  absl::StatusOr<v1::ListJobsResponse> ListJobsPage(const v1::ListJobsRequest& request) const;
  // Removes a job that is not running: its record leaves the manager and its run directory
  // (runs_dir/<job_id>, created by CreateJob) is deleted, job.json first so a half-removed
  // directory is never loaded again. NOT_FOUND; FAILED_PRECONDITION while it runs.
  absl::Status DeleteJob(const std::string& job_id);
  // FAILED_PRECONDITION when the job already ended.
  absl::StatusOr<v1::Job> CancelJob(const std::string& job_id);
  // Restarts a FAILED/CANCELLED/PAUSED job at its first unfinished stage. The fields set in
  // `judge_budget` (when given) replace those of the job's spec.judge_budget first (validated:
  // INVALID_ARGUMENT naming the field; persisted in job.json).
  absl::StatusOr<v1::Job> ResumeJob(const std::string& job_id,
                                    const v1::JudgeBudget* judge_budget = nullptr);

  // Calls `on_event` for every event of the job until it returns false or the job ends (the last
  // event has kind "job_finished"). The first event is a snapshot ("snapshot"). Returns a handle
  // for Unsubscribe. NOT_FOUND for an unknown job.
  absl::StatusOr<int64_t> Subscribe(const std::string& job_id,
                                    std::function<bool(const v1::JobEvent&)> on_event);
  void Unsubscribe(int64_t handle);

  // Cancels runners (without marking jobs cancelled: they resume on next start) and joins them.
  void Shutdown();

 private:
  struct Impl;
  explicit JobManager(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

bool IsTerminal(v1::JobState state);

// The state's lower-case name ("running", "paused", ...; "unspecified" otherwise): the metric
// label, the CLI's column and `spar list --state`'s values.
const char* JobStateName(v1::JobState state);

// Every state a job can be in (not UNSPECIFIED), in lifecycle order: the metric's label set and
// the names `spar list --state` accepts.
inline constexpr v1::JobState kJobStates[] = {v1::JOB_STATE_PENDING,   v1::JOB_STATE_RUNNING,
                                              v1::JOB_STATE_SUCCEEDED, v1::JOB_STATE_FAILED,
                                              v1::JOB_STATE_CANCELLED, v1::JOB_STATE_PAUSED};

}  // namespace spar::orchestrator
