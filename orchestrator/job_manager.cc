#include "orchestrator/job_manager.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/utf8.h"
#include "orchestrator/internal/job_metrics.h"
#include "orchestrator/job_runner.h"
#include "orchestrator/job_spec.h"
#include "orchestrator/request_limits.h"
#include "orchestrator/run_dir.h"
#include "orchestrator/start_guard.h"
#include "orchestrator/training_config.h"

namespace spar::orchestrator {

bool IsTerminal(v1::JobState s) {
  return s == v1::JOB_STATE_SUCCEEDED || s == v1::JOB_STATE_FAILED || s == v1::JOB_STATE_CANCELLED;
}

const char* JobStateName(v1::JobState s) {
  switch (s) {
    case v1::JOB_STATE_PENDING:
      return "pending";
    case v1::JOB_STATE_RUNNING:
      return "running";
    case v1::JOB_STATE_SUCCEEDED:
      return "succeeded";
    case v1::JOB_STATE_FAILED:
      return "failed";
    case v1::JOB_STATE_CANCELLED:
      return "cancelled";
    case v1::JOB_STATE_PAUSED:
      return "paused";
    default:
      return "unspecified";
  }
}

namespace {

uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

std::string SanitizeName(const std::string& name) {
  std::string out;
  for (char c : name) {
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')
      out += c;
    else if (c >= 'A' && c <= 'Z')
      out += static_cast<char>(c - 'A' + 'a');
    else if (c == '_' || c == ' ' || c == '.')
      out += '-';
    if (out.size() >= 32) break;
  }
  return out.empty() ? "job" : out;
}

std::string ToJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.add_whitespace = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, options);
  return out;
}

int64_t NowMs() { return absl::ToUnixMillis(absl::Now()); }

}  // namespace

struct JobManager::Impl {
  struct Entry {
    v1::Job job;
    std::string dir;
    std::atomic<bool> cancel{false};
    bool user_cancelled = false;
    bool running = false;
    std::thread thread;
    std::map<std::string, absl::Time> stage_started;
  };

  JobManagerConfig config;
  Ports ports;
  internal::JobMetrics m;
  mutable std::mutex mu;
  std::map<std::string, std::unique_ptr<Entry>> jobs;
  bool shutting_down = false;
  std::mutex subs_mu;
  int64_t next_sub = 1;
  std::map<int64_t, std::pair<std::string, std::function<bool(const v1::JobEvent&)>>> subs;

  void RefreshJobGauges() {  // requires mu
    std::vector<v1::JobState> states;
    for (const auto& [id, e] : jobs) states.push_back(e->job.state());
    m.SetJobStates(states);
  }

  absl::Status Persist(const Entry& e) {  // requires mu
    return WriteFileAtomic(RunDir(e.dir).JobJson(), ToJson(e.job));
  }

  void Publish(const v1::JobEvent& ev) {
    std::vector<int64_t> done;
    std::lock_guard<std::mutex> lock(subs_mu);
    for (auto& [h, sub] : subs) {
      if (sub.first != ev.job_id()) continue;
      if (!sub.second(ev)) done.push_back(h);
    }
    for (int64_t h : done) subs.erase(h);
  }

  void OnRunnerEvent(Entry* e, v1::JobEvent ev) {
    // Messages may quote outside text (a file's line, an engine's words): proto strings and
    // events.jsonl hold valid UTF-8 only.
    ev.set_message(SanitizeUtf8(ev.message()));
    {
      std::lock_guard<std::mutex> lock(mu);
      std::string key = absl::StrCat(ev.round(), "/", ev.stage());
      if (ev.kind() == "stage_started") e->stage_started[key] = absl::Now();
      if (ev.kind() == "stage_finished" && e->stage_started.count(key)) {
        m.StageFinished(ev.stage(), absl::ToDoubleSeconds(absl::Now() - e->stage_started[key]));
      }
      if (ev.kind() == "round_finished") {
        *ev.mutable_job() = e->job;
        if (ev.round() >= 1 && ev.round() <= e->job.rounds_size()) {
          m.RoundFinished(ev.round(), e->job.rounds(ev.round() - 1));
        }
      }
      if (ev.kind() != "progress") {
        (void)AppendLine(RunDir(e->dir).Events(),
                         DumpJson(nlohmann::json({{"time_ms", NowMs()},
                                                  {"round", ev.round()},
                                                  {"stage", ev.stage()},
                                                  {"kind", ev.kind()},
                                                  {"message", ev.message()}})));
      }
    }
    Publish(ev);
  }

  void UpdateJob(Entry* e, const std::function<void(v1::Job&)>& fn) {
    std::lock_guard<std::mutex> lock(mu);
    fn(e->job);
    e->job.set_updated_unix_ms(NowMs());
    absl::Status st = Persist(*e);
    if (!st.ok()) SPAR_LOG(Error) << "persisting job " << e->job.job_id() << ": " << st;
  }

  // A job whose runner did not return kMaxUnfinishedStarts times in a row (the server crashed
  // while running it) is marked FAILED instead of resumed (orchestrator/start_guard.h).
  bool RefuseCrashLoop(Entry* e) {  // requires mu
    const int starts = UnfinishedStarts(e->dir);
    if (starts < kMaxUnfinishedStarts) return false;
    e->job.set_state(v1::JOB_STATE_FAILED);
    e->job.set_error(CrashLoopReason(starts));
    e->job.set_updated_unix_ms(NowMs());
    (void)Persist(*e);
    SPAR_LOG(Error) << "job " << e->job.job_id() << " " << e->job.error();
    return true;
  }

  void StartRunner(Entry* e) {  // requires mu
    if (e->running) return;
    if (e->thread.joinable()) e->thread.join();
    e->running = true;
    e->cancel.store(false);
    e->user_cancelled = false;
    e->job.set_state(v1::JOB_STATE_RUNNING);
    e->job.set_error("");
    (void)Persist(*e);
    RefreshJobGauges();
    e->thread = std::thread([this, e] { RunJob(e); });
  }

  void RunJob(Entry* e) {
    std::string job_id;
    v1::JobSpec spec;
    {
      std::lock_guard<std::mutex> lock(mu);
      job_id = e->job.job_id();
      spec = e->job.spec();
    }
    JobRunnerCallbacks cb;
    cb.on_event = [this, e](const v1::JobEvent& ev) { OnRunnerEvent(e, ev); };
    cb.update_job = [this, e](const std::function<void(v1::Job&)>& fn) { UpdateJob(e, fn); };
    JobRunner runner(job_id, e->dir, spec, ports, cb, &e->cancel, config.data_root);
    absl::Status st = runner.Run();
    v1::JobEvent done;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (st.ok()) {
        e->job.set_state(v1::JOB_STATE_SUCCEEDED);
        e->job.set_current_stage("done");
      } else if (absl::IsCancelled(st) && !e->user_cancelled) {
        // Shutdown: leave the job RUNNING on disk so the next start resumes it.
        e->running = false;
        return;
      } else if (absl::IsCancelled(st)) {
        e->job.set_state(v1::JOB_STATE_CANCELLED);
      } else if (absl::IsResourceExhausted(st)) {
        // Judge quota or budget: resumable with ResumeJob once the limit is raised.
        e->job.set_state(v1::JOB_STATE_PAUSED);
        e->job.set_error(SanitizeUtf8(st.message()));
        SPAR_LOG(Warning) << "job " << job_id << " paused: " << st;
      } else {
        e->job.set_state(v1::JOB_STATE_FAILED);
        e->job.set_error(SanitizeUtf8(st.message()));
        m.StageFailed(e->job.current_stage());
        SPAR_LOG(Error) << "job " << job_id << " failed: " << st;
      }
      e->job.set_updated_unix_ms(NowMs());
      (void)Persist(*e);
      e->running = false;
      RefreshJobGauges();
      done.set_job_id(job_id);
      done.set_kind("job_finished");
      done.set_round(e->job.current_round());
      done.set_message(st.ok() ? "succeeded" : SanitizeUtf8(st.message()));
      *done.mutable_job() = e->job;
      (void)AppendLine(RunDir(e->dir).Events(),
                       DumpJson(nlohmann::json({{"time_ms", NowMs()},
                                                {"kind", "job_finished"},
                                                {"state", JobStateName(e->job.state())},
                                                {"message", done.message()}})));
    }
    Publish(done);
  }
};

JobManager::JobManager(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

JobManager::~JobManager() { Shutdown(); }

absl::StatusOr<std::unique_ptr<JobManager>> JobManager::Create(JobManagerConfig config, Ports ports,
                                                               metrics::Registry* registry) {
  if (ports.sampler == nullptr || ports.oracle == nullptr || ports.trainer == nullptr) {
    return absl::InvalidArgumentError("orchestrator: all three ports are required");
  }
  SPAR_RETURN_IF_ERROR(MakeDirs(config.runs_dir));
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  impl->ports = ports;
  impl->m = internal::JobMetrics(registry);
  SPAR_ASSIGN_OR_RETURN(std::vector<std::string> names, ListDir(config.runs_dir));
  std::lock_guard<std::mutex> lock(impl->mu);
  for (const std::string& name : names) {
    std::string dir = JoinPath(config.runs_dir, name);
    std::string path = RunDir(dir).JobJson();
    if (!PathExists(path)) continue;
    auto text = ReadFile(path);
    if (!text.ok()) continue;
    auto e = std::make_unique<Impl::Entry>();
    google::protobuf::util::JsonParseOptions opts;
    opts.ignore_unknown_fields = true;
    if (!google::protobuf::util::JsonStringToMessage(*text, &e->job, opts).ok()) {
      SPAR_LOG(Warning) << "skipping unreadable job record " << path;
      continue;
    }
    e->dir = dir;
    impl->jobs[e->job.job_id()] = std::move(e);
  }
  if (config.resume_on_start) {
    for (auto& [id, e] : impl->jobs) {
      if (e->job.state() == v1::JOB_STATE_RUNNING || e->job.state() == v1::JOB_STATE_PENDING) {
        if (impl->RefuseCrashLoop(e.get())) continue;
        SPAR_LOG(Info) << "resuming job " << id << " at round " << e->job.current_round()
                       << " stage after \"" << e->job.current_stage() << "\"";
        impl->StartRunner(e.get());
      }
    }
  }
  impl->RefreshJobGauges();
  return std::unique_ptr<JobManager>(new JobManager(std::move(impl)));
}

namespace {

// Two specs ask for the same job. judge_budget is left out: ResumeJob may have raised it since.
bool SameSpec(const v1::JobSpec& a, const v1::JobSpec& b) {
  v1::JobSpec x = a, y = b;
  x.clear_judge_budget();
  y.clear_judge_budget();
  return google::protobuf::util::MessageDifferencer::Equals(x, y);
}

}  // namespace

absl::StatusOr<v1::Job> JobManager::CreateJob(const v1::CreateJobRequest& request,
                                              const std::string& owner) {
  SPAR_RETURN_IF_ERROR(CheckRequestLimits(request));
  v1::JobSpec spec =
      WithDefaults(request.spec(), PromptsCarryGold(request.spec(), impl_->config.data_root));
  SPAR_RETURN_IF_ERROR(ValidateJobSpec(spec, impl_->config.data_root));
  SPAR_ASSIGN_OR_RETURN(std::string base,
                        ResolveDataPath(spec.base_model(), impl_->config.data_root, "base_model"));
  // Its devices, and the base model as training will need it: refused now, not after sampling
  // and judging were paid for.
  SPAR_RETURN_IF_ERROR(CheckTrainingOnTrainer(spec, base, *impl_->ports.trainer));
  std::string name = SanitizeName(spec.name());
  std::string job_id;
  if (!request.request_id().empty()) {
    job_id = absl::StrFormat("%s-%010x", name, Fnv1a(request.request_id()) & 0xFFFFFFFFFFULL);
  } else {
    static std::atomic<uint64_t> counter{0};
    std::mt19937_64 rng(static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())) + counter++);
    job_id = absl::StrFormat("%s-%010x", name, rng() & 0xFFFFFFFFFFULL);
  }
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (impl_->shutting_down) return absl::UnavailableError("orchestrator is shutting down");
  if (!request.request_id().empty()) {
    for (const auto& [id, entry] : impl_->jobs) {
      // Records from before request_id was stored match by id (same name and request_id).
      const bool same_request = entry->job.request_id() == request.request_id() ||
                                (entry->job.request_id().empty() && id == job_id);
      if (!same_request) continue;
      if (!entry->job.owner().empty() && entry->job.owner() != owner) {
        return absl::AlreadyExistsError(absl::StrCat("request_id: \"", request.request_id(),
                                                     "\" was used by another token's holder; use a "
                                                     "new request_id"));
      }
      if (SameSpec(entry->job.spec(), spec)) return entry->job;  // idempotent by request_id
      return absl::AlreadyExistsError(
          absl::StrCat("request_id: \"", request.request_id(), "\" already created job ", id,
                       " with a different spec; use a new request_id for a new job"));
    }
  }
  if (impl_->jobs.count(job_id) > 0) {
    return absl::AlreadyExistsError(absl::StrCat("job ", job_id, " already exists"));
  }
  auto e = std::make_unique<Impl::Entry>();
  e->dir = JoinPath(impl_->config.runs_dir, job_id);
  SPAR_RETURN_IF_ERROR(MakeDirs(e->dir));
  e->job.set_job_id(job_id);
  e->job.set_request_id(request.request_id());
  e->job.set_owner(owner);
  *e->job.mutable_spec() = spec;
  e->job.set_state(v1::JOB_STATE_PENDING);
  e->job.set_created_unix_ms(NowMs());
  e->job.set_updated_unix_ms(NowMs());
  SPAR_RETURN_IF_ERROR(impl_->Persist(*e));
  Impl::Entry* raw = e.get();
  impl_->jobs[job_id] = std::move(e);
  impl_->StartRunner(raw);
  SPAR_LOG(Info) << "created job " << job_id;
  return raw->job;
}

absl::StatusOr<v1::Job> JobManager::GetJob(const std::string& job_id) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto it = impl_->jobs.find(job_id);
  if (it == impl_->jobs.end())
    return absl::NotFoundError(absl::StrCat("job_id: no job \"", job_id, "\""));
  return it->second->job;
}

std::vector<v1::Job> JobManager::ListJobs(v1::JobState filter) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<v1::Job> out;
  for (const auto& [id, e] : impl_->jobs) {
    if (filter == v1::JOB_STATE_UNSPECIFIED || e->job.state() == filter) out.push_back(e->job);
  }
  std::sort(out.begin(), out.end(), [](const v1::Job& a, const v1::Job& b) {
    return a.created_unix_ms() < b.created_unix_ms();
  });
  return out;
}

namespace {

constexpr int kDefaultPageSize = 50;
constexpr int kMaxPageSize = 500;
constexpr size_t kMaxPageBytes = 2 << 20;

// The page token: the sort key (created_unix_ms, job_id) of the page's last job, web-safe base64.
std::string PageToken(const v1::Job& last) {
  return absl::WebSafeBase64Escape(absl::StrCat(last.created_unix_ms(), "/", last.job_id()));
}

}  // namespace

absl::StatusOr<v1::ListJobsResponse> JobManager::ListJobsPage(
    const v1::ListJobsRequest& request) const {
  if (request.page_size() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size must be >= 0, got ", request.page_size()));
  }
  const int page_size =
      request.page_size() == 0 ? kDefaultPageSize : std::min(request.page_size(), kMaxPageSize);
  int64_t after_ms = 0;
  std::string after_id;
  if (!request.page_token().empty()) {
    std::string raw;
    std::vector<std::string> parts;
    if (absl::WebSafeBase64Unescape(request.page_token(), &raw)) {
      parts = absl::StrSplit(raw, absl::MaxSplits('/', 1));
    }
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &after_ms)) {
      return absl::InvalidArgumentError("page_token: not a token from ListJobs");
    }
    after_id = parts[1];
  }
  v1::ListJobsResponse out;
  size_t bytes = 0;
  for (v1::Job& job : ListJobs(request.state())) {
    if (!request.page_token().empty() &&
        std::make_pair(job.created_unix_ms(), job.job_id()) <= std::make_pair(after_ms, after_id)) {
      continue;
    }
    const size_t size = job.ByteSizeLong();
    if (out.jobs_size() == page_size || (out.jobs_size() > 0 && bytes + size > kMaxPageBytes)) {
      out.set_next_page_token(PageToken(out.jobs(out.jobs_size() - 1)));
      break;
    }
    bytes += size;
    *out.add_jobs() = std::move(job);
  }
  return out;
}

absl::Status JobManager::DeleteJob(const std::string& job_id) {
  std::unique_ptr<Impl::Entry> removed;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->jobs.find(job_id);
    if (it == impl_->jobs.end()) {
      return absl::NotFoundError(absl::StrCat("job_id: no job \"", job_id, "\""));
    }
    Impl::Entry* e = it->second.get();
    if (e->running || e->job.state() == v1::JOB_STATE_RUNNING ||
        e->job.state() == v1::JOB_STATE_PENDING) {
      return absl::FailedPreconditionError(
          absl::StrCat("job_id: job ", job_id, " is running; cancel it first"));
    }
    // Only the directory CreateJob made: runs_dir/<job_id>, holding its job.json.
    const std::string dir = JoinPath(impl_->config.runs_dir, job_id);
    if (e->dir != dir || !PathExists(RunDir(dir).JobJson())) {
      return absl::FailedPreconditionError(
          absl::StrCat("job_id: ", dir, " is not the run directory of job ", job_id));
    }
    SPAR_RETURN_IF_ERROR(RemoveAll(RunDir(dir).JobJson()));
    removed = std::move(it->second);
    impl_->jobs.erase(it);
    impl_->RefreshJobGauges();
  }
  if (removed->thread.joinable()) removed->thread.join();  // a runner's last lines after it ended
  SPAR_LOG(Info) << "deleted job " << job_id;
  return RemoveAll(removed->dir);
}

absl::StatusOr<v1::Job> JobManager::CancelJob(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto it = impl_->jobs.find(job_id);
  if (it == impl_->jobs.end())
    return absl::NotFoundError(absl::StrCat("job_id: no job \"", job_id, "\""));
  Impl::Entry* e = it->second.get();
  if (IsTerminal(e->job.state())) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", job_id, " already ended (", JobStateName(e->job.state()), ")"));
  }
  e->user_cancelled = true;
  e->cancel.store(true);
  if (!e->running) {
    e->job.set_state(v1::JOB_STATE_CANCELLED);
    SPAR_RETURN_IF_ERROR(impl_->Persist(*e));
  }
  return e->job;
}

absl::StatusOr<v1::Job> JobManager::ResumeJob(const std::string& job_id,
                                              const v1::JudgeBudget* judge_budget) {
  if (judge_budget != nullptr) {
    SPAR_RETURN_IF_ERROR(ValidateJudgeBudget(*judge_budget, "judge_budget"));
  }
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto it = impl_->jobs.find(job_id);
  if (it == impl_->jobs.end())
    return absl::NotFoundError(absl::StrCat("job_id: no job \"", job_id, "\""));
  Impl::Entry* e = it->second.get();
  if (e->running) {
    if (judge_budget != nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("job ", job_id, " is running; its judge_budget changes only on resume"));
    }
    return e->job;
  }
  if (e->job.state() == v1::JOB_STATE_SUCCEEDED) {
    return absl::FailedPreconditionError(absl::StrCat("job ", job_id, " already succeeded"));
  }
  if (judge_budget != nullptr) {
    // Merge: only the limits set in the request change (proto3 optional fields).
    e->job.mutable_spec()->mutable_judge_budget()->MergeFrom(*judge_budget);
    SPAR_LOG(Info) << "job " << job_id << " judge_budget now "
                   << e->job.spec().judge_budget().ShortDebugString();
  }
  SPAR_RETURN_IF_ERROR(ClearRunnerStarts(e->dir));  // an explicit resume: the guard starts over
  impl_->StartRunner(e);
  return e->job;
}

absl::StatusOr<int64_t> JobManager::Subscribe(const std::string& job_id,
                                              std::function<bool(const v1::JobEvent&)> on_event) {
  v1::JobEvent snapshot;
  bool terminal = false;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->jobs.find(job_id);
    if (it == impl_->jobs.end())
      return absl::NotFoundError(absl::StrCat("job_id: no job \"", job_id, "\""));
    snapshot.set_job_id(job_id);
    snapshot.set_kind("snapshot");
    snapshot.set_round(it->second->job.current_round());
    snapshot.set_stage(it->second->job.current_stage());
    *snapshot.mutable_job() = it->second->job;
    terminal =
        (IsTerminal(it->second->job.state()) || it->second->job.state() == v1::JOB_STATE_PAUSED) &&
        !it->second->running;
    // Register under the job lock so no event between snapshot and subscription is lost.
    std::lock_guard<std::mutex> slock(impl_->subs_mu);
    if (!on_event(snapshot)) return int64_t{0};
    if (terminal) {
      v1::JobEvent done = snapshot;
      done.set_kind("job_finished");
      on_event(done);
      return int64_t{0};
    }
    int64_t h = impl_->next_sub++;
    impl_->subs[h] = {job_id, std::move(on_event)};
    return h;
  }
}

void JobManager::Unsubscribe(int64_t handle) {
  std::lock_guard<std::mutex> lock(impl_->subs_mu);
  impl_->subs.erase(handle);
}

void JobManager::Shutdown() {
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->shutting_down = true;
    for (auto& [id, e] : impl_->jobs) {
      e->cancel.store(true);
      if (e->thread.joinable()) threads.push_back(std::move(e->thread));
    }
  }
  for (std::thread& t : threads) t.join();
}

}  // namespace spar::orchestrator
