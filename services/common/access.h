// What every Spar gRPC service checks before it acts: the caller's bearer token (one shared
// service token from SPAR_API_TOKEN; "" = auth off) and that every file path in the request lies
// inside the allowed roots (the data root and the runs dir; empty = anywhere, tests only).
// Immutable after construction; thread-safe.
#pragma once

#include <grpcpp/grpcpp.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/rpc_metrics.h"
#include "services/common/stream_sink.h"

namespace spar::services {

struct AccessPolicy {
  std::string api_token;                // never logged
  std::vector<std::string> path_roots;  // roots[0] is where relative paths are joined

  // OK, UNAUTHENTICATED (no bearer metadata) or PERMISSION_DENIED (wrong token).
  grpc::Status Authorize(const grpc::ServerContextBase& ctx) const;
  // The resolved path, or InvalidArgument naming `field` (see common/path_confine.h).
  absl::StatusOr<std::string> Confine(const std::string& path, const std::string& field) const;
};

// Unary RPCs: null when `ctx` is authorized; else a reactor already finished with the error
// (the RPC returns it as is), recorded in `metrics`.
grpc::ServerUnaryReactor* RejectUnauthorized(grpc::CallbackServerContext* ctx,
                                             const AccessPolicy& access, RpcMetrics& metrics,
                                             const char* method, absl::Time started);

// Server-streaming RPCs: true (and `sink` finished with the error) when `ctx` is not authorized.
template <typename Msg>
bool RejectUnauthorizedStream(grpc::CallbackServerContext* ctx, const AccessPolicy& access,
                              RpcMetrics& metrics, const char* method, absl::Time started,
                              StreamSink<Msg>& sink) {
  grpc::Status auth = access.Authorize(*ctx);
  if (auth.ok()) return false;
  metrics.Record(method, GrpcCodeName(auth.error_code()), started);
  sink.Finish(auth);
  return true;
}

}  // namespace spar::services
