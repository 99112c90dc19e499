// gRPC Orchestrator service: thin adapter over orchestrator::JobManager. WatchJob streams the
// manager's events; the manager's runners do the work on their own threads. Thread-safe.
#pragma once

#include <mutex>

#include "common/metrics/registry.h"
#include "orchestrator/job_manager.h"
#include "services/common/access.h"
#include "services/common/rpc_metrics.h"
#include "spar/v1/orchestrator.grpc.pb.h"

namespace spar::services {

// CreateJob is registered raw (bytes in, bytes out) so that a request that is not a valid
// CreateJobRequest gets INVALID_ARGUMENT: gRPC's generated callback handler answers a
// deserialization failure with UNIMPLEMENTED (grpc 1.51, CallbackUnaryHandler::RunHandler).
class OrchestratorService final
    : public v1::Orchestrator::WithRawCallbackMethod_CreateJob<v1::Orchestrator::CallbackService> {
 public:
  // `api_token` empty = no auth; else every RPC needs "authorization: Bearer <api_token>".
  explicit OrchestratorService(metrics::Registry& registry, std::string api_token = "");
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
  // Null until SetJobManager; guarded by mu_ (RPCs take a reference under it).
  orchestrator::JobManager* jobs();
  std::mutex mu_;
  orchestrator::JobManager* jobs_ = nullptr;
  RpcMetrics rpc_metrics_;
  std::string api_token_;
};

}  // namespace spar::services
