// spar-health: the container healthcheck probe. One grpc.health.v1 Check against a Spar service,
// exit 0 when it answers SERVING. It links gRPC and the health stubs only (no LibTorch), so a
// probe every 10 s costs a few milliseconds of CPU instead of loading the whole `spar` binary.
//
//   spar-health [--addr=127.0.0.1:50051] [--service=NAME] [--timeout_s=5]
//
// Exit codes as `spar health`: 0 SERVING, 1 NOT_SERVING (or any other answer), 2 bad flags or an
// unreadable SPAR_API_TOKEN_FILE, 3 unreachable / deadline exceeded. grpc.health.v1 does not
// require the service token (services/common/auth.h); the probe still sends it when
// SPAR_API_TOKEN or SPAR_API_TOKEN_FILE is set, so that it keeps working if that ever changes.
// With SPAR_TLS_CA set it dials TLS (and presents SPAR_TLS_CLIENT_CERT/KEY to a mutual-TLS
// server), as every Spar client does (services/common/tls.h).
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "services/common/api_token.h"
#include "services/common/tls.h"

namespace {

constexpr char kUsage[] =
    "usage: spar-health [--addr=HOST:PORT] [--service=NAME] [--timeout_s=SECONDS]\n"
    "  grpc.health.v1 Check; exit 0 when SERVING, 1 otherwise, 3 when unreachable\n"
    "  --addr       default 127.0.0.1:50051\n"
    "  --service    default \"\" (the whole server)\n"
    "  --timeout_s  default 5\n"
    "  sends \"authorization: Bearer\" from SPAR_API_TOKEN or SPAR_API_TOKEN_FILE when set\n"
    "  dials TLS when SPAR_TLS_CA is set (SPAR_TLS_CLIENT_CERT/KEY for mutual TLS)\n";

constexpr int kExitServing = 0;
constexpr int kExitNotServing = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnavailable = 3;

int BadFlag(const std::string& arg) {
  std::fprintf(stderr, "spar-health: bad flag \"%s\"\n%s", arg.c_str(), kUsage);
  return kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  std::string addr = "127.0.0.1:50051";
  std::string service;
  int timeout_s = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return kExitServing;
    }
    if (absl::StartsWith(arg, "--addr=")) {
      addr = arg.substr(7);
    } else if (absl::StartsWith(arg, "--service=")) {
      service = arg.substr(10);
    } else if (absl::StartsWith(arg, "--timeout_s=")) {
      if (!absl::SimpleAtoi(arg.substr(12), &timeout_s) || timeout_s < 1 || timeout_s > 3600) {
        return BadFlag(arg);
      }
    } else {
      return BadFlag(arg);
    }
  }
  absl::StatusOr<std::string> token = spar::services::ApiTokenFromEnv();
  if (!token.ok()) {
    std::fprintf(stderr, "spar-health: %s\n", std::string(token.status().message()).c_str());
    return kExitUsage;
  }
  absl::StatusOr<spar::services::ClientTls> tls = spar::services::ClientTlsFromEnv();
  absl::StatusOr<spar::services::TlsPem> pem =
      tls.ok() ? spar::services::ReadPem(*tls)
               : absl::StatusOr<spar::services::TlsPem>(tls.status());
  if (!pem.ok()) {
    std::fprintf(stderr, "spar-health: %s\n", std::string(pem.status().message()).c_str());
    return kExitUsage;
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (tls->enabled()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = pem->ca;
    ssl.pem_private_key = pem->key;
    ssl.pem_cert_chain = pem->cert;
    credentials = grpc::SslCredentials(ssl);
  }
  auto stub = grpc::health::v1::Health::NewStub(grpc::CreateChannel(addr, credentials));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_s));
  if (!token->empty()) ctx.AddMetadata("authorization", "Bearer " + *token);
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(service);
  grpc::health::v1::HealthCheckResponse resp;
  grpc::Status st = stub->Check(&ctx, req, &resp);
  if (!st.ok()) {
    std::fprintf(stderr, "spar-health: %s: %s\n", addr.c_str(), st.error_message().c_str());
    return st.error_code() == grpc::StatusCode::UNAVAILABLE ||
                   st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED
               ? kExitUnavailable
               : kExitNotServing;
  }
  const bool serving = resp.status() == grpc::health::v1::HealthCheckResponse::SERVING;
  std::puts(serving ? "SERVING" : "NOT_SERVING");
  return serving ? kExitServing : kExitNotServing;
}
