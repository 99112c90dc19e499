#include "services/cli/demo.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "services/app/app.h"
#include "services/cli/demo_spec.h"
#include "services/common/api_token.h"
#include "services/common/auth.h"
#include "services/common/server_runner.h"
#include "services/common/status_util.h"
#include "services/judge/judge_server.h"
#include "spar/v1/orchestrator.grpc.pb.h"
#include "tasks/arith/base_model.h"
#include "tasks/arith/problems.h"

namespace spar::cli {
namespace {

std::string Bar(int64_t done, int64_t total, int width = 24) {
  if (total <= 0) return std::string(width, ' ');
  int filled = static_cast<int>(static_cast<double>(done) / static_cast<double>(total) * width);
  filled = std::max(0, std::min(width, filled));
  std::string out;
  for (int i = 0; i < width; ++i) out += i < filled ? "#" : "-";
  return out;
}

std::string Fmt(double v, const char* fmt = "%.3f") {
  if (v < 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof(buf), fmt, v);
  return buf;
}

// "[lo,hi]" of a 95% interval.
std::string Ci(const v1::Interval& ci) { return absl::StrFormat("[%.3f,%.3f]", ci.lo(), ci.hi()); }

// Absolute (the job names its base model inside this directory, the data root).
std::string CacheDir(const Args& args) {
  std::string dir = ".cache/spar";
  if (args.Has("cache_dir")) {
    dir = args.Get("cache_dir");
  } else if (const char* env = std::getenv("SPAR_CACHE_DIR")) {
    dir = env;
  } else if (const char* home = std::getenv("HOME")) {
    dir = JoinPath(home, ".cache/spar");
  }
  absl::StatusOr<std::string> abs = AbsolutePath(dir);
  return abs.ok() ? *abs : dir;
}

}  // namespace

namespace {

// "+gained/-lost" prompts vs pi_0's greedy answers, and McNemar's exact p-value.
std::string VsBase(const v1::RoundSummary& r) {
  return absl::StrFormat("+%d/-%d", r.greedy_gained_vs_base(), r.greedy_lost_vs_base());
}

std::string McNemarP(const v1::RoundSummary& r) {
  return absl::StrFormat("%.2g", r.greedy_mcnemar_p_vs_base());
}

bool HasValidationSplit(const v1::Job& job) {
  return job.spec().validation_prompts().has_builtin() ||
         job.spec().validation_prompts().has_path();
}

void PrintBestRound(const v1::Job& job, std::FILE* out) {
  const bool validation = HasValidationSplit(job);
  const std::string by = !validation ? "last"
                         : job.spec().eval().select_best().empty()
                             ? "win_rate_vs_base"
                             : job.spec().eval().select_best();
  const std::string where = validation && by != "last" ? " on the validation split" : "";
  const bool evaluated = std::any_of(job.rounds().begin(), job.rounds().end(),
                                     [](const v1::RoundSummary& r) { return r.stage() == "eval"; });
  if (job.best_round() > 0) {
    std::fprintf(out, "best round: %d (by %s%s; checkpoint %s/best -> iter_%03d/checkpoint)\n",
                 job.best_round(), by.c_str(), where.c_str(), job.job_id().c_str(),
                 job.best_round());
  } else if (evaluated) {
    std::fprintf(out,
                 "best round: 0, pi_0 itself: no round beat it by %s%s (%s/best -> the base "
                 "model)\n",
                 by.c_str(), where.c_str(), job.job_id().c_str());
  }
}

}  // namespace

void PrintRoundTable(const v1::Job& job, std::FILE* out) {
  // Accuracy and win rates carry their 95% intervals (eval.json); acc_vs_pi0 compares each round
  // with pi_0 prompt by prompt (McNemar): a difference between rounds is real only where these
  // say so. val_* are the validation split's numbers, where the best round is chosen.
  // Listwise recipes (brain, rrhf) train on groups and have no pairwise reward accuracy.
  const bool listwise = job.spec().pairs().policy() == "listwise";
  std::fprintf(out, "%5s %7s %10s %10s %11s %15s %10s %15s %10s %9s %8s %8s %8s\n", "round",
               listwise ? "groups" : "pairs", "train_loss", "reward_acc", "win_vs_pi0", "win_95ci",
               "greedy_acc", "acc_95ci", "acc_vs_pi0", "mcnemar_p", "val_win", "val_acc",
               "seconds");
  std::fprintf(out, "%5d %7s %10s %10s %11s %15s %10s %15s %10s %9s %8s %8s %8s\n", 0, "-", "-",
               "-", "-", "-", Fmt(job.base_greedy_accuracy()).c_str(),
               job.base_greedy_accuracy() >= 0 ? Ci(job.base_greedy_accuracy_ci95()).c_str() : "-",
               "-", "-", HasValidationSplit(job) ? "0.500" : "-",
               HasValidationSplit(job) ? Fmt(job.base_validation_greedy_accuracy()).c_str() : "-",
               "-");
  for (const v1::RoundSummary& r : job.rounds()) {
    const bool done = r.stage() == "eval";
    const bool acc = done && r.greedy_accuracy() >= 0;
    std::fprintf(out, "%5d %7d %10s %10s %11s %15s %10s %15s %10s %9s %8s %8s %8s%s\n", r.round(),
                 r.pairs_kept(), Fmt(r.train_loss(), "%.4f").c_str(),
                 listwise ? "-" : Fmt(r.reward_accuracy()).c_str(),
                 done ? Fmt(r.win_rate_vs_base()).c_str() : "-",
                 done ? Ci(r.win_rate_vs_base_ci95()).c_str() : "-",
                 done ? Fmt(r.greedy_accuracy()).c_str() : "-",
                 acc ? Ci(r.greedy_accuracy_ci95()).c_str() : "-", acc ? VsBase(r).c_str() : "-",
                 acc ? McNemarP(r).c_str() : "-",
                 done ? Fmt(r.validation_win_rate_vs_base()).c_str() : "-",
                 done ? Fmt(r.validation_greedy_accuracy()).c_str() : "-",
                 Fmt(r.seconds(), "%.1f").c_str(), done ? "" : "  (in progress)");
  }
  // The job's result (EvalSpec.select_best; runs/<job>/best links to its checkpoint).
  PrintBestRound(job, out);
  std::fflush(out);
}

int WatchJob(const std::string& address, const std::string& job_id, bool quiet,
             v1::Job* final_job) {
  auto stub = v1::Orchestrator::NewStub(services::MakeChannel(address));
  grpc::ClientContext ctx;
  absl::StatusOr<std::string> token = services::ApiTokenFromEnv();
  if (!token.ok()) {
    std::fprintf(stderr, "spar: %s\n", std::string(token.status().message()).c_str());
    return 2;
  }
  services::AddBearer(&ctx, *token);
  v1::WatchJobRequest req;
  req.set_job_id(job_id);
  auto reader = stub->WatchJob(&ctx, req);
  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  v1::JobEvent ev;
  v1::Job last_job;
  int rounds = 0;
  bool bar_open = false;
  // Start time per round/stage: judging overlaps sampling (pipelining), so two stages of a
  // round can be in progress at once.
  std::map<std::string, absl::Time> stage_starts;
  while (reader->Read(&ev)) {
    if (ev.has_job()) {
      last_job = ev.job();
      rounds = last_job.spec().rounds();
    }
    if (quiet) continue;
    std::string where =
        ev.round() == 0 ? "base   " : absl::StrFormat("round %d/%d", ev.round(), rounds);
    const std::string stage_key = absl::StrCat(ev.round(), "/", ev.stage());
    if (ev.kind() == "stage_started") stage_starts[stage_key] = absl::Now();
    const absl::Time stage_start =
        stage_starts.count(stage_key) ? stage_starts[stage_key] : absl::Now();
    if (ev.kind() == "progress" && tty) {
      double el = absl::ToDoubleSeconds(absl::Now() - stage_start);
      std::string eta = "";
      if (ev.done() > 0 && ev.total() > ev.done()) {
        eta = absl::StrFormat(" eta %.0fs", el * (ev.total() - ev.done()) / ev.done());
      }
      std::printf("\r  %s %-6s [%s] %lld/%lld%s   ", where.c_str(), ev.stage().c_str(),
                  Bar(ev.done(), ev.total()).c_str(), static_cast<long long>(ev.done()),
                  static_cast<long long>(ev.total()), eta.c_str());
      std::fflush(stdout);
      bar_open = true;
    } else if (ev.kind() == "stage_finished") {
      if (bar_open) std::printf("\n");
      bar_open = false;
      std::printf("  %s %-6s done in %.1fs %s\n", where.c_str(), ev.stage().c_str(),
                  absl::ToDoubleSeconds(absl::Now() - stage_start), ev.message().c_str());
      std::fflush(stdout);
    } else if (ev.kind() == "round_finished" && ev.has_job() && ev.round() >= 1 &&
               ev.round() <= ev.job().rounds_size()) {
      const v1::RoundSummary& r = ev.job().rounds(ev.round() - 1);
      const bool listwise = ev.job().spec().pairs().policy() == "listwise";
      std::printf("  round %d finished: %d %s, loss %.4f, %swin vs pi0 %.3f, greedy acc %.3f\n",
                  ev.round(), r.pairs_kept(), listwise ? "groups" : "pairs", r.train_loss(),
                  listwise ? "" : absl::StrFormat("reward acc %.3f, ", r.reward_accuracy()).c_str(),
                  r.win_rate_vs_base(), r.greedy_accuracy());
      std::fflush(stdout);
    }
  }
  if (bar_open) std::printf("\n");
  grpc::Status st = reader->Finish();
  if (!st.ok()) {
    std::fprintf(stderr, "spar: watch %s: %s\n", job_id.c_str(), st.error_message().c_str());
    return st.error_code() == grpc::StatusCode::UNAVAILABLE ? 3
           : st.error_code() == grpc::StatusCode::NOT_FOUND ? 4
                                                            : 1;
  }
  if (final_job != nullptr) *final_job = last_job;
  return last_job.state() == v1::JOB_STATE_SUCCEEDED ? 0 : 1;
}

namespace {

// Step 1: the tiny base model pi_0, SFT to partial skill once, then the cached checkpoint reused.
absl::StatusOr<std::string> EnsureBaseModel(const Args& args, int seed) {
  std::string base = JoinPath(CacheDir(args), absl::StrCat("arith-base-v3-seed", seed));
  if (PathExists(JoinPath(base, "config.json"))) {
    std::printf("[1/3] base model pi_0 cached at %s\n", base.c_str());
    return base;
  }
  std::printf("[1/3] building the base model pi_0 (SFT on %s, cached at %s)\n",
              "two-digit addition", base.c_str());
  std::fflush(stdout);
  SPAR_RETURN_IF_ERROR(MakeDirs(Dirname(base)));
  arith::ArithBaseOptions opt;
  opt.out_dir = base;
  opt.seed = static_cast<uint64_t>(seed);
  auto report = arith::BuildArithBaseModel(opt, [](const arith::ArithBaseProgress& p) {
    if (p.accuracy >= 0) {
      std::printf("  step %5d  loss %.4f  greedy accuracy %.3f\n", p.step, p.loss, p.accuracy);
      std::fflush(stdout);
    }
  });
  if (!report.ok()) {
    return absl::Status(report.status().code(),
                        absl::StrCat("building the base model: ", report.status().message()));
  }
  std::printf("  pi_0: %lld parameters, %d steps in %.1fs, greedy accuracy %.3f\n",
              static_cast<long long>(report->num_parameters), report->steps, report->seconds,
              report->greedy_accuracy);
  return base;
}

// Step 3: the demo's job through the gRPC API.
absl::StatusOr<v1::Job> CreateDemoJob(const std::string& address, const std::string& algo,
                                      const std::string& base, int rounds, int seed,
                                      const std::string& preset, const std::string& overrides,
                                      v1::JobSpec* spec_out) {
  v1::CreateJobRequest req;
  v1::JobSpec* spec = req.mutable_spec();
  spec->set_name("demo-" + algo);
  spec->set_algorithm(algo);
  spec->set_base_model(base);
  spec->set_rounds(rounds);
  spec->set_seed(static_cast<uint64_t>(seed));
  if (!preset.empty()) spec->set_preset(preset);
  *spec = DemoSpecDefaults(*spec);
  if (!overrides.empty()) {
    // Fields merged over the demo's spec (an experiment's settings; repeated fields append).
    v1::JobSpec more;
    google::protobuf::util::JsonParseOptions options;
    auto st = google::protobuf::util::JsonStringToMessage(overrides, &more, options);
    if (!st.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--spec_overrides: ", st.message().ToString()));
    }
    spec->MergeFrom(more);
  }
  req.set_request_id(absl::StrCat("demo-", absl::ToUnixMillis(absl::Now())));
  auto stub = v1::Orchestrator::NewStub(services::MakeChannel(address));
  v1::Job job;
  grpc::ClientContext ctx;
  grpc::Status st = stub->CreateJob(&ctx, req, &job);
  if (!st.ok()) return absl::UnknownError(absl::StrCat("CreateJob: ", st.error_message()));
  *spec_out = *spec;
  return job;
}

// What the demo runs differently from the paper, and why.
void PrintTunedSettings(const std::string& algo) {
  std::printf(
      "      as the paper states, except (tuned for this model; the paper's in brackets):\n");
  for (const TunedSetting& t : DemoTunedSettings(algo)) {
    std::printf("        %s %s [%s]: %s\n", t.field.c_str(), t.demo.c_str(), t.paper.c_str(),
                t.why.c_str());
  }
}

// The job's result: the best round (chosen on the validation split), reported on the eval
// prompts, with the paired comparison against pi_0.
void PrintDemoResult(const v1::Job& final_job, int rc) {
  if (rc != 0) {
    std::fprintf(stderr, "spar demo: job ended %s: %s\n",
                 final_job.state() == v1::JOB_STATE_FAILED ? "FAILED" : "early",
                 final_job.error().c_str());
    return;
  }
  const int best = final_job.best_round();
  if (best < 1 || best > final_job.rounds_size()) {
    std::printf("no round beat pi_0 on the validation split: the result is pi_0 (accuracy %.3f)\n",
                final_job.base_greedy_accuracy());
    return;
  }
  const v1::RoundSummary& r = final_job.rounds(best - 1);
  std::printf(
      "best round %d (chosen on the validation split): greedy accuracy %.3f -> %.3f (%+.1f "
      "points, 95%% [%+.1f, %+.1f]; %s prompts vs pi_0, McNemar p = %.2g); win rate vs pi_0 "
      "%.3f\n",
      best, final_job.base_greedy_accuracy(), r.greedy_accuracy(),
      100.0 * (r.greedy_accuracy() - final_job.base_greedy_accuracy()),
      100.0 * r.greedy_accuracy_diff_vs_base_ci95().lo(),
      100.0 * r.greedy_accuracy_diff_vs_base_ci95().hi(), VsBase(r).c_str(),
      r.greedy_mcnemar_p_vs_base(), r.win_rate_vs_base());
}

int Fail(const absl::Status& st) {
  std::fprintf(stderr, "spar demo: %s\n", std::string(st.message()).c_str());
  return 1;
}

}  // namespace

int RunDemo(const Args& args) {
  absl::Time demo_start = absl::Now();
  auto rounds = args.GetInt("rounds", 3);
  auto seed = args.GetInt("seed", 1);
  if (!rounds.ok() || !seed.ok() || *rounds < 1) {
    std::fprintf(stderr, "spar demo: --rounds and --seed must be positive integers\n");
    return 2;
  }
  const std::string algo = args.Get("algo", "dno");
  if (algo != "dno" && algo != "spin" && algo != "dpo" && algo != "sppo" && algo != "mpo" &&
      algo != "brain" && algo != "rrhf") {
    std::fprintf(stderr,
                 "spar demo: --algo must be dno, spin, dpo, sppo, mpo, brain or rrhf, got \"%s\"\n",
                 algo.c_str());
    return 2;
  }
  absl::StatusOr<oracle::OracleKind> judge_kind =
      oracle::ParseOracleKind(args.Get("judge_kind", "chat"));
  if (!judge_kind.ok()) return Fail(judge_kind.status());
  absl::StatusOr<std::string> base = EnsureBaseModel(args, *seed);
  if (!base.ok()) return Fail(base.status());
  // 2. A local OpenAI-compatible rule judge and all four services on loopback.
  judge::JudgeServerOptions jo;
  // Only a correct answer beats another: the graded rule (a closer wrong answer wins) let the
  // recipes win on closeness without gaining accuracy (docs/benchmarks.md).
  jo.arith_rule = "exact";
  auto judge = judge::JudgeServer::Start(jo);
  if (!judge.ok())
    return Fail(
        absl::Status(judge.status().code(), absl::StrCat("judge: ", judge.status().message())));
  services::AppConfig ac;
  ac.port = 0;
  ac.metrics_port = 0;
  ac.runs_dir = args.Get("runs_dir", "runs");
  ac.data_root = Dirname(*base);  // the base model's cache dir: the only input path the job names
  ac.oracle.base_url = (*judge)->base_url();
  ac.oracle.max_concurrency = 8;
  // --judge_kind=reward_model: the same rule asked as a reward model (POST /pooling at the root).
  ac.oracle.kind = *judge_kind;
  if (*judge_kind == oracle::OracleKind::kRewardModel) {
    ac.oracle.base_url = absl::StrCat("http://127.0.0.1:", (*judge)->port());
  }
  auto app = services::App::Start(ac);
  if (!app.ok()) return Fail(app.status());
  std::printf("[2/3] judge on %s; services on %s (metrics http://%s:%d/metrics)\n",
              (*judge)->base_url().c_str(), (*app)->address().c_str(), "127.0.0.1",
              (*app)->metrics_port());
  // 3. A job through the gRPC API, watched to the end.
  v1::JobSpec spec;
  absl::StatusOr<v1::Job> job =
      CreateDemoJob((*app)->address(), algo, *base, *rounds, *seed, args.Get("preset", ""),
                    args.Get("spec_overrides", ""), &spec);
  if (!job.ok()) return Fail(job.status());
  // The job's spec as the orchestrator completed it (the preset's defaults filled in).
  std::printf("[3/3] job %s: %d %s rounds (preset %s), %d prompts x K=%d samples per round\n",
              job->job_id().c_str(), *rounds, algo.c_str(), job->spec().preset().c_str(),
              job->spec().prompts_per_round(), job->spec().sampling().num_samples());
  PrintTunedSettings(algo);
  std::fflush(stdout);
  v1::Job final_job;
  int rc = WatchJob((*app)->address(), job->job_id(), /*quiet=*/false, &final_job);
  std::printf("\n");
  PrintRoundTable(final_job, stdout);
  std::printf(
      "\nrun directory: %s\nseeds: job %d (sampling, training and eval prompts derive "
      "from it); wall time %.1fs\n",
      JoinPath(ac.runs_dir, job->job_id()).c_str(), *seed,
      absl::ToDoubleSeconds(absl::Now() - demo_start));
  PrintDemoResult(final_job, rc);
  (*app)->Shutdown();
  (*judge)->Stop();
  return rc;
}

}  // namespace spar::cli
