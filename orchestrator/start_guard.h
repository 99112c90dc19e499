// Crash-loop guard for jobs resumed on start (#12 item 4). runs/<job_id>/UNFINISHED_STARTS counts
// the runner starts of a job since it last completed a stage that never returned: the runner
// adds one when it starts, sets it to 0 when a stage completes and removes it when it returns
// (whatever the result, shutdown included). A count of kMaxUnfinishedStarts at server start means
// the server stopped abnormally (crash, OOM kill, kill -9) that many times in a row while running
// the job without it completing a stage; the job manager then marks the job FAILED instead of
// resuming it blindly. ResumeJob clears the count. Plain file IO; callers serialize per job.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace spar::orchestrator {

inline constexpr int kMaxUnfinishedStarts = 2;

// The count in `job_dir` (0 when absent or unreadable).
int UnfinishedStarts(const std::string& job_dir);
// Adds one (durably, before the runner does any work); returns the new count.
absl::StatusOr<int> RecordRunnerStart(const std::string& job_dir);
// A stage completed: the count restarts at 0.
absl::Status RecordRunnerProgress(const std::string& job_dir);
// The runner returned (or ResumeJob): removes the count.
absl::Status ClearRunnerStarts(const std::string& job_dir);

// The FAILED reason for a job refused by the guard.
std::string CrashLoopReason(int starts);

}  // namespace spar::orchestrator
