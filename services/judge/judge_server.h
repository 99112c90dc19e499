// JudgeServer: the reference preference judge, an OpenAI-compatible HTTP server
// (POST /v1/chat/completions, GET /v1/models, GET /healthz) that reads the spar pairwise judge
// template (oracle_client/judge_template.h), applies the arithmetic rule judge and answers with a
// one-token verdict "A"/"B" plus log-probs when asked. The built-in pointwise template is answered
// with a score: 10 for a correct answer, 3 for a wrong number, 1 for no number, 5 when the
// instruction is not an arithmetic question. The side-by-side template
// (oracle_client/side_by_side.h) is answered with JSON scores per id: 6 for a correct answer, 1 for
// a wrong number, 0 for no number, 3 when the instruction is not arithmetic. It also serves the
// rule as a reward model, as vLLM's pooling API does (POST /pooling and /v1/pooling; the reward is
// arith::ArithReward of the last assistant message as the answer to the last user message). It
// can inject faults
// (rate limits, 5xx, slowness, truncated bodies, bad verdicts, connection resets,
// insufficient_quota) to exercise OracleClient's retry policy. Used by the demo (binary spar-judge)
// and by tests in-process.
//
// Thread-safe. The HTTP server runs on its own threads; Stop (or the destructor) shuts it down and
// waits for in-flight requests.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace httplib {
class Server;
}

namespace spar::judge {

struct JudgeServerOptions {
  // Address to bind.
  std::string host = "127.0.0.1";
  // TCP port; 0 = any free port (see JudgeServer::port()).
  int port = 0;
  // Injected fault: "" (none) | "429" | "500" | "503" | "slow" | "truncated_json" |
  // "bad_verdict" | "reset" | "insufficient_quota".
  std::string fault;
  // Fraction of chat-completion and pooling requests that get the fault, in [0, 1]; deterministic
  // by request number n (1-based): request n is faulted when ceil(n*rate) > ceil((n-1)*rate), so
  // 0.5 faults requests 1, 3, 5, ... and 1 faults every request.
  double fault_rate = 1.0;
  // Added to every chat-completion and pooling request before answering.
  absl::Duration latency = absl::ZeroDuration();
  // Extra latency of the "slow" fault.
  absl::Duration slow_latency = absl::Seconds(2);
  // Headers sent with the "429" and "503" faults ("" = header omitted).
  std::string retry_after = "1";  // seconds
  std::string retry_after_ms;     // milliseconds
  // When set, chat-completion and models requests need "Authorization: Bearer <api_key>" (else
  // 401).
  std::string api_key;
  // How arithmetic answers compare: "closer" (a closer wrong answer beats a farther one) or
  // "exact" (only a correct answer beats another; see arith::ArithRule).
  std::string arith_rule = "closer";
  // The model name reported by /v1/models and in responses.
  std::string model = "spar-rule-judge";
  // When set, every judged request (as in seen_requests()) is also appended to this file as one
  // JSON line, flushed as it is judged, so the log is complete up to any moment (kill tests read
  // it while the judge runs). The file is truncated at start.
  std::string request_log;
  // HTTP worker threads; a keep-alive connection holds one while open, so this bounds the
  // client concurrency the server can serve. >= 1.
  int threads = 16;
};

absl::Status Validate(const JudgeServerOptions& options);

class JudgeServer {
 public:
  // Binds, starts serving on a background thread and returns once the server accepts requests.
  // InvalidArgument for bad options, Unavailable when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<JudgeServer>> Start(JudgeServerOptions options);
  ~JudgeServer();
  JudgeServer(const JudgeServer&) = delete;
  JudgeServer& operator=(const JudgeServer&) = delete;

  // The bound port.
  int port() const { return port_; }
  // "http://host:port/v1".
  std::string base_url() const;
  // Stops accepting, waits for in-flight requests, joins the server thread. Idempotent.
  void Stop();

  // Chat-completion and pooling requests received (authorized ones, faulted or not).
  int64_t requests_served() const { return requests_served_.load(); }
  // One entry per chat-completion request that was judged:
  // {"instruction","output_a","output_b","model","logprobs","top_logprobs"} (pairwise) or
  // {"instruction","output","model"} (pointwise) or
  // {"instruction","outputs","model","mode":"side_by_side"} (side-by-side, outputs in id order) or
  // {"instruction","output","model","mode":"reward"} (a pooling request).
  std::vector<nlohmann::json> seen_requests() const;

 private:
  explicit JudgeServer(JudgeServerOptions options);
  struct Handlers;
  // Appends to seen_ (and the request log).
  void RecordSeen(nlohmann::json request);

  JudgeServerOptions options_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<int64_t> requests_served_{0};
  std::atomic<int64_t> request_counter_{0};
  mutable std::mutex seen_mu_;
  std::vector<nlohmann::json> seen_;
  std::FILE* request_log_ = nullptr;  // guarded by seen_mu_
  std::once_flag stop_once_;
};

}  // namespace spar::judge
