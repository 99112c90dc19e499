// OracleClient: the preference oracle. Asks an OpenAI-compatible judge (POST
// {base_url}/chat/completions, one-token verdict "A"/"B", log-probs when enabled) which of two
// responses to a prompt is better, in both presentation orders, and returns the position-debiased
// probability that the first response wins. Retries follow the OpenAI SDK policy (connection
// errors, 408, 409, 429 and >= 500; retry-after-ms / retry-after honoured; x-should-retry
// overrides; insufficient_quota never retried); backoff waits go through the injected Clock.
// An unparsable verdict is retried once and then reported as an error, never guessed.
//
// Called by services/oracle (behind gRPC) and by tests. Thread-safe: Compare and CompareAll may be
// called from any number of threads; at most config.max_concurrency HTTP requests are in flight
// at once across all callers. No gRPC here (STYLE R2); httplib stays in the .cc.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/metrics/registry.h"
#include "oracle_client/oracle_config.h"

namespace spar::oracle {

// One pairwise question: is response_a better than response_b as an answer to prompt?
struct Comparison {
  std::string prompt;
  std::string response_a;
  std::string response_b;
};

struct Judgment {
  // P(response_a beats response_b). With both orders: ½(p_ab + 1 − p_ba); else p_ab.
  double p_a_wins = 0.5;
  // P(the output shown as "A" wins) with response_a shown first (p_ab) and with the responses
  // swapped (p_ba); -1 when that order was not asked.
  double p_ab = -1;
  double p_ba = -1;
  // The judge's raw text answer in each order ("" when not asked).
  std::string verdict_ab;
  std::string verdict_ba;
  int http_calls = 0;  // HTTP attempts made for this judgment
  int retries = 0;     // of which retries (backoff retries plus unparsable-verdict retries)
};

class OracleClient {
 public:
  // Validates `config` (InvalidArgument). `registry` may be null (metrics are then kept private);
  // `clock` (not owned, must outlive the client) is used for backoff sleeps.
  static absl::StatusOr<std::unique_ptr<OracleClient>> Create(OracleConfig config,
                                                              metrics::Registry* registry,
                                                              Clock* clock = Clock::Real());
  ~OracleClient();
  OracleClient(const OracleClient&) = delete;
  OracleClient& operator=(const OracleClient&) = delete;

  // Blocking. Errors: ResourceExhausted (insufficient_quota), Unavailable (judge unreachable, or
  // still 408/409/429/5xx after max_retries), DataLoss (verdict or body unparsable twice),
  // Unauthenticated (401), PermissionDenied (403), NotFound (404), InvalidArgument (400/422),
  // FailedPrecondition (other 4xx, TLS verification failure).
  absl::StatusOr<Judgment> Compare(const Comparison& comparison);

  // Judges every item, up to max_concurrency at a time, on the client's own threads. `on_done` is
  // called exactly once per index as each item completes, from worker threads but serialized
  // (never two at once), so it need not lock. Items not started when `cancelled()` turns true end
  // with Cancelled (an item already in its backoff loop stops at the next attempt). Returns when
  // every callback has returned.
  void CompareAll(const std::vector<Comparison>& comparisons,
                  const std::function<void(size_t index, absl::StatusOr<Judgment>)>& on_done,
                  const std::function<bool()>& cancelled = nullptr);

  struct Usage {
    int64_t calls = 0;     // HTTP attempts
    int64_t retries = 0;   // attempts that were retries
    int64_t failures = 0;  // judgments that ended in an error
    int64_t prompt_tokens = 0;
    int64_t completion_tokens = 0;
  };
  Usage GetUsage() const;

  const OracleConfig& config() const;

 private:
  struct Impl;
  explicit OracleClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace spar::oracle
