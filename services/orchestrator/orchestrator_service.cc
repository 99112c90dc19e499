#include "services/orchestrator/orchestrator_service.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/auth.h"
#include "services/common/rpc_scopes.h"
#include "services/common/status_util.h"
#include "services/common/stream_sink.h"

namespace spar::services {

OrchestratorService::OrchestratorService(metrics::Registry& registry, AccessPolicy access,
                                         AuditLog* audit)
    : rpc_metrics_(registry, "orchestrator"), access_(std::move(access)), audit_(audit) {}

void OrchestratorService::SetJobManager(orchestrator::JobManager* jobs) {
  std::lock_guard<std::mutex> lock(mu_);
  jobs_ = jobs;
}

orchestrator::JobManager* OrchestratorService::jobs() {
  std::lock_guard<std::mutex> lock(mu_);
  return jobs_;
}

// Authorizes the call (`caller` its token's holder) and takes the manager; returns the refusal.
#define SPAR_REQUIRE_MANAGER(method)                                                    \
  Caller caller{"unknown", Scope::kRead};                                               \
  if (grpc::Status auth = access_.Authorize(*ctx, method, &caller); !auth.ok()) {       \
    rpc_metrics_.Record(method, GrpcCodeName(auth.error_code()), started);              \
    Audit(caller, method, "", static_cast<absl::StatusCode>(auth.error_code()));        \
    auto* r = ctx->DefaultReactor();                                                    \
    r->Finish(auth);                                                                    \
    return r;                                                                           \
  }                                                                                     \
  orchestrator::JobManager* manager = jobs();                                           \
  if (manager == nullptr) {                                                             \
    return FinishUnary(ctx, method, started,                                            \
                       absl::UnavailableError("orchestrator is starting or stopping")); \
  }

grpc::ServerUnaryReactor* OrchestratorService::FinishUnary(grpc::CallbackServerContext* ctx,
                                                           const char* method, absl::Time started,
                                                           const absl::Status& status) {
  grpc::Status g = ToGrpcStatus(status);
  rpc_metrics_.Record(method, GrpcCodeName(g.error_code()), started);
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(g);
  return reactor;
}

void OrchestratorService::Audit(const Caller& caller, const char* method, const std::string& job_id,
                                absl::StatusCode code) {
  if (audit_ != nullptr)
    audit_->Record(caller, method, job_id, absl::StatusCodeToString(code), absl::Now());
}

grpc::ServerUnaryReactor* OrchestratorService::FinishAudited(grpc::CallbackServerContext* ctx,
                                                             const char* method, absl::Time started,
                                                             const absl::Status& status,
                                                             const Caller& caller,
                                                             const std::string& job_id) {
  Audit(caller, method, job_id, status.code());
  return FinishUnary(ctx, method, started, status);
}

absl::Status OrchestratorService::CheckOwner(orchestrator::JobManager& manager,
                                             const Caller& caller, const char* method,
                                             const std::string& job_id) {
  if (caller.scope >= Scope::kAdmin || !RuleOf(method).own_job_only) return absl::OkStatus();
  absl::StatusOr<v1::Job> job = manager.GetJob(job_id);
  if (!job.ok()) return job.status();
  if (job->owner() == caller.name) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      "job ", job_id, " is \"", job->owner(), "\"'s; the token of \"", caller.name, "\" has scope ",
      ScopeName(caller.scope), ", which ", method, "s only its own jobs (admin: any)"));
}

grpc::ServerUnaryReactor* OrchestratorService::CreateJob(grpc::CallbackServerContext* ctx,
                                                         const grpc::ByteBuffer* request,
                                                         grpc::ByteBuffer* response) {
  absl::Time started = absl::Now();
  SPAR_REQUIRE_MANAGER("CreateJob");
  v1::CreateJobRequest parsed;
  grpc::ByteBuffer copy(*request);
  if (!grpc::SerializationTraits<v1::CreateJobRequest>::Deserialize(&copy, &parsed).ok()) {
    return FinishUnary(ctx, "CreateJob", started,
                       absl::InvalidArgumentError("request: not a valid CreateJobRequest "
                                                  "(malformed protobuf or invalid UTF-8)"));
  }
  absl::StatusOr<v1::Job> job = manager->CreateJob(parsed, caller.name);
  if (job.ok()) {
    bool own_buffer = false;
    grpc::Status st = grpc::SerializationTraits<v1::Job>::Serialize(*job, response, &own_buffer);
    if (!st.ok()) job = absl::InternalError("CreateJob: cannot serialize the job");
  }
  return FinishAudited(ctx, "CreateJob", started, job.status(), caller,
                       job.ok() ? job->job_id() : "");
}

grpc::ServerUnaryReactor* OrchestratorService::GetJob(grpc::CallbackServerContext* ctx,
                                                      const v1::GetJobRequest* request,
                                                      v1::Job* response) {
  absl::Time started = absl::Now();
  SPAR_REQUIRE_MANAGER("GetJob");
  if (request->job_id().empty()) {
    return FinishUnary(ctx, "GetJob", started, absl::InvalidArgumentError("job_id is required"));
  }
  absl::StatusOr<v1::Job> job = manager->GetJob(request->job_id());
  if (job.ok()) *response = *std::move(job);
  return FinishUnary(ctx, "GetJob", started, job.status());
}

grpc::ServerUnaryReactor* OrchestratorService::ListJobs(grpc::CallbackServerContext* ctx,
                                                        const v1::ListJobsRequest* request,
                                                        v1::ListJobsResponse* response) {
  absl::Time started = absl::Now();
  SPAR_REQUIRE_MANAGER("ListJobs");
  absl::StatusOr<v1::ListJobsResponse> page = manager->ListJobsPage(*request);
  if (page.ok()) *response = *std::move(page);
  return FinishUnary(ctx, "ListJobs", started, page.status());
}

grpc::ServerUnaryReactor* OrchestratorService::DeleteJob(grpc::CallbackServerContext* ctx,
                                                         const v1::DeleteJobRequest* request,
                                                         v1::DeleteJobResponse*) {
  absl::Time started = absl::Now();
  SPAR_REQUIRE_MANAGER("DeleteJob");
  if (request->job_id().empty()) {
    return FinishUnary(ctx, "DeleteJob", started, absl::InvalidArgumentError("job_id is required"));
  }
  return FinishAudited(ctx, "DeleteJob", started, manager->DeleteJob(request->job_id()), caller,
                       request->job_id());
}

grpc::ServerUnaryReactor* OrchestratorService::CancelJob(grpc::CallbackServerContext* ctx,
                                                         const v1::CancelJobRequest* request,
                                                         v1::Job* response) {
  absl::Time started = absl::Now();
  SPAR_REQUIRE_MANAGER("CancelJob");
  if (request->job_id().empty()) {
    return FinishUnary(ctx, "CancelJob", started, absl::InvalidArgumentError("job_id is required"));
  }
  if (absl::Status own = CheckOwner(*manager, caller, "CancelJob", request->job_id()); !own.ok()) {
    return FinishAudited(ctx, "CancelJob", started, own, caller, request->job_id());
  }
  absl::StatusOr<v1::Job> job = manager->CancelJob(request->job_id());
  if (job.ok()) *response = *std::move(job);
  return FinishAudited(ctx, "CancelJob", started, job.status(), caller, request->job_id());
}

grpc::ServerUnaryReactor* OrchestratorService::ResumeJob(grpc::CallbackServerContext* ctx,
                                                         const v1::ResumeJobRequest* request,
                                                         v1::Job* response) {
  absl::Time started = absl::Now();
  SPAR_REQUIRE_MANAGER("ResumeJob");
  if (request->job_id().empty()) {
    return FinishUnary(ctx, "ResumeJob", started, absl::InvalidArgumentError("job_id is required"));
  }
  if (absl::Status own = CheckOwner(*manager, caller, "ResumeJob", request->job_id()); !own.ok()) {
    return FinishAudited(ctx, "ResumeJob", started, own, caller, request->job_id());
  }
  absl::StatusOr<v1::Job> job = manager->ResumeJob(
      request->job_id(), request->has_judge_budget() ? &request->judge_budget() : nullptr);
  if (job.ok()) *response = *std::move(job);
  return FinishAudited(ctx, "ResumeJob", started, job.status(), caller, request->job_id());
}

grpc::ServerWriteReactor<v1::JobEvent>* OrchestratorService::WatchJob(
    grpc::CallbackServerContext* ctx, const v1::WatchJobRequest* request) {
  absl::Time started = absl::Now();
  auto [reactor, sink] = StreamSink<v1::JobEvent>::Create();
  Caller caller{"unknown", Scope::kRead};
  if (grpc::Status auth = access_.Authorize(*ctx, "WatchJob", &caller); !auth.ok()) {
    rpc_metrics_.Record("WatchJob", GrpcCodeName(auth.error_code()), started);
    Audit(caller, "WatchJob", request->job_id(), static_cast<absl::StatusCode>(auth.error_code()));
    sink->Finish(auth);
    return reactor;
  }
  if (request->job_id().empty()) {
    rpc_metrics_.Record("WatchJob", "INVALID_ARGUMENT", started);
    sink->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "job_id is required"));
    return reactor;
  }
  // The subscriber writes into the sink (non-blocking) and finishes the stream on the job's end.
  orchestrator::JobManager* manager = jobs();
  if (manager == nullptr) {
    sink->Finish(
        grpc::Status(grpc::StatusCode::UNAVAILABLE, "orchestrator is starting or stopping"));
    return reactor;
  }
  absl::StatusOr<int64_t> handle =
      manager->Subscribe(request->job_id(), [this, sink = sink, started](const v1::JobEvent& ev) {
        bool ok = sink->Write(ev);
        if (ev.kind() == "job_finished" || !ok) {
          rpc_metrics_.Record("WatchJob", ok ? "OK" : "CANCELLED", started);
          sink->Finish(ok ? grpc::Status::OK : grpc::Status::CANCELLED);
          return false;
        }
        return true;
      });
  if (!handle.ok()) {
    rpc_metrics_.Record("WatchJob", GrpcCodeName(ToGrpcStatus(handle.status()).error_code()),
                        started);
    sink->Finish(ToGrpcStatus(handle.status()));
  }
  return reactor;
}

}  // namespace spar::services
