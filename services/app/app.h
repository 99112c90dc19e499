// Assembles Spar's services from a config: any subset of the four roles behind one gRPC port and
// one /metrics port. `spar up` runs all four (the orchestrator still reaches the others through
// gRPC on loopback); `spar serve --role=X` runs one; integration tests run exactly this assembly
// in-process on port 0. Thread-safe; Shutdown() is idempotent and also runs in the destructor.
#pragma once

#include <memory>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "oracle_client/oracle_config.h"
#include "orchestrator/engine_config.h"
#include "services/common/tls.h"
#include "trainer/trainer.h"

namespace spar::services {

struct AppConfig {
  // Roles to run: "sampler", "oracle", "trainer", "orchestrator".
  std::set<std::string> roles = {"sampler", "oracle", "trainer", "orchestrator"};
  std::string host = "127.0.0.1";
  int port = 0;          // gRPC port; 0 picks a free one
  int metrics_port = 0;  // /metrics + /healthz port; 0 picks a free one, -1 disables
  // Where jobs live, and the directory every path a service accepts must stay inside (job specs,
  // trainer and sampler paths; the runs dir is allowed too). "" = the working directory.
  std::string runs_dir = "runs";
  std::string data_root;
  // Serve on a non-loopback host without api_token. Off by default: Start refuses it.
  bool insecure = false;
  // Orchestrator: addresses of the other services; "" = this process's own port.
  // sampler_address may be a comma-separated list of sampler replicas: each round's prompts are
  // then split into contiguous shards sampled in parallel (same samples as one replica).
  std::string sampler_address;
  std::string oracle_address;
  std::string trainer_address;
  // Oracle: the judge endpoint and client settings (api_key filled by main from env/file).
  oracle::OracleConfig oracle;
  // The shared service token ("" = no auth): every service requires "authorization: Bearer
  // <api_token>" on every RPC (grpc.health.v1 stays open) and the orchestrator sends it to the
  // others. From SPAR_API_TOKEN, never from files/flags; never logged.
  std::string api_token;
  // The tokens file (services/common/token_table.h: per-holder tokens with scopes read, submit,
  // admin, listed by SHA-256) from SPAR_API_TOKENS_FILE; "" = only api_token, which is then
  // every caller's (scope admin). Needs api_token: the services call each other with it.
  std::string tokens_file;
  // TLS of every port this process serves, and of its calls to the other services
  // (services/common/tls.h; the edge reads both from SPAR_TLS_*). Disabled = plaintext.
  ServerTls tls;
  ClientTls client_tls;
  // Sampler: largest generation batch (rows = prompts x samples).
  int sampler_max_batch_size = 256;
  // Sampler: also serve the OpenAI-compatible HTTP API (services/sampler/sampler_http_server.h)
  // on this port; -1 = off, 0 = any free port.
  int sampler_http_port = -1;
  std::string sampler_http_model = "spar-policy";  // its served model name
  std::string sampler_http_policy;  // checkpoint it serves from the start ("" = none until a load)
  // Orchestrator: the generation engine of the sample stage ("native" = the Sampler service at
  // sampler_address). api_key from SPAR_SAMPLER_ENGINE_API_KEY, never from files or flags.
  orchestrator::EngineConfig sampler_engine;
  // Trainer: data-parallel group (`spar serve --role=trainer` reads RANK, WORLD_SIZE,
  // MASTER_ADDR, MASTER_PORT). world_size > 1: this process must be rank 0; Start joins the group
  // (blocking until every rank has connected) and the service drives it. Ranks > 0 run
  // services::RunTrainerWorker instead of an App.
  trainer::DistributedConfig trainer_distributed;
};

// Reads an AppConfig from a JSON file's object (unknown keys rejected, errors name the field).
absl::StatusOr<AppConfig> ParseAppConfig(const std::string& json_text);

class App {
 public:
  static absl::StatusOr<std::unique_ptr<App>> Start(AppConfig config);
  ~App();
  int port() const;
  int metrics_port() const;
  // The sampler's HTTP API port (config.sampler_http_port), -1 when not served.
  int sampler_http_port() const;
  std::string address() const;         // where this host dials it
  std::string listen_address() const;  // what it is bound to
  void Shutdown();
  void Wait();

 private:
  struct Impl;
  explicit App(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace spar::services
