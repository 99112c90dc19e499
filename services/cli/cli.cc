#include "services/cli/cli.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "model/runtime_info.h"
#include "orchestrator/engine_config.h"
#include "orchestrator/job_manager.h"
#include "orchestrator/job_spec.h"
#include "services/app/app.h"
#include "services/cli/args.h"
#include "services/cli/demo.h"
#include "services/cli/inspect_command.h"
#include "services/cli/judge_command.h"
#include "services/cli/spec_file.h"
#include "services/cli/tokenize_command.h"
#include "services/common/api_token.h"
#include "services/common/auth.h"
#include "services/common/judge_api_key.h"
#include "services/common/server_runner.h"
#include "services/common/status_util.h"
#include "services/common/token_table.h"
#include "services/trainer/trainer_service.h"
#include "spar/v1/orchestrator.grpc.pb.h"
#include "trainer/process_group.h"
#include "trainer/trainer.h"

namespace spar::cli {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnavailable = 3;
constexpr int kExitNotFound = 4;

const char kUsage[] =
    "usage: spar <command> [args]\n"
    "  demo [--algo=dno|spin|dpo|sppo|mpo|brain|rrhf] [--rounds=3] [--runs_dir=runs] [--seed=1]\n"
    "       [--preset=paper|self_play] [--spec_overrides=JSON] [--judge_kind=chat|reward_model]\n"
    "                                                   build the tiny model, run a job, print a "
    "table\n"
    "  token --name=NAME --scope=read|submit|admin      a new API token and its tokens-file entry\n"
    "  up [--config=FILE] [--port=50051] [--metrics_port=9464] [--judge_url=URL] "
    "[--runs_dir=runs]\n"
    "     [--judge_cache=FILE.sqlite] [--data_root=DIR (default: working dir)] [--host=127.0.0.1]\n"
    "     [--insecure]                                  all four services in one process; a non-\n"
    "                                                   loopback --host needs SPAR_API_TOKEN or "
    "--insecure\n"
    "     [--judge_allow_http_host=NAME[,NAME]]          plain http to these non-loopback judge "
    "hosts\n"
    "     [--judge_kind=chat|reward_model] [--judge_model=NAME]\n"
    "                                                   reward_model: --judge_url is the root of a "
    "vLLM\n"
    "                                                   pooling server (POST /pooling)\n"
    "  serve --role=sampler|oracle|trainer|orchestrator [--config=FILE] [--port=N] "
    "[--metrics_port=N]\n"
    "                                                   trainer: "
    "RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT\n"
    "                                                   env = data parallel, rank 0 serves\n"
    "     [--http_port=N [--http_policy=DIR]]           sampler: also the OpenAI-compatible API\n"
    "                                                   (/v1/completions, "
    "/update_weights_from_disk)\n"
    "     [--sampler_engine=native|openai|vllm|sglang|spar --sampler_engine_url=URL\n"
    "      --sampler_engine_model=NAME --sampler_engine_handoff=reload|restart\n"
    "      --sampler_engine_command='CMD {model_path} ...']  orchestrator: sample through that "
    "engine\n"
    "                                                   (key: $SPAR_SAMPLER_ENGINE_API_KEY)\n"
    "  submit JOB.json [--request_id=ID] [--watch]      create a job (idempotent by request id)\n"
    "  list [--state=running|succeeded|failed|...]      jobs, one per line\n"
    "  status JOB [--json]                              a job and its per-round table\n"
    "  watch JOB                                        live progress until the job ends\n"
    "  delete JOB                                       remove an ended job and its run directory\n"
    "  cancel JOB | resume JOB [--judge_max_calls=N] [--judge_max_tokens=N] "
    "[--judge_max_cost_usd=X]\n"
    "             [--judge_round_max_calls=N] [--judge_round_max_tokens=N] "
    "[--judge_round_max_cost_usd=X]\n"
    "                                                   resume raises the job's judge budget (0 = "
    "unlimited)\n"
    "  health [--addr=HOST:PORT]                        grpc.health.v1 check (exit 0 when "
    "SERVING;\n"
    "                                                   containers use the lighter spar-health)\n"
    "  judge --config FILE --in pairs.jsonl --out judgments.jsonl [--cache FILE] [--judge_url "
    "URL]\n"
    "        [--judge_allow_http_host=NAME[,NAME]]\n"
    "                                                   offline judging (resumes through the "
    "cache)\n"
    "  tokenize --model DIR [--chat] [--chat_template=NAME] [--add-special-tokens]  stdin JSON "
    "lines -> ids\n"
    "  inspect DIR [--json]                             architecture, parameters, tensor sums\n"
    "  version [--json]                                 Spar, LibTorch, CUDA, GPUs, BLAS kernel, "
    "CPU\n"
    "client commands take --addr (default $SPAR_ADDR or 127.0.0.1:50051)\n";

int ExitCodeFor(const absl::Status& st) {
  if (st.ok()) return kExitOk;
  switch (st.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
      return kExitUsage;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return kExitUnavailable;
    case absl::StatusCode::kNotFound:
      return kExitNotFound;
    default:
      return kExitFailed;
  }
}

int Fail(const absl::Status& st) {
  std::fprintf(stderr, "spar: %s\n", std::string(st.message()).c_str());
  return ExitCodeFor(st);
}

std::string Address(const Args& args) {
  const char* env = std::getenv("SPAR_ADDR");
  return args.Get("addr", env != nullptr ? env : "127.0.0.1:50051");
}

// The client's TLS (services/common/tls.h, SPAR_TLS_CA etc.); a broken setting ends the command
// with exit 2.
services::ClientTls ClientTls() {
  absl::StatusOr<services::ClientTls> tls = services::ClientTlsFromEnv();
  if (!tls.ok()) {
    std::fprintf(stderr, "spar: %s\n", std::string(tls.status().message()).c_str());
    std::exit(kExitUsage);
  }
  return *tls;
}

std::unique_ptr<v1::Orchestrator::Stub> Stub(const Args& args) {
  return v1::Orchestrator::NewStub(services::MakeChannel(Address(args), "", ClientTls()));
}

// The API token (services/common/api_token.h); an unreadable SPAR_API_TOKEN_FILE ends the
// command with exit 2.
std::string ApiToken() {
  absl::StatusOr<std::string> token = services::ApiTokenFromEnv();
  if (!token.ok()) {
    std::fprintf(stderr, "spar: %s\n", std::string(token.status().message()).c_str());
    std::exit(kExitUsage);
  }
  return *token;
}

// Every client call: a deadline and, when a token is set (ApiToken), the bearer token.
void SetDeadline(grpc::ClientContext* ctx, int seconds = 30) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  services::AddBearer(ctx, ApiToken());
}

absl::StatusOr<v1::JobState> ParseState(const std::string& s) {
  for (v1::JobState st : orchestrator::kJobStates) {
    if (s == orchestrator::JobStateName(st)) return st;
  }
  return absl::InvalidArgumentError(absl::StrCat("--state: unknown state \"", s, "\""));
}

// SIGINT/SIGTERM → `on_signal` (once) on a thread of its own. A handler writing to a pipe, not
// sigwait with blocked signals: threads that exist before any mask could be set (OpenBLAS
// starts its pool when the library loads) would otherwise take the signal and end the process.
int g_signal_pipe[2] = {-1, -1};
extern "C" void OnStopSignal(int sig) {
  const char c = static_cast<char>(sig);
  [[maybe_unused]] ssize_t n = write(g_signal_pipe[1], &c, 1);
}

std::thread SignalThread(std::function<void()> on_signal) {
  if (pipe(g_signal_pipe) != 0) SPAR_LOG(Error) << "signal pipe: " << std::strerror(errno);
  struct sigaction sa {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  return std::thread([on_signal = std::move(on_signal)] {
    char c = 0;
    while (read(g_signal_pipe[0], &c, 1) < 0 && errno == EINTR) {
    }
    SPAR_LOG(Info) << "signal " << static_cast<int>(c) << ": shutting down";
    on_signal();
  });
}

absl::StatusOr<services::AppConfig> LoadAppConfig(const Args& args) {
  services::AppConfig config;
  if (args.Has("config")) {
    auto text = ReadFile(args.Get("config"));
    if (!text.ok()) return text.status();
    auto parsed = services::ParseAppConfig(*text);
    if (!parsed.ok()) return parsed.status();
    config = *parsed;
  }
  auto port = args.GetInt("port", config.port == 0 ? 50051 : config.port);
  if (!port.ok()) return port.status();
  config.port = *port;
  auto mport = args.GetInt("metrics_port", config.metrics_port == 0 ? 9464 : config.metrics_port);
  if (!mport.ok()) return mport.status();
  config.metrics_port = *mport;
  if (args.Has("host")) config.host = args.Get("host");
  if (args.Has("runs_dir")) config.runs_dir = args.Get("runs_dir");
  if (args.Has("data_root")) config.data_root = args.Get("data_root");
  // Serving off loopback without SPAR_API_TOKEN is refused unless asked for by name.
  if (args.Has("insecure")) config.insecure = true;
  if (args.Has("judge_url")) config.oracle.base_url = args.Get("judge_url");
  if (args.Has("judge_kind")) {
    SPAR_ASSIGN_OR_RETURN(config.oracle.kind, oracle::ParseOracleKind(args.Get("judge_kind")));
  }
  if (args.Has("judge_model")) config.oracle.model = args.Get("judge_model");
  // Plain http to these judge hosts (e.g. the Compose service spar-judge); checked by Validate.
  for (std::string& host : args.GetList("judge_allow_http_host")) {
    config.oracle.allow_http_hosts.push_back(std::move(host));
  }
  // SQLite judgment cache shared by every job of this oracle (survives restarts).
  if (args.Has("judge_cache")) config.oracle.cache_path = args.Get("judge_cache");
  if (args.Has("sampler_address")) config.sampler_address = args.Get("sampler_address");
  if (args.Has("oracle_address")) config.oracle_address = args.Get("oracle_address");
  if (args.Has("trainer_address")) config.trainer_address = args.Get("trainer_address");
  if (args.Has("http_port")) {
    auto http_port = args.GetInt("http_port", -1);
    if (!http_port.ok()) return http_port.status();
    config.sampler_http_port = *http_port;
  }
  if (args.Has("sampler_engine")) config.sampler_engine.engine = args.Get("sampler_engine");
  if (args.Has("sampler_engine_url")) config.sampler_engine.url = args.Get("sampler_engine_url");
  if (args.Has("sampler_engine_model")) {
    config.sampler_engine.served_model = args.Get("sampler_engine_model");
  }
  if (args.Has("sampler_engine_command")) {  // an argv, split at spaces
    config.sampler_engine.command =
        absl::StrSplit(args.Get("sampler_engine_command"), ' ', absl::SkipEmpty());
  }
  if (args.Has("sampler_engine_handoff")) {
    config.sampler_engine.handoff = args.Get("sampler_engine_handoff");
  }
  if (args.Has("http_policy")) config.sampler_http_policy = args.Get("http_policy");
  if (const char* key = std::getenv("SPAR_SAMPLER_ENGINE_API_KEY")) {
    config.sampler_engine.api_key = key;
  }
  if (absl::Status st = orchestrator::Validate(config.sampler_engine); !st.ok()) return st;
  if (config.oracle.base_url.empty()) config.oracle.base_url = "http://127.0.0.1:8081/v1";
  absl::StatusOr<std::string> token = services::ApiTokenFromEnv();
  if (!token.ok()) return token.status();
  config.api_token = *std::move(token);
  // Per-holder scoped tokens (digests only): the file the operator manages.
  if (const char* tokens = std::getenv("SPAR_API_TOKENS_FILE")) config.tokens_file = tokens;
  SPAR_ASSIGN_OR_RETURN(config.tls, services::ServerTlsFromEnv());
  SPAR_ASSIGN_OR_RETURN(config.client_tls, services::ClientTlsFromEnv());
  // Secrets come from the environment or a file, never from flags or config files.
  SPAR_ASSIGN_OR_RETURN(config.oracle.api_key, services::ResolveJudgeApiKey(config.oracle));
  return config;
}

// A rank > 0 of a data-parallel trainer: no server, only the worker loop driven by rank 0.
int RunTrainerWorkerProcess(const trainer::DistributedConfig& dist) {
  auto group = trainer::ProcessGroup::Create(dist);
  if (!group.ok()) {
    std::fprintf(stderr, "spar: cannot join the trainer group: %s\n",
                 std::string(group.status().message()).c_str());
    return kExitUnavailable;
  }
  std::printf("spar trainer worker rank %d/%d joined %s:%d\n", dist.rank, dist.world_size,
              dist.master_addr.c_str(), dist.master_port);
  std::fflush(stdout);
  absl::Status st = services::RunTrainerWorker(**group);
  if (!st.ok()) return Fail(st);
  return kExitOk;
}

int RunServer(const Args& args, std::set<std::string> roles) {
  auto config = LoadAppConfig(args);
  if (!config.ok()) return Fail(config.status());
  if (roles == std::set<std::string>{"trainer"}) {
    // torchrun-style data parallel: rank 0 serves and drives the group, the others follow it.
    auto dist = trainer::DistributedFromEnv();
    if (!dist.ok()) return Fail(dist.status());
    if (dist->world_size > 1 && dist->rank > 0) return RunTrainerWorkerProcess(*dist);
    config->trainer_distributed = *dist;
  }
  config->roles = std::move(roles);
  auto app = services::App::Start(*config);
  if (!app.ok()) {
    std::fprintf(stderr, "spar: cannot start: %s\n", std::string(app.status().message()).c_str());
    return kExitUsage;  // startup errors end main with one line and exit 2 (STYLE R4.5)
  }
  std::printf("spar listening on %s (metrics on :%d)\n", (*app)->address().c_str(),
              (*app)->metrics_port());
  std::fflush(stdout);
  services::App* raw = app->get();
  std::thread sig = SignalThread([raw] { raw->Shutdown(); });
  raw->Wait();
  raw->Shutdown();
  sig.detach();
  return kExitOk;
}

std::string JobJson(const v1::Job& job) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  o.add_whitespace = true;
  (void)google::protobuf::util::MessageToJsonString(job, &out, o);
  return out;
}

int Submit(const Args& args) {
  if (args.positional().size() != 1)
    return Fail(absl::InvalidArgumentError("usage: spar submit JOB.json"));
  const std::string& path = args.positional()[0];
  auto text = ReadFile(path);
  if (!text.ok()) return Fail(text.status());
  auto spec = ParseJobSpecFile(path, *text);  // errors name the position, never the contents
  if (!spec.ok()) return Fail(spec.status());
  v1::CreateJobRequest req;
  *req.mutable_spec() = *spec;
  req.set_request_id(args.Get("request_id"));
  v1::Job job;
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  grpc::Status st = Stub(args)->CreateJob(&ctx, req, &job);
  if (!st.ok()) return Fail(services::FromGrpcStatus(st));
  std::printf("%s\n", job.job_id().c_str());
  std::fflush(stdout);
  if (args.Has("watch")) return WatchJob(Address(args), job.job_id(), /*quiet=*/false);
  return kExitOk;
}

int List(const Args& args) {
  v1::ListJobsRequest req;
  if (args.Has("state")) {
    auto s = ParseState(args.Get("state"));
    if (!s.ok()) return Fail(s.status());
    req.set_state(*s);
  }
  std::printf("%-28s %-10s %5s  %s\n", "JOB", "STATE", "ROUND", "STAGE");
  auto stub = Stub(args);
  do {  // every page
    v1::ListJobsResponse resp;
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    grpc::Status st = stub->ListJobs(&ctx, req, &resp);
    if (!st.ok()) return Fail(services::FromGrpcStatus(st));
    for (const v1::Job& j : resp.jobs()) {
      std::printf("%-28s %-10s %2d/%-2d  %s\n", j.job_id().c_str(),
                  orchestrator::JobStateName(j.state()), j.current_round(), j.spec().rounds(),
                  j.current_stage().c_str());
    }
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty());
  return kExitOk;
}

int Delete(const Args& args) {
  if (args.positional().size() != 1)
    return Fail(absl::InvalidArgumentError("usage: spar delete JOB"));
  v1::DeleteJobRequest req;
  req.set_job_id(args.positional()[0]);
  v1::DeleteJobResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  grpc::Status st = Stub(args)->DeleteJob(&ctx, req, &resp);
  if (!st.ok()) return Fail(services::FromGrpcStatus(st));
  std::printf("%s deleted\n", req.job_id().c_str());
  return kExitOk;
}

int Status(const Args& args) {
  if (args.positional().size() != 1)
    return Fail(absl::InvalidArgumentError("usage: spar status JOB"));
  v1::GetJobRequest req;
  req.set_job_id(args.positional()[0]);
  v1::Job job;
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  grpc::Status st = Stub(args)->GetJob(&ctx, req, &job);
  if (!st.ok()) return Fail(services::FromGrpcStatus(st));
  if (args.Has("json")) {
    std::printf("%s\n", JobJson(job).c_str());
  } else {
    std::printf("job %s: %s, round %d/%d, stage %s\n", job.job_id().c_str(),
                orchestrator::JobStateName(job.state()), job.current_round(), job.spec().rounds(),
                job.current_stage().c_str());
    if (!job.error().empty()) std::printf("error: %s\n", job.error().c_str());
    PrintRoundTable(job, stdout);
  }
  return job.state() == v1::JOB_STATE_FAILED ? kExitFailed : kExitOk;
}

// --judge_max_calls etc.: the limits a resume sets (each flag replaces one JudgeBudget field).
absl::Status ParseJudgeBudgetFlags(const Args& args, v1::ResumeJobRequest* req) {
  v1::JudgeBudget* b = req->mutable_judge_budget();
  bool any = false;
  auto int_flag = [&](const char* flag, void (v1::JudgeBudget::*set)(int64_t)) -> absl::Status {
    if (!args.Has(flag)) return absl::OkStatus();
    int64_t v = 0;
    if (!absl::SimpleAtoi(args.Get(flag), &v) || v < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, " must be an integer >= 0, got \"", args.Get(flag), "\""));
    }
    (b->*set)(v);
    any = true;
    return absl::OkStatus();
  };
  auto usd_flag = [&](const char* flag, void (v1::JudgeBudget::*set)(double)) -> absl::Status {
    if (!args.Has(flag)) return absl::OkStatus();
    double v = 0;
    if (!absl::SimpleAtod(args.Get(flag), &v) || !(v >= 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, " must be a number >= 0, got \"", args.Get(flag), "\""));
    }
    (b->*set)(v);
    any = true;
    return absl::OkStatus();
  };
  SPAR_RETURN_IF_ERROR(int_flag("judge_max_calls", &v1::JudgeBudget::set_max_calls));
  SPAR_RETURN_IF_ERROR(int_flag("judge_max_tokens", &v1::JudgeBudget::set_max_tokens));
  SPAR_RETURN_IF_ERROR(usd_flag("judge_max_cost_usd", &v1::JudgeBudget::set_max_cost_usd));
  SPAR_RETURN_IF_ERROR(int_flag("judge_round_max_calls", &v1::JudgeBudget::set_round_max_calls));
  SPAR_RETURN_IF_ERROR(int_flag("judge_round_max_tokens", &v1::JudgeBudget::set_round_max_tokens));
  SPAR_RETURN_IF_ERROR(
      usd_flag("judge_round_max_cost_usd", &v1::JudgeBudget::set_round_max_cost_usd));
  if (!any) req->clear_judge_budget();
  return absl::OkStatus();
}

int CancelOrResume(const Args& args, bool cancel) {
  if (args.positional().size() != 1) {
    return Fail(absl::InvalidArgumentError(absl::StrCat("usage: spar ", args.command(), " JOB")));
  }
  v1::Job job;
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  grpc::Status st;
  if (cancel) {
    v1::CancelJobRequest req;
    req.set_job_id(args.positional()[0]);
    st = Stub(args)->CancelJob(&ctx, req, &job);
  } else {
    v1::ResumeJobRequest req;
    req.set_job_id(args.positional()[0]);
    absl::Status parsed = ParseJudgeBudgetFlags(args, &req);
    if (!parsed.ok()) return Fail(parsed);
    st = Stub(args)->ResumeJob(&ctx, req, &job);
  }
  if (!st.ok()) return Fail(services::FromGrpcStatus(st));
  std::printf("%s %s\n", job.job_id().c_str(), orchestrator::JobStateName(job.state()));
  return kExitOk;
}

int Health(const Args& args) {
  auto stub =
      grpc::health::v1::Health::NewStub(services::MakeChannel(Address(args), "", ClientTls()));
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(args.Get("service", ""));
  grpc::health::v1::HealthCheckResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(&ctx, 5);
  grpc::Status st = stub->Check(&ctx, req, &resp);
  if (!st.ok()) return Fail(services::FromGrpcStatus(st));
  bool serving = resp.status() == grpc::health::v1::HealthCheckResponse::SERVING;
  std::printf("%s\n", serving ? "SERVING" : "NOT_SERVING");
  return serving ? kExitOk : kExitFailed;
}

}  // namespace

namespace {

// One CLI command: the flags it accepts (checked before it runs; own_flags: it checks its own)
// and what it runs.
struct Command {
  std::set<std::string> flags;
  std::function<int(const Args&)> run;
  bool own_flags = false;
};

const std::set<std::string>& ServerFlags() {
  static const std::set<std::string> flags = {"config",
                                              "port",
                                              "metrics_port",
                                              "host",
                                              "runs_dir",
                                              "data_root",
                                              "judge_url",
                                              "judge_kind",
                                              "judge_model",
                                              "judge_cache",
                                              "sampler_address",
                                              "oracle_address",
                                              "trainer_address",
                                              "role",
                                              "insecure",
                                              "judge_allow_http_host",
                                              "http_port",
                                              "http_policy",
                                              "sampler_engine",
                                              "sampler_engine_url",
                                              "sampler_engine_model",
                                              "sampler_engine_command",
                                              "sampler_engine_handoff"};
  return flags;
}

int Serve(const Args& args) {
  std::string role = args.Get("role");
  if (role != "sampler" && role != "oracle" && role != "trainer" && role != "orchestrator") {
    return Fail(absl::InvalidArgumentError(
        "--role must be sampler, oracle, trainer or orchestrator, got \"" + role + "\""));
  }
  return RunServer(args, {role});
}

int Watch(const Args& args) {
  if (args.positional().size() != 1) {
    return Fail(absl::InvalidArgumentError("usage: spar watch JOB"));
  }
  return WatchJob(Address(args), args.positional()[0], /*quiet=*/false);
}

int Version(const Args& args) {
  const model::RuntimeInfo info = model::CurrentRuntimeInfo();
  std::fputs(args.Has("json") ? (DumpJson(model::ToJson(info)) + "\n").c_str()
                              : model::ToText(info).c_str(),
             stdout);
  return kExitOk;
}

// `spar token --name=NAME --scope=read|submit|admin`: a new random token (shown once) and the
// entry that lists it, by digest, in the SPAR_API_TOKENS_FILE the operator manages.
int NewToken(const Args& args) {
  const std::string name = args.Get("name");
  if (absl::Status st = services::CheckHolderName(name); !st.ok()) return Fail(st);
  absl::StatusOr<services::Scope> scope = services::ParseScope(args.Get("scope", "read"));
  if (!scope.ok()) return Fail(scope.status());
  std::FILE* random = std::fopen("/dev/urandom", "rb");
  unsigned char bytes[32];
  const bool read = random != nullptr && std::fread(bytes, 1, sizeof bytes, random) == sizeof bytes;
  if (random != nullptr) std::fclose(random);
  if (!read) return Fail(absl::UnavailableError("token: cannot read /dev/urandom"));
  std::string token = "spar_";
  for (unsigned char b : bytes) absl::StrAppend(&token, absl::Hex(b, absl::kZeroPad2));
  nlohmann::json entry = {
      {"name", name}, {"scope", services::ScopeName(*scope)}, {"sha256", Sha256Hex(token)}};
  std::printf(
      "token for %s (shown once; give it to them, store it nowhere else):\n%s\n"
      "add to the \"tokens\" list of SPAR_API_TOKENS_FILE:\n%s\n",
      name.c_str(), token.c_str(), DumpJson(entry).c_str());
  return kExitOk;
}

const std::map<std::string, Command>& Commands() {
  static const std::map<std::string, Command> commands = {
      {"demo",
       {{"rounds", "runs_dir", "seed", "cache_dir", "algo", "preset", "spec_overrides",
         "judge_kind"},
        RunDemo}},
      {"up",
       {ServerFlags(),
        [](const Args& a) {
          return RunServer(a, {"sampler", "oracle", "trainer", "orchestrator"});
        }}},
      {"serve", {ServerFlags(), Serve}},
      {"submit", {{"addr", "request_id", "watch"}, Submit}},
      {"list", {{"addr", "state"}, List}},
      {"status", {{"addr", "json"}, Status}},
      {"watch", {{"addr"}, Watch}},
      {"cancel", {{"addr"}, [](const Args& a) { return CancelOrResume(a, true); }}},
      {"delete", {{"addr"}, Delete}},
      {"resume",
       {{"addr", "judge_max_calls", "judge_max_tokens", "judge_max_cost_usd",
         "judge_round_max_calls", "judge_round_max_tokens", "judge_round_max_cost_usd"},
        [](const Args& a) { return CancelOrResume(a, false); }}},
      {"judge", {{}, RunJudgeCommand, /*own_flags=*/true}},
      {"tokenize", {{}, RunTokenizeCommand, /*own_flags=*/true}},
      {"inspect", {{}, RunInspectCommand, /*own_flags=*/true}},
      {"health", {{"addr", "service"}, Health}},
      {"version", {{"json"}, Version}},
      {"token", {{"name", "scope"}, NewToken}},
  };
  return commands;
}

}  // namespace

int RunCli(int argc, char** argv) {
  auto parsed =
      Args::Parse(argc, argv, {"json", "watch", "help", "chat", "add-special-tokens", "insecure"});
  if (!parsed.ok()) return Fail(parsed.status());
  const Args& args = *parsed;
  const std::string& cmd = args.command();
  if (cmd == "help" || args.Has("help")) {  // asked for: stdout, exit 0
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  if (cmd.empty()) {  // no command: a usage error
    std::fputs(kUsage, stderr);
    return kExitUsage;
  }
  auto it = Commands().find(cmd);
  if (it == Commands().end()) {
    std::fprintf(stderr, "spar: unknown command \"%s\"\n%s", cmd.c_str(), kUsage);
    return kExitUsage;
  }
  const Command& command = it->second;
  if (!command.own_flags) {
    if (absl::Status known = args.CheckKnown(command.flags); !known.ok()) return Fail(known);
  }
  return command.run(args);
}

}  // namespace spar::cli
