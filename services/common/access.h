// What every Spar gRPC service checks before it acts: the caller's bearer token and that its
// scope allows the RPC (services/common/token_table.h, rpc_scopes.h), and that every file path in
// the request lies inside the allowed roots (the data root and the runs dir; empty = anywhere,
// tests only).
// Immutable after construction; thread-safe.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/rpc_metrics.h"
#include "services/common/stream_sink.h"
#include "services/common/token_table.h"

namespace spar::services {

struct AccessPolicy {
  // The service token (holder "service", scope admin), used when `tokens` is null; "" and no
  // `tokens` = auth off. Never logged.
  std::string api_token;
  std::shared_ptr<const TokenTable> tokens;  // the deployment's tokens (service token included)
  std::vector<std::string> path_roots;       // roots[0] is where relative paths are joined

  // OK when the call's token may call `method`; UNAUTHENTICATED (no bearer metadata) or
  // PERMISSION_DENIED (a token no one holds; a scope below the method's, named). *caller, when
  // given, is set to the token's holder once known ("anonymous" with scope admin when auth is
  // off), also when its scope is refused.
  grpc::Status Authorize(const grpc::ServerContextBase& ctx, const std::string& method,
                         Caller* caller = nullptr) const;
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
  grpc::Status auth = access.Authorize(*ctx, method);
  if (auth.ok()) return false;
  metrics.Record(method, GrpcCodeName(auth.error_code()), started);
  sink.Finish(auth);
  return true;
}

}  // namespace spar::services
