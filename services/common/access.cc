#include "services/common/access.h"

#include "absl/strings/str_cat.h"
#include "common/path_confine.h"
#include "services/common/auth.h"
#include "services/common/rpc_scopes.h"

namespace spar::services {

grpc::Status AccessPolicy::Authorize(const grpc::ServerContextBase& ctx, const std::string& method,
                                     Caller* caller) const {
  Caller who{"anonymous", Scope::kAdmin};
  const bool on = tokens != nullptr ? tokens->enabled() : !api_token.empty();
  if (on) {
    std::optional<std::string> given = BearerOf(ctx);
    if (!given) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "missing \"authorization: Bearer <token>\" metadata");
    }
    std::optional<Caller> found;
    if (tokens != nullptr) {
      found = tokens->Find(*given);
    } else if (ConstantTimeEquals(*given, api_token)) {
      found = Caller{"service", Scope::kAdmin};
    }
    if (!found) return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "invalid bearer token");
    who = *std::move(found);
  }
  const RpcRule rule = RuleOf(method);
  if (caller != nullptr) *caller = who;
  if (who.scope < rule.least) {
    return grpc::Status(
        grpc::StatusCode::PERMISSION_DENIED,
        absl::StrCat("the token of \"", who.name, "\" has scope ", ScopeName(who.scope), "; ",
                     method, " needs ", ScopeName(rule.least)));
  }
  return grpc::Status::OK;
}

absl::StatusOr<std::string> AccessPolicy::Confine(const std::string& path,
                                                  const std::string& field) const {
  return ConfinePath(path, path_roots, field);
}

grpc::ServerUnaryReactor* RejectUnauthorized(grpc::CallbackServerContext* ctx,
                                             const AccessPolicy& access, RpcMetrics& metrics,
                                             const char* method, absl::Time started) {
  grpc::Status auth = access.Authorize(*ctx, method);
  if (auth.ok()) return nullptr;
  metrics.Record(method, GrpcCodeName(auth.error_code()), started);
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(auth);
  return reactor;
}

}  // namespace spar::services
