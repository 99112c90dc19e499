// gRPC Orchestrator service: thin adapter over orchestrator::JobManager. WatchJob streams the
// manager's events; the manager's runners do the work on their own threads. Every RPC is
// authorized by the caller's token and scope (services/common/rpc_scopes.h): CreateJob records
// the holder as the job's owner, a submit-scoped caller cancels and resumes only its own jobs,
// and every action (CreateJob, CancelJob, ResumeJob, DeleteJob) and every refused call is written
// to the audit log when there is one. Thread-safe.
#pragma once

#include <mutex>

#include "common/metrics/registry.h"
#include "orchestrator/job_manager.h"
#include "services/common/access.h"
#include "services/common/audit_log.h"
#include "services/common/rpc_metrics.h"
#include "spar/v1/orchestrator.grpc.pb.h"

namespace spar::services {

// CreateJob is registered raw (bytes in, bytes out) so that a request that is not a valid
// CreateJobRequest gets INVALID_ARGUMENT: gRPC's generated callback handler answers a
// deserialization failure with UNIMPLEMENTED (grpc 1.51, CallbackUnaryHandler::RunHandler).
class OrchestratorService final
    : public v1::Orchestrator::WithRawCallbackMethod_CreateJob<v1::Orchestrator::CallbackService> {
 public:
  // `access`: who may call (its path roots are unused here). `audit`: null = no audit log; else
  // it must outlive the service.
  explicit OrchestratorService(metrics::Registry& registry, AccessPolicy access = {},
                               AuditLog* audit = nullptr);
  // Every RPC answers UNAVAILABLE until a manager is set (it must outlive its use; pass nullptr
  // before destroying it).
  void SetJobManager(orchestrator::JobManager* jobs);

  grpc::ServerUnaryReactor* CreateJob(grpc::CallbackServerContext* ctx,
                                      const grpc::ByteBuffer* request,
                                      grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* ctx,
                                   const v1::GetJobRequest* request, v1::Job* response) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* ctx,
                                     const v1::ListJobsRequest* request,
                                     v1::ListJobsResponse* response) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* ctx,
                                      const v1::CancelJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerUnaryReactor* ResumeJob(grpc::CallbackServerContext* ctx,
                                      const v1::ResumeJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerUnaryReactor* DeleteJob(grpc::CallbackServerContext* ctx,
                                      const v1::DeleteJobRequest* request,
                                      v1::DeleteJobResponse* response) override;
  grpc::ServerWriteReactor<v1::JobEvent>* WatchJob(grpc::CallbackServerContext* ctx,
                                                   const v1::WatchJobRequest* request) override;

 private:
  grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* ctx, const char* method,
                                        absl::Time started, const absl::Status& status);
  // FinishUnary, audited: an action (any outcome) or a refused call.
  grpc::ServerUnaryReactor* FinishAudited(grpc::CallbackServerContext* ctx, const char* method,
                                          absl::Time started, const absl::Status& status,
                                          const Caller& caller, const std::string& job_id);
  // The refusal of `caller` acting on `job_id` when its scope allows only its own jobs
  // (RpcRule::own_job_only) and the job is another holder's; OK otherwise.
  absl::Status CheckOwner(orchestrator::JobManager& manager, const Caller& caller,
                          const char* method, const std::string& job_id);
  void Audit(const Caller& caller, const char* method, const std::string& job_id,
             absl::StatusCode code);
  // Null until SetJobManager; guarded by mu_ (RPCs take a reference under it).
  orchestrator::JobManager* jobs();
  std::mutex mu_;
  orchestrator::JobManager* jobs_ = nullptr;
  RpcMetrics rpc_metrics_;
  const AccessPolicy access_;
  AuditLog* const audit_;
};

}  // namespace spar::services
