#include "services/common/server_runner.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/support/client_interceptor.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace spar::services {

struct ServerRunner::Impl {
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::string host;
  std::unique_ptr<httplib::Server> http;
  std::thread http_thread;
  int metrics_port = -1;
  std::atomic<bool> serving{false};
  std::mutex mu;
  std::condition_variable cv;
  bool shut_down = false;
};

ServerRunner::ServerRunner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<ServerRunner>> ServerRunner::Start(ServerRunnerOptions options) {
  static std::once_flag once;
  std::call_once(once, [] {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  });
  auto impl = std::make_unique<Impl>();
  size_t colon = options.address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("address must be host:port, got \"", options.address, "\""));
  }
  impl->host = options.address.substr(0, colon);
  grpc::ServerBuilder builder;
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (options.tls.enabled()) {
    absl::StatusOr<TlsPem> pem = ReadPem(options.tls);
    if (!pem.ok()) return pem.status();
    grpc::SslServerCredentialsOptions ssl(
        options.tls.client_ca_file.empty()
            ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
            : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_root_certs = pem->ca;
    ssl.pem_key_cert_pairs.push_back({pem->key, pem->cert});
    credentials = grpc::SslServerCredentials(ssl);
  }
  builder.AddListeningPort(options.address, credentials, &impl->port);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  for (grpc::Service* s : options.services) builder.RegisterService(s);
  impl->server = builder.BuildAndStart();
  if (impl->server == nullptr || impl->port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.address, " (port taken or address invalid)"));
  }
  impl->server->GetHealthCheckService()->SetServingStatus(false);

  if (options.metrics_port >= 0) {
    if (options.tls.enabled()) {
      const ServerTls& t = options.tls;
      auto ssl = std::make_unique<httplib::SSLServer>(
          t.cert_file.c_str(), t.key_file.c_str(),
          t.client_ca_file.empty() ? nullptr : t.client_ca_file.c_str());
      if (!ssl->is_valid()) {
        impl->server->Shutdown();
        return absl::InvalidArgumentError(
            absl::StrCat("metrics port: cannot load the TLS certificate ", t.cert_file, " and key ",
                         t.key_file));
      }
      impl->http = std::move(ssl);
    } else {
      impl->http = std::make_unique<httplib::Server>();
    }
    metrics::Registry* registry = options.registry;
    Impl* raw = impl.get();
    impl->http->Get("/metrics", [registry](const httplib::Request&, httplib::Response& res) {
      res.set_content(registry ? registry->Serialize() : std::string(),
                      "text/plain; version=0.0.4; charset=utf-8");
    });
    impl->http->Get("/healthz", [raw](const httplib::Request&, httplib::Response& res) {
      bool ok = raw->serving.load();
      res.status = ok ? 200 : 503;
      res.set_content(ok ? "ok\n" : "not serving\n", "text/plain");
    });
    int p = options.metrics_port == 0
                ? impl->http->bind_to_any_port(options.metrics_host)
                : (impl->http->bind_to_port(options.metrics_host, options.metrics_port)
                       ? options.metrics_port
                       : -1);
    if (p <= 0) {
      impl->server->Shutdown();
      return absl::UnavailableError(absl::StrCat("cannot listen for metrics on ",
                                                 options.metrics_host, ":", options.metrics_port));
    }
    impl->metrics_port = p;
    httplib::Server* http = impl->http.get();
    impl->http_thread = std::thread([http] { http->listen_after_bind(); });
  }
  return std::unique_ptr<ServerRunner>(new ServerRunner(std::move(impl)));
}

ServerRunner::~ServerRunner() { Shutdown(); }

int ServerRunner::port() const { return impl_->port; }
int ServerRunner::metrics_port() const { return impl_->metrics_port; }
std::string ServerRunner::address() const {
  std::string host = impl_->host == "0.0.0.0" || impl_->host == "[::]" ? "127.0.0.1" : impl_->host;
  return absl::StrCat(host, ":", impl_->port);
}

std::string ServerRunner::listen_address() const {
  return absl::StrCat(impl_->host, ":", impl_->port);
}

void ServerRunner::SetServing(bool serving) {
  impl_->serving.store(serving);
  impl_->server->GetHealthCheckService()->SetServingStatus(serving);
}

void ServerRunner::Shutdown(int deadline_ms) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->shut_down) return;
    impl_->shut_down = true;
  }
  impl_->serving.store(false);
  impl_->server->Shutdown(std::chrono::system_clock::now() +
                          std::chrono::milliseconds(deadline_ms));
  impl_->server->Wait();
  if (impl_->http) {
    impl_->http->stop();
    if (impl_->http_thread.joinable()) impl_->http_thread.join();
  }
  impl_->cv.notify_all();
}

void ServerRunner::Wait() {
  std::unique_lock<std::mutex> lock(impl_->mu);
  impl_->cv.wait(lock, [this] { return impl_->shut_down; });
}

std::shared_ptr<grpc::Channel> ServerRunner::InProcessChannel() { return MakeChannel(address()); }

namespace {

// Adds the bearer header to each call's initial metadata. Metadata rather than call credentials:
// gRPC drops call credentials on insecure channels.
class BearerInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit BearerInterceptor(const std::string* header) : header_(header) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace("authorization", *header_);
    }
    methods->Proceed();
  }

 private:
  const std::string* header_;
};

class BearerInterceptorFactory final
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerInterceptorFactory(const std::string& token) : header_("Bearer " + token) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* /*info*/) override {
    return new BearerInterceptor(&header_);
  }

 private:
  const std::string header_;  // outlives the channel's calls: the channel owns the factory
};

}  // namespace

namespace {

std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials(const ClientTls& tls) {
  if (!tls.enabled()) return grpc::InsecureChannelCredentials();
  absl::StatusOr<TlsPem> pem = ReadPem(tls);
  grpc::SslCredentialsOptions ssl;
  if (pem.ok()) {
    ssl.pem_root_certs = pem->ca;
    ssl.pem_private_key = pem->key;
    ssl.pem_cert_chain = pem->cert;
  } else {
    SPAR_LOG(Error) << "TLS: " << pem.status().message() << "; the channel will not connect";
    ssl.pem_root_certs = "unreadable";  // never falls back to the system roots or plaintext
  }
  return grpc::SslCredentials(ssl);
}

}  // namespace

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address,
                                           const std::string& bearer_token, const ClientTls& tls) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  // "dns:///sampler:50051" resolving to several replicas spreads calls over all of them.
  args.SetLoadBalancingPolicyName("round_robin");
  if (bearer_token.empty()) {
    return grpc::CreateCustomChannel(address, ChannelCredentials(tls), args);
  }
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<BearerInterceptorFactory>(bearer_token));
  return grpc::experimental::CreateCustomChannelWithInterceptors(address, ChannelCredentials(tls),
                                                                 args, std::move(interceptors));
}

}  // namespace spar::services
