#include "orchestrator/start_guard.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace spar::orchestrator {
namespace {

std::string CountPath(const std::string& job_dir) { return JoinPath(job_dir, "UNFINISHED_STARTS"); }

}  // namespace

int UnfinishedStarts(const std::string& job_dir) {
  absl::StatusOr<std::string> text = ReadFile(CountPath(job_dir));
  int n = 0;
  if (!text.ok() || !absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &n) || n < 0) return 0;
  return n;
}

absl::StatusOr<int> RecordRunnerStart(const std::string& job_dir) {
  const int n = UnfinishedStarts(job_dir) + 1;
  SPAR_RETURN_IF_ERROR(WriteFileAtomic(CountPath(job_dir), absl::StrCat(n, "\n")));
  return n;
}

absl::Status RecordRunnerProgress(const std::string& job_dir) {
  return WriteFileAtomic(CountPath(job_dir), "0\n");
}

absl::Status ClearRunnerStarts(const std::string& job_dir) {
  if (!PathExists(CountPath(job_dir))) return absl::OkStatus();
  return RemoveAll(CountPath(job_dir));
}

std::string CrashLoopReason(int starts) {
  return absl::StrCat("not resumed: the server stopped abnormally (crash, out-of-memory kill) ",
                      starts,
                      " times in a row while running this job without it completing a "
                      "stage; fix the cause, then ResumeJob to try again");
}

}  // namespace spar::orchestrator
