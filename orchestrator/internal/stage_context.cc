#include "orchestrator/internal/stage_context.h"

#include <cstdlib>
#include <new>
#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "orchestrator/job_spec.h"
#include "orchestrator/start_guard.h"

namespace spar::orchestrator::internal {

StageContext::StageContext(const std::string& job_id, const std::string& job_dir,
                           const v1::JobSpec& spec, const Ports& ports,
                           const JobRunnerCallbacks& callbacks, const std::atomic<bool>* cancel,
                           const std::string& data_root, const Recipe& recipe,
                           RunnerOptions options)
    : job_id_(job_id),
      job_dir_(job_dir),
      spec_(spec),
      ports_(ports),
      callbacks_(callbacks),
      cancel_(cancel),
      data_root_(data_root),
      recipe_(recipe),
      options_(options) {}

absl::Status StageContext::CheckCancelled() const {
  if (cancel_ != nullptr && cancel_->load()) return absl::CancelledError("job cancelled");
  return absl::OkStatus();
}

CancelCheck StageContext::Cancelled() const {
  return [cancel = cancel_] { return cancel != nullptr && cancel->load(); };
}

void StageContext::Emit(int round, const std::string& stage, const std::string& kind, int64_t done,
                        int64_t total, const std::string& message) const {
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

void StageContext::UpdateJob(const std::function<void(v1::Job&)>& fn) const {
  callbacks_.update_job(fn);
}

std::string StageContext::Key(int t, const std::string& stage) const {
  return absl::StrFormat("%s/iter_%03d/%s", job_id_, t, stage);
}

void StageContext::SetJudgeScope(int t, v1::CompareRequest* req) const {
  req->set_job_id(job_id_);
  req->set_round(t);
  *req->mutable_budget() = spec_.judge_budget();
}

void StageContext::SetJudgeScope(int t, v1::ScoreRequest* req) const {
  req->set_job_id(job_id_);
  req->set_round(t);
  *req->mutable_budget() = spec_.judge_budget();
}

std::string StageContext::PolicyFor(int t) const {
  if (t <= 1) {
    auto base = ResolveDataPath(spec_.base_model(), data_root_, "base_model");
    return base.ok() ? *base : spec_.base_model();
  }
  return dir().Checkpoint(t - 1);
}

double StageContext::MaxJudgeFailureRate() const {
  return spec_.judge().has_max_failure_rate() ? spec_.judge().max_failure_rate()
                                              : kDefaultJudgeMaxFailureRate;
}

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

absl::Status Guarded(const std::function<absl::Status()>& fn) {
  try {
    return fn();
  } catch (const std::bad_alloc& e) {
    return absl::InternalError(absl::StrCat("out of memory (std::bad_alloc): ", e.what()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("unexpected exception: ", e.what()));
  }
}

uint64_t MixSeed(uint64_t seed, uint64_t round, uint64_t salt) {
  uint64_t h =
      seed * 0x9E3779B97F4A7C15ULL ^ (round + 0x632BE59BD9B4E019ULL) * 0xBF58476D1CE4E5B9ULL;
  h ^= salt * 0x94D049BB133111EBULL;
  h ^= h >> 31;
  return h;
}

std::string ReadStage(const RunDir& dir, int t) {
  auto text = ReadFile(dir.Stage(t));
  if (!text.ok()) return "";
  std::string s = *text;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

absl::Status WriteStage(const RunDir& dir, int t, const std::string& stage) {
  // Progress first: the stage's outputs are written, so the crash-loop count restarts before the
  // marker shows the stage done. In the other order a crash between the two (kill -9 right after
  // the marker) left the count of a run that had made progress.
  SPAR_RETURN_IF_ERROR(RecordRunnerProgress(dir.job_dir()));
  return WriteFileAtomic(dir.Stage(t), stage + "\n");
}

}  // namespace spar::orchestrator::internal
