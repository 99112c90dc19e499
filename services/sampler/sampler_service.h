// gRPC Sampler service: Generate streams one result per prompt as the sampler finishes each
// chunk; generation runs on a worker thread, never on a gRPC callback thread. Thread-safe.
#pragma once

#include "common/metrics/registry.h"
#include "sampler/sampler.h"
#include "services/common/access.h"
#include "services/common/rpc_metrics.h"
#include "services/common/worker_threads.h"
#include "spar/v1/sampler.grpc.pb.h"

namespace spar::services {

class SamplerService final : public v1::Sampler::CallbackService {
 public:
  // `sampler` must outlive the service. Every RPC checks `access`'s token; policy paths must lie
  // inside its roots (INVALID_ARGUMENT naming "policy" otherwise).
  SamplerService(sampler::Sampler& sampler, metrics::Registry& registry, AccessPolicy access = {});
  ~SamplerService() override;

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* ctx, const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* LoadPolicy(grpc::CallbackServerContext* ctx,
                                       const v1::LoadPolicyRequest* request,
                                       v1::LoadPolicyResponse* response) override;
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* ctx,
                                      const v1::GetSamplerStatusRequest* request,
                                      v1::GetSamplerStatusResponse* response) override;

 private:
  sampler::Sampler& sampler_;
  const AccessPolicy access_;
  RpcMetrics rpc_metrics_;
  metrics::Counter& prompts_;
  metrics::Counter& samples_;
  metrics::Counter& tokens_;
  metrics::Gauge& tokens_per_second_;
  metrics::Gauge& in_flight_;
  WorkerThreads workers_;  // last: joined before the members above go away
};

// Converts and validates the request's sampling parameters (INVALID_ARGUMENT naming the field).
absl::StatusOr<sampler::SamplingParams> FromProto(const v1::SamplingParams& params);

}  // namespace spar::services
