// gRPC Oracle service: puts oracle_client behind gRPC so the judge's key, rate limits and retries
// live in one process. Compare streams judgments as they complete; judging runs on the client's
// own worker threads, never on a gRPC callback thread. Thread-safe.
#pragma once

#include "common/metrics/registry.h"
#include "oracle_client/oracle_client.h"
#include "services/common/access.h"
#include "services/common/rpc_metrics.h"
#include "services/common/worker_threads.h"
#include "spar/v1/oracle.grpc.pb.h"

namespace spar::services {

class OracleService final : public v1::Oracle::CallbackService {
 public:
  // `client` must outlive the service. Every RPC checks `access`'s token.
  OracleService(oracle::OracleClient& client, metrics::Registry& registry,
                AccessPolicy access = {});
  ~OracleService() override;

  grpc::ServerWriteReactor<v1::Judgment>* Compare(grpc::CallbackServerContext* ctx,
                                                  const v1::CompareRequest* request) override;
  // Side-by-side 6-point scores (OracleClient::ScoreSideBySideAll), one result per item.
  grpc::ServerWriteReactor<v1::ScoreResult>* Score(grpc::CallbackServerContext* ctx,
                                                   const v1::ScoreRequest* request) override;
  grpc::ServerUnaryReactor* GetUsage(grpc::CallbackServerContext* ctx,
                                     const v1::GetUsageRequest* request,
                                     v1::GetUsageResponse* response) override;

 private:
  oracle::OracleClient& client_;
  const AccessPolicy access_;
  RpcMetrics rpc_metrics_;
  WorkerThreads workers_;  // last: joined before the members above go away
};

}  // namespace spar::services
