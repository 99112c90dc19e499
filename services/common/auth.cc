#include "services/common/auth.h"

namespace spar::services {

bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  // Length is not secret-dependent work: compare over the longer length either way.
  size_t n = std::max(a.size(), b.size());
  unsigned char diff = static_cast<unsigned char>(a.size() != b.size());
  for (size_t i = 0; i < n; ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

std::optional<std::string> BearerOf(const grpc::ServerContextBase& ctx) {
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return std::nullopt;
  std::string value(it->second.data(), it->second.size());
  const std::string prefix = "Bearer ";
  return value.compare(0, prefix.size(), prefix) == 0 ? value.substr(prefix.size()) : "";
}

grpc::Status CheckBearer(const grpc::ServerContextBase& ctx, const std::string& token) {
  if (token.empty()) return grpc::Status::OK;
  std::optional<std::string> given = BearerOf(ctx);
  if (!given) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "missing \"authorization: Bearer <token>\" metadata");
  }
  if (!ConstantTimeEquals(*given, token)) {
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "invalid bearer token");
  }
  return grpc::Status::OK;
}

void AddBearer(grpc::ClientContext* ctx, const std::string& token) {
  if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
}

}  // namespace spar::services
