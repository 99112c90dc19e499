// Hosts gRPC services on one port with grpc.health.v1 and reflection, plus an HTTP side port
// serving /metrics (Prometheus text 0.0.4) and /healthz. Used by every `spar serve --role=...`,
// by `spar up` (all four services in one process) and by the service tests (port 0).
// Thread-safe after Start(); Shutdown() is idempotent and also runs in the destructor.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/metrics/registry.h"
#include "services/common/tls.h"

namespace grpc {
class Service;
class Channel;
}  // namespace grpc

namespace spar::services {

struct ServerRunnerOptions {
  // gRPC listen address "host:port"; port 0 picks a free port.
  std::string address = "127.0.0.1:0";
  // HTTP address for /metrics and /healthz; port -1 disables it, 0 picks a free port.
  std::string metrics_host = "127.0.0.1";
  int metrics_port = 0;
  // Services to register (not owned; must outlive the runner).
  std::vector<grpc::Service*> services;
  // Registry served on /metrics (not owned; may be null).
  metrics::Registry* registry = nullptr;
  // TLS on the gRPC port and the HTTP side port (services/common/tls.h); disabled = plaintext.
  // With a client CA, both ports accept only clients presenting a certificate it signed.
  ServerTls tls;
  // Largest message accepted, bytes (gRPC's default of 4 MiB is too small for sample batches).
  int max_message_bytes = 64 << 20;
};

class ServerRunner {
 public:
  // Starts listening. Health starts NOT_SERVING until SetServing(true) (after models load).
  static absl::StatusOr<std::unique_ptr<ServerRunner>> Start(ServerRunnerOptions options);
  ~ServerRunner();

  int port() const;
  int metrics_port() const;
  std::string address() const;  // where this host dials it: "127.0.0.1:<port>" for a wildcard
  std::string listen_address() const;  // what it is bound to: "<host>:<port>", e.g. "0.0.0.0:50051"
  void SetServing(bool serving);
  // Stops accepting calls, cancels in-flight ones after `deadline_ms`, stops the HTTP port.
  void Shutdown(int deadline_ms = 2000);
  // Blocks until Shutdown() is called from another thread.
  void Wait();

  std::shared_ptr<grpc::Channel> InProcessChannel();

 private:
  struct Impl;
  explicit ServerRunner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A client channel to "host:port" with the message size limits the servers use. With a
// `bearer_token`, every call made on the channel carries "authorization: Bearer <token>" (added by
// a channel interceptor, so no call can leave it out). With `tls` enabled the channel verifies the
// server against tls.ca_file and presents tls.cert_file when given (mutual TLS); a file that
// cannot be read leaves the channel unable to connect (calls fail UNAVAILABLE), never plaintext.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address,
                                           const std::string& bearer_token = "",
                                           const ClientTls& tls = ClientTls());

}  // namespace spar::services
