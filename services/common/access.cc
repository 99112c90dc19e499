#include "services/common/access.h"

#include "common/path_confine.h"
#include "services/common/auth.h"

namespace spar::services {

grpc::Status AccessPolicy::Authorize(const grpc::ServerContextBase& ctx) const {
  return CheckBearer(ctx, api_token);
}

absl::StatusOr<std::string> AccessPolicy::Confine(const std::string& path,
                                                  const std::string& field) const {
  return ConfinePath(path, path_roots, field);
}

grpc::ServerUnaryReactor* RejectUnauthorized(grpc::CallbackServerContext* ctx,
                                             const AccessPolicy& access, RpcMetrics& metrics,
                                             const char* method, absl::Time started) {
  grpc::Status auth = access.Authorize(*ctx);
  if (auth.ok()) return nullptr;
  metrics.Record(method, GrpcCodeName(auth.error_code()), started);
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(auth);
  return reactor;
}

}  // namespace spar::services
