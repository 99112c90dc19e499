#include "services/orchestrator/orchestrator_service.h"

#include "absl/time/clock.h"
#include "services/common/auth.h"
#include "services/common/status_util.h"
#include "services/common/stream_sink.h"

namespace spar::services {

OrchestratorService::OrchestratorService(metrics::Registry& registry, std::string api_token)
    : rpc_metrics_(registry, "orchestrator"), api_token_(std::move(api_token)) {}

void OrchestratorService::SetJobManager(orchestrator::JobManager* jobs) {
  std::lock_guard<std::mutex> lock(mu_);
  jobs_ = jobs;
}

orchestrator::JobManager* OrchestratorService::jobs() {
  std::lock_guard<std::mutex> lock(mu_);
  return jobs_;
}

#define SPAR_REQUIRE_MANAGER(method)                                                    \
  if (grpc::Status auth = CheckBearer(*ctx, api_token_); !auth.ok()) {                  \
    rpc_metrics_.Record(method, GrpcCodeName(auth.error_code()), started);              \
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
  absl::StatusOr<v1::Job> job = manager->CreateJob(parsed);
  if (job.ok()) {
    bool own_buffer = false;
    grpc::Status st = grpc::SerializationTraits<v1::Job>::Serialize(*job, response, &own_buffer);
    if (!st.ok()) job = absl::InternalError("CreateJob: cannot serialize the job");
  }
  return FinishUnary(ctx, "CreateJob", started, job.status());
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
  return FinishUnary(ctx, "DeleteJob", started, manager->DeleteJob(request->job_id()));
}

grpc::ServerUnaryReactor* OrchestratorService::CancelJob(grpc::CallbackServerContext* ctx,
                                                         const v1::CancelJobRequest* request,
                                                         v1::Job* response) {
  absl::Time started = absl::Now();
  SPAR_REQUIRE_MANAGER("CancelJob");
  if (request->job_id().empty()) {
    return FinishUnary(ctx, "CancelJob", started, absl::InvalidArgumentError("job_id is required"));
  }
  absl::StatusOr<v1::Job> job = manager->CancelJob(request->job_id());
  if (job.ok()) *response = *std::move(job);
  return FinishUnary(ctx, "CancelJob", started, job.status());
}

grpc::ServerUnaryReactor* OrchestratorService::ResumeJob(grpc::CallbackServerContext* ctx,
                                                         const v1::ResumeJobRequest* request,
                                                         v1::Job* response) {
  absl::Time started = absl::Now();
  SPAR_REQUIRE_MANAGER("ResumeJob");
  if (request->job_id().empty()) {
    return FinishUnary(ctx, "ResumeJob", started, absl::InvalidArgumentError("job_id is required"));
  }
  absl::StatusOr<v1::Job> job = manager->ResumeJob(
      request->job_id(), request->has_judge_budget() ? &request->judge_budget() : nullptr);
  if (job.ok()) *response = *std::move(job);
  return FinishUnary(ctx, "ResumeJob", started, job.status());
}

grpc::ServerWriteReactor<v1::JobEvent>* OrchestratorService::WatchJob(
    grpc::CallbackServerContext* ctx, const v1::WatchJobRequest* request) {
  absl::Time started = absl::Now();
  auto [reactor, sink] = StreamSink<v1::JobEvent>::Create();
  if (grpc::Status auth = CheckBearer(*ctx, api_token_); !auth.ok()) {
    rpc_metrics_.Record("WatchJob", GrpcCodeName(auth.error_code()), started);
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
