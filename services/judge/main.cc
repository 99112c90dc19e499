// spar-judge: the reference rule judge as an OpenAI-compatible HTTP server.
//   spar-judge [--host=127.0.0.1] [--port=8081] [--arith_rule=exact|closer]
//              [--fault=429|500|503|slow|truncated_json|
//              bad_verdict|reset|insufficient_quota] [--fault_rate=1] [--latency_ms=0]
//              [--log_requests=FILE]   (every judged request as a JSON line, as it is judged)
// API key (optional) from SPAR_JUDGE_API_KEY or SPAR_JUDGE_API_KEY_FILE (ResolveJudgeApiKey).
// Blocks until SIGINT/SIGTERM.
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>

#include "absl/strings/numbers.h"
#include "services/common/judge_api_key.h"
#include "services/judge/judge_server.h"

namespace {

constexpr char kUsage[] =
    "usage: spar-judge [--host=127.0.0.1] [--port=8081] [--arith_rule=exact|closer]\n"
    "                  [--fault=429|500|503|slow|truncated_json|bad_verdict|reset|\n"
    "                   insufficient_quota]\n"
    "                  [--fault_rate=1] [--latency_ms=0] [--log_requests=FILE]\n"
    "  the reference rule judge as an OpenAI-compatible HTTP server (POST /v1/chat/completions,\n"
    "  GET /healthz); API key (optional) from SPAR_JUDGE_API_KEY or SPAR_JUDGE_API_KEY_FILE.\n"
    "  --arith_rule: exact (default; only a correct answer wins, as `spar demo` judges) or closer\n"
    "  (a closer wrong answer wins too: recipes then learn closeness, not accuracy).\n"
    "  Runs until SIGINT/SIGTERM.\n";

}  // namespace

int main(int argc, char** argv) {
  spar::judge::JudgeServerOptions options;
  options.port = 8081;
  // The shipped examples run against this binary as the README starts it: with "closer" they
  // learned to be closer rather than right (dno-arith.json: pi_0 0.485 -> 0.492 after 3 rounds,
  // seed 1), with "exact" as the demo (0.485 -> 0.681).
  options.arith_rule = "exact";
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    }
    size_t eq = arg.find('=');
    std::string name = arg.substr(0, eq);
    std::string value =
        eq == std::string::npos ? (i + 1 < argc ? argv[++i] : "") : arg.substr(eq + 1);
    int latency_ms = 0;
    bool ok = true;  // NOLINT
    if (name == "--host")
      options.host = value;
    else if (name == "--port")
      ok = absl::SimpleAtoi(value, &options.port);
    else if (name == "--log_requests")
      options.request_log = value;
    else if (name == "--fault")
      options.fault = value;
    else if (name == "--arith_rule")
      options.arith_rule = value;
    else if (name == "--fault_rate")
      ok = absl::SimpleAtod(value, &options.fault_rate);
    else if (name == "--latency_ms") {
      ok = absl::SimpleAtoi(value, &latency_ms) && latency_ms >= 0;
      options.latency = absl::Milliseconds(latency_ms);
    } else {
      ok = false;
    }
    if (!ok) {
      std::cerr << "spar-judge: bad flag \"" << arg << "\"\n" << kUsage;
      return 2;
    }
  }
  absl::StatusOr<std::string> key =
      spar::services::ResolveJudgeApiKey(spar::oracle::OracleConfig());
  if (!key.ok()) {
    std::cerr << "spar-judge: " << key.status().message() << "\n";
    return 2;
  }
  options.api_key = *std::move(key);
  // Block the signals before any thread starts so that only sigwait receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  auto server = spar::judge::JudgeServer::Start(options);
  if (!server.ok()) {
    std::cerr << "spar-judge: " << server.status() << "\n";
    return 2;
  }
  std::cout << "spar-judge listening on " << (*server)->base_url() << std::endl;
  int sig = 0;
  sigwait(&signals, &sig);
  (*server)->Stop();
  return 0;
}
