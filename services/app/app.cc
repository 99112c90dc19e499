#include "services/app/app.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/metrics/registry.h"
#include "common/status_macros.h"
#include "model/runtime_info.h"
#include "oracle_client/oracle_client.h"
#include "orchestrator/engine_sampler_port.h"
#include "orchestrator/grpc_ports.h"
#include "orchestrator/job_manager.h"
#include "orchestrator/sharded_sampler.h"
#include "sampler/sampler.h"
#include "services/common/access.h"
#include "services/common/server_runner.h"
#include "services/oracle/oracle_service.h"
#include "services/orchestrator/orchestrator_service.h"
#include "services/sampler/sampler_http_server.h"
#include "services/sampler/sampler_service.h"
#include "services/trainer/trainer_service.h"
#include "trainer/process_group.h"

namespace spar::services {

struct App::Impl {
  AppConfig config;
  metrics::Registry registry;
  std::unique_ptr<sampler::Sampler> sampler;
  std::unique_ptr<oracle::OracleClient> oracle;
  std::unique_ptr<SamplerService> sampler_service;
  std::unique_ptr<SamplerHttpServer> sampler_http;
  std::unique_ptr<OracleService> oracle_service;
  std::unique_ptr<trainer::ProcessGroup> trainer_group;  // outlives trainer_service
  std::unique_ptr<TrainerService> trainer_service;
  // The orchestrator is built after the server starts (its ports may point at it).
  // One port per sampler replica; with more than one, sampler_port shards across them.
  std::vector<std::unique_ptr<orchestrator::SamplerPort>> sampler_replicas;
  std::unique_ptr<orchestrator::SamplerPort> sampler_port;
  std::unique_ptr<orchestrator::OraclePort> oracle_port;
  std::unique_ptr<orchestrator::TrainerPort> trainer_port;
  std::unique_ptr<orchestrator::JobManager> jobs;
  // Declared last: destroyed first, after Shutdown stopped everything that uses the others.
  std::unique_ptr<ServerRunner> server;
  std::unique_ptr<AuditLog> audit;  // outlives the orchestrator service (declared first)
  std::unique_ptr<OrchestratorService> orchestrator_service;
  bool shut_down = false;

  bool Has(const char* role) const { return config.roles.count(role) > 0; }
  // Each builds its role's domain object and gRPC service (the trainer joins its process group).
  absl::Status StartSampler(const AccessPolicy& access, std::vector<grpc::Service*>* services);
  absl::Status StartOracle(const AccessPolicy& access, std::vector<grpc::Service*>* services);
  absl::Status StartTrainer(const AccessPolicy& access, std::vector<grpc::Service*>* services);
  // Once the server listens: the orchestrator's ports (to this process or the configured
  // addresses) and its job manager.
  absl::Status ConnectOrchestrator();
  absl::Status MakeSamplerPort(const orchestrator::GrpcPortsConfig& ports);
};

namespace {

absl::StatusOr<orchestrator::EngineConfig> ParseEngineConfig(const nlohmann::json& j) {
  SPAR_RETURN_IF_ERROR(
      CheckKnownKeys(j,
                     {"engine", "url", "served_model", "prompts_per_request", "max_attempts",
                      "timeout_seconds", "path_map", "command", "handoff", "start_timeout_seconds"},
                     "config.sampler_engine"));
  orchestrator::EngineConfig e;
  try {
    if (j.contains("engine")) e.engine = j["engine"].get<std::string>();
    if (j.contains("url")) e.url = j["url"].get<std::string>();
    if (j.contains("served_model")) e.served_model = j["served_model"].get<std::string>();
    if (j.contains("prompts_per_request"))
      e.prompts_per_request = j["prompts_per_request"].get<int>();
    if (j.contains("max_attempts")) e.max_attempts = j["max_attempts"].get<int>();
    if (j.contains("timeout_seconds")) {
      e.timeout = absl::Seconds(j["timeout_seconds"].get<double>());
    }
    if (j.contains("path_map")) e.path_map = j["path_map"].get<std::string>();
    if (j.contains("command")) e.command = j["command"].get<std::vector<std::string>>();
    if (j.contains("handoff")) e.handoff = j["handoff"].get<std::string>();
    if (j.contains("start_timeout_seconds")) {
      e.start_timeout = absl::Seconds(j["start_timeout_seconds"].get<double>());
    }
  } catch (const nlohmann::json::exception& ex) {
    return absl::InvalidArgumentError(absl::StrCat("config.sampler_engine: ", ex.what()));
  }
  SPAR_RETURN_IF_ERROR(orchestrator::Validate(e));
  return e;
}

}  // namespace

absl::StatusOr<AppConfig> ParseAppConfig(const std::string& json_text) {
  SPAR_ASSIGN_OR_RETURN(nlohmann::json j, ParseJson(json_text, "config"));
  SPAR_RETURN_IF_ERROR(CheckKnownKeys(
      j,
      {"roles", "host", "port", "metrics_port", "runs_dir", "data_root", "sampler_address",
       "oracle_address", "trainer_address", "oracle", "sampler_max_batch_size", "sampler_http_port",
       "sampler_http_model", "sampler_http_policy", "sampler_engine"},
      "config"));
  AppConfig c;
  try {
    if (j.contains("roles")) c.roles = j["roles"].get<std::set<std::string>>();
    if (j.contains("host")) c.host = j["host"].get<std::string>();
    if (j.contains("port")) c.port = j["port"].get<int>();
    if (j.contains("metrics_port")) c.metrics_port = j["metrics_port"].get<int>();
    if (j.contains("runs_dir")) c.runs_dir = j["runs_dir"].get<std::string>();
    if (j.contains("data_root")) c.data_root = j["data_root"].get<std::string>();
    if (j.contains("sampler_address")) c.sampler_address = j["sampler_address"].get<std::string>();
    if (j.contains("oracle_address")) c.oracle_address = j["oracle_address"].get<std::string>();
    if (j.contains("trainer_address")) c.trainer_address = j["trainer_address"].get<std::string>();
    if (j.contains("sampler_max_batch_size")) {
      c.sampler_max_batch_size = j["sampler_max_batch_size"].get<int>();
    }
    if (j.contains("sampler_http_port")) c.sampler_http_port = j["sampler_http_port"].get<int>();
    if (j.contains("sampler_http_model")) {
      c.sampler_http_model = j["sampler_http_model"].get<std::string>();
    }
    if (j.contains("sampler_http_policy")) {
      c.sampler_http_policy = j["sampler_http_policy"].get<std::string>();
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config: ", e.what()));
  }
  if (j.contains("oracle")) {
    SPAR_ASSIGN_OR_RETURN(c.oracle, oracle::ParseOracleConfig(j["oracle"]));
  }
  if (j.contains("sampler_engine")) {
    SPAR_ASSIGN_OR_RETURN(c.sampler_engine, ParseEngineConfig(j["sampler_engine"]));
  }
  for (const std::string& r : c.roles) {
    if (r != "sampler" && r != "oracle" && r != "trainer" && r != "orchestrator") {
      return absl::InvalidArgumentError(absl::StrCat("config.roles: unknown role \"", r, "\""));
    }
  }
  return c;
}

namespace {

bool IsLoopbackHost(const std::string& host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || absl::StartsWith(host, "127.");
}

// Refuses an unauthenticated server off loopback (unless `insecure`).
absl::Status CheckExposure(const AppConfig& config) {
  if (!config.tokens_file.empty() && config.api_token.empty()) {
    return absl::InvalidArgumentError(
        "SPAR_API_TOKENS_FILE is set but SPAR_API_TOKEN is not: the services call each other "
        "with the service token (holder \"service\", scope admin); set both");
  }
  if (!IsLoopbackHost(config.host) && config.api_token.empty() && !config.insecure) {
    return absl::InvalidArgumentError(absl::StrCat(
        "host: refusing to serve on non-loopback address \"", config.host,
        "\" without SPAR_API_TOKEN (set it, or pass --insecure to serve unauthenticated)"));
  }
  return absl::OkStatus();
}

// Every path setting made absolute once, here, against the working directory: the services join
// the relative paths they are sent to different roots (the trainer to the data root, the
// orchestrator to the runs dir), so a relative runs dir named pairs files the trainer could not
// find. The data root defaults to the working directory, so paths are confined even when none is
// given.
absl::Status ResolvePaths(AppConfig& config) {
  if (config.data_root.empty()) config.data_root = ".";
  for (auto [field, path] : {std::pair<const char*, std::string*>{"runs_dir", &config.runs_dir},
                             {"data_root", &config.data_root},
                             {"judge_cache", &config.oracle.cache_path}}) {
    if (path->empty()) continue;  // no judge cache
    absl::StatusOr<std::string> abs = AbsolutePath(*path);
    if (!abs.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(field, ": ", abs.status().message()));
    }
    *path = *std::move(abs);
  }
  return absl::OkStatus();
}

}  // namespace

App::App(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
App::~App() { Shutdown(); }

namespace {
// What this process runs on, logged once and exported as an info metric (value 1, the facts as
// labels) so a dashboard shows which BLAS kernel and LibTorch a host uses.
void ExportRuntimeInfo(metrics::Registry& registry) {
  const model::RuntimeInfo info = model::CurrentRuntimeInfo();
  SPAR_LOG(Info) << "runtime: spar " << info.spar_version << ", libtorch " << info.libtorch_version
                 << ", cuda " << (info.cuda_compiled ? "compiled" : "not compiled") << ", "
                 << info.gpus_visible << " gpu(s), blas kernel " << info.blas_kernel << " ("
                 << info.blas_kernel_how << "), cpu " << info.cpu_capability;
  metrics::BuildGauge()
      .Name("spar_process_runtime_info")
      .Help(
          "Build and host facts as labels (value 1): spar and libtorch versions, cuda, BLAS "
          "kernel and how it was chosen, CPU vector class")
      .Register(registry)
      .Add({{"spar_version", info.spar_version},
            {"libtorch_version", info.libtorch_version},
            {"cuda", info.cuda_compiled ? "1" : "0"},
            {"gpus", std::to_string(info.gpus_visible)},
            {"blas_kernel", info.blas_kernel},
            {"blas_kernel_how", info.blas_kernel_how},
            {"cpu", info.cpu_capability}})
      .Set(1);
}
}  // namespace

absl::Status App::Impl::StartSampler(const AccessPolicy& access,
                                     std::vector<grpc::Service*>* services) {
  sampler::SamplerConfig sc;
  sc.max_batch_size = config.sampler_max_batch_size;
  SPAR_ASSIGN_OR_RETURN(sampler, sampler::Sampler::Create(sc));
  sampler_service = std::make_unique<SamplerService>(*sampler, registry, access);
  services->push_back(sampler_service.get());
  if (config.sampler_http_port >= 0) {
    SamplerHttpOptions ho;
    ho.host = config.host;
    ho.port = config.sampler_http_port;
    ho.served_model_name = config.sampler_http_model;
    ho.initial_policy = config.sampler_http_policy;
    SPAR_ASSIGN_OR_RETURN(sampler_http, SamplerHttpServer::Start(*sampler, registry, access, ho));
  }
  return absl::OkStatus();
}

absl::Status App::Impl::StartOracle(const AccessPolicy& access,
                                    std::vector<grpc::Service*>* services) {
  SPAR_ASSIGN_OR_RETURN(oracle, oracle::OracleClient::Create(config.oracle, &registry));
  oracle_service = std::make_unique<OracleService>(*oracle, registry, access);
  services->push_back(oracle_service.get());
  return absl::OkStatus();
}

absl::Status App::Impl::StartTrainer(const AccessPolicy& access,
                                     std::vector<grpc::Service*>* services) {
  const trainer::DistributedConfig& dist = config.trainer_distributed;
  if (dist.world_size > 1) {
    if (dist.rank != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("trainer_distributed.rank: the Trainer service runs on rank 0, got rank ",
                       dist.rank, " (ranks > 0 run the worker loop)"));
    }
    SPAR_LOG(Info) << "trainer: joining a data-parallel group of " << dist.world_size << " at "
                   << dist.master_addr << ":" << dist.master_port;
    SPAR_ASSIGN_OR_RETURN(trainer_group, trainer::ProcessGroup::Create(dist));
  }
  trainer_service = std::make_unique<TrainerService>(registry, trainer_group.get(), access);
  services->push_back(trainer_service.get());
  return absl::OkStatus();
}

absl::Status App::Impl::MakeSamplerPort(const orchestrator::GrpcPortsConfig& ports) {
  // sampler_address may list replicas ("a:50051,b:50051"): prompts are sharded across them.
  std::vector<std::string> sampler_addresses;
  for (absl::string_view a : absl::StrSplit(config.sampler_address, ',', absl::SkipWhitespace())) {
    sampler_addresses.push_back(std::string(absl::StripAsciiWhitespace(a)));
  }
  if (config.sampler_engine.engine != "native") {
    SPAR_RETURN_IF_ERROR(orchestrator::Validate(config.sampler_engine));
    sampler_port = orchestrator::MakeEngineSamplerPort(config.sampler_engine, &registry);
    SPAR_LOG(Info) << "sampling through the " << config.sampler_engine.engine << " engine at "
                   << config.sampler_engine.url;
  } else if (sampler_addresses.size() <= 1) {
    const std::string addr =
        config.sampler_address.empty() ? server->address() : config.sampler_address;
    sampler_port = orchestrator::MakeGrpcSamplerPort(
        MakeChannel(addr, config.api_token, config.client_tls), ports);
  } else {
    orchestrator::GrpcPortsConfig replica_config = ports;
    // A replica that is down hands its shard to another one soon, rather than after the
    // single-sampler retries.
    replica_config.max_attempts = 2;
    std::vector<orchestrator::SamplerPort*> replicas;
    for (const std::string& a : sampler_addresses) {
      sampler_replicas.push_back(orchestrator::MakeGrpcSamplerPort(
          MakeChannel(a, config.api_token, config.client_tls), replica_config));
      replicas.push_back(sampler_replicas.back().get());
    }
    // Shards follow the replicas' batch boundaries (sampler_max_batch_size of this config,
    // which should match theirs): samples bit-identical to one replica's.
    sampler_port =
        std::make_unique<orchestrator::ShardedSamplerPort>(replicas, config.sampler_max_batch_size);
    SPAR_LOG(Info) << "sharding sampling across " << replicas.size()
                   << " sampler replicas: " << absl::StrJoin(sampler_addresses, ", ");
  }
  return absl::OkStatus();
}

absl::Status App::Impl::ConnectOrchestrator() {
  auto addr = [&](const std::string& configured) {
    return configured.empty() ? server->address() : configured;
  };
  for (const char* role : {"sampler", "oracle", "trainer"}) {
    const std::string& configured = std::string(role) == "sampler"  ? config.sampler_address
                                    : std::string(role) == "oracle" ? config.oracle_address
                                                                    : config.trainer_address;
    const bool engine = std::string(role) == "sampler" && config.sampler_engine.engine != "native";
    if (!Has(role) && configured.empty() && !engine) {
      return absl::InvalidArgumentError(absl::StrCat(role, "_address is required when the ", role,
                                                     " role does not run in this process"));
    }
  }
  orchestrator::GrpcPortsConfig ports;
  SPAR_RETURN_IF_ERROR(MakeSamplerPort(ports));
  oracle_port = orchestrator::MakeGrpcOraclePort(
      MakeChannel(addr(config.oracle_address), config.api_token, config.client_tls), ports);
  trainer_port = orchestrator::MakeGrpcTrainerPort(
      MakeChannel(addr(config.trainer_address), config.api_token, config.client_tls), ports);
  orchestrator::JobManagerConfig jc;
  jc.runs_dir = config.runs_dir;
  jc.data_root = config.data_root;
  SPAR_ASSIGN_OR_RETURN(
      jobs, orchestrator::JobManager::Create(
                jc, {sampler_port.get(), oracle_port.get(), trainer_port.get()}, &registry));
  orchestrator_service->SetJobManager(jobs.get());
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<App>> App::Start(AppConfig config) {
  auto impl = std::make_unique<Impl>();
  if (config.roles.empty())
    return absl::InvalidArgumentError("roles: at least one role is required");
  SPAR_RETURN_IF_ERROR(CheckExposure(config));
  SPAR_RETURN_IF_ERROR(ResolvePaths(config));
  impl->config = config;
  AccessPolicy access;
  access.api_token = config.api_token;
  SPAR_ASSIGN_OR_RETURN(TokenTable tokens, TokenTable::Load(config.api_token, config.tokens_file));
  access.tokens = std::make_shared<const TokenTable>(std::move(tokens));
  access.path_roots = {config.data_root, config.runs_dir};
  ExportRuntimeInfo(impl->registry);
  std::vector<grpc::Service*> services;
  if (impl->Has("sampler")) SPAR_RETURN_IF_ERROR(impl->StartSampler(access, &services));
  if (impl->Has("oracle")) SPAR_RETURN_IF_ERROR(impl->StartOracle(access, &services));
  if (impl->Has("trainer")) SPAR_RETURN_IF_ERROR(impl->StartTrainer(access, &services));
  if (impl->Has("orchestrator")) {
    // The manager needs ports that may point at this very server, whose port is known only once
    // it listens: the service answers UNAVAILABLE until SetJobManager, and health says
    // NOT_SERVING until then.
    SPAR_RETURN_IF_ERROR(MakeDirs(config.runs_dir));
    SPAR_ASSIGN_OR_RETURN(impl->audit, AuditLog::Open(JoinPath(config.runs_dir, "audit.jsonl")));
    impl->orchestrator_service =
        std::make_unique<OrchestratorService>(impl->registry, access, impl->audit.get());
    services.push_back(impl->orchestrator_service.get());
  }
  ServerRunnerOptions so;
  so.address = absl::StrCat(config.host, ":", config.port);
  so.metrics_host = config.host;
  so.metrics_port = config.metrics_port;
  so.registry = &impl->registry;
  so.services = services;
  so.tls = config.tls;
  SPAR_ASSIGN_OR_RETURN(impl->server, ServerRunner::Start(so));
  if (impl->Has("orchestrator")) SPAR_RETURN_IF_ERROR(impl->ConnectOrchestrator());
  impl->server->SetServing(true);
  SPAR_LOG(Info) << "serving " << absl::StrJoin(config.roles, ",") << " on "
                 << impl->server->listen_address()
                 << (IsLoopbackHost(config.host) ? "" : " (reachable from other hosts)")
                 << ", metrics on " << config.host << ":" << impl->server->metrics_port()
                 << "; auth "
                 << (!access.tokens->enabled()
                         ? std::string("off")
                         : absl::StrCat("on (", access.tokens->size(), " token(s))"))
                 << "; tls "
                 << (!config.tls.enabled()               ? "off"
                     : config.tls.client_ca_file.empty() ? "on"
                                                         : "on (mutual)")
                 << "; data root " << config.data_root;
  return std::unique_ptr<App>(new App(std::move(impl)));
}

int App::port() const { return impl_->server->port(); }
int App::sampler_http_port() const {
  return impl_->sampler_http ? impl_->sampler_http->port() : -1;
}
int App::metrics_port() const { return impl_->server->metrics_port(); }
std::string App::address() const { return impl_->server->address(); }
std::string App::listen_address() const { return impl_->server->listen_address(); }

void App::Shutdown() {
  if (impl_->shut_down) return;
  impl_->shut_down = true;
  // Stop the job runners first (their in-flight calls end), then the server and the trainings.
  if (impl_->orchestrator_service) impl_->orchestrator_service->SetJobManager(nullptr);
  if (impl_->jobs) impl_->jobs->Shutdown();
  // Then the judge requests in flight are cut rather than waited for (up to timeout_s each).
  if (impl_->oracle) impl_->oracle->Stop();
  if (impl_->trainer_service) impl_->trainer_service->Shutdown();
  if (impl_->sampler_http) impl_->sampler_http->Stop();
  impl_->server->Shutdown();
}

void App::Wait() { impl_->server->Wait(); }

}  // namespace spar::services
