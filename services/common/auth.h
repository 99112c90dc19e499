// Optional bearer-token auth over gRPC metadata ("authorization: Bearer <token>"). The token
// comes from the environment (SPAR_API_TOKEN), never from flags or config files, and is never
// logged. Comparison is constant-time. grpc.health.v1 is a separate service and stays open.
#pragma once

#include <grpcpp/grpcpp.h>

#include <optional>
#include <string>

namespace spar::services {

// OK when `token` is empty (auth off) or the call carries the right bearer token; otherwise
// UNAUTHENTICATED (missing header) or PERMISSION_DENIED (wrong token).
grpc::Status CheckBearer(const grpc::ServerContextBase& ctx, const std::string& token);

// Adds the bearer header to an outgoing call when `token` is not empty.
void AddBearer(grpc::ClientContext* ctx, const std::string& token);

bool ConstantTimeEquals(const std::string& a, const std::string& b);

// The token of the call's "authorization: Bearer <token>" metadata ("" for another scheme);
// nullopt when the call carries no authorization metadata.
std::optional<std::string> BearerOf(const grpc::ServerContextBase& ctx);

}  // namespace spar::services
