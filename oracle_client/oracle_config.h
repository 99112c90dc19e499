// Configuration of the preference-oracle HTTP client (OracleClient). Filled once by
// ParseOracleConfig (strict: unknown keys are errors) or in code, then checked by Validate.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace spar::oracle {

// What answers the oracle: a chat judge (POST {base_url}/chat/completions, a verdict per
// comparison) or a reward model (POST {base_url}/pooling, vLLM's pooling API: one scalar reward
// r(prompt, response) per response; a comparison is sigma(r_a - r_b)).
enum class OracleKind { kChat, kRewardModel };

struct OracleConfig {
  // "chat" (default) or "reward_model". A reward model has no templates (template_path and
  // score_template_path must be empty), answers no side-by-side or pointwise 1..10 questions
  // (FailedPrecondition), and ignores both_orders and use_logprobs (a reward does not depend on
  // the order shown).
  OracleKind kind = OracleKind::kChat;
  // OpenAI-compatible API root, e.g. "http://127.0.0.1:8081/v1"; requests go to
  // {base_url}/chat/completions (a reward model: {base_url}/pooling; vLLM serves /pooling at the
  // server root, e.g. "http://rm:8000", not under /v1). https is required unless the host is
  // loopback or listed in allow_http_hosts.
  std::string base_url;
  // Host names (no scheme, no port) to which base_url may use plain http although they are not
  // loopback: the explicit opt-in for a judge on a private network, e.g. the Compose service
  // "spar-judge". Empty = https for every non-loopback host. Compared case-insensitively.
  std::vector<std::string> allow_http_hosts;
  // The judge model name sent in each request.
  std::string model = "spar-rule-judge";
  // Bearer token; empty = no Authorization header. Never logged, never read from config files
  // nor from the environment by this library: the edge (main) sets it with
  // services::ResolveJudgeApiKey (services/common/judge_api_key.h).
  std::string api_key;
  // Name of the environment variable the edge reads api_key from ("" = $SPAR_JUDGE_API_KEY).
  // Logged.
  std::string api_key_env;
  // Most HTTP requests in flight at once, across Compare and CompareAll callers. >= 1.
  int max_concurrency = 8;
  // Total deadline of one HTTP request, from connect to the last byte of the answer (also the
  // connect/read/write timeout): a judge that drips bytes is cut off here. > 0.
  absl::Duration timeout = absl::Seconds(30);
  // How long one judgment (both presentation orders, or one score) may keep retrying transient
  // failures (connection errors and resets, timeouts, bodies cut short, 408, 409, 429, >= 500),
  // from its first attempt: a retry whose wait would end past it is not made, and the judgment
  // fails Unavailable. 401/403/400 and other 4xx fail at once. > 0.
  absl::Duration judgment_deadline = absl::Minutes(10);
  // Most backoff retries per request on top of the deadline; -1 = no count limit (retry until
  // judgment_deadline), 0 = no retries.
  int max_retries = -1;
  // Backoff before retry n (0-based) when the judge sends no usable retry-after(-ms):
  // min(initial * 2^n, max) * jitter, jitter in [0.75, 1]. > 0, initial <= max.
  absl::Duration retry_backoff_initial = absl::Milliseconds(500);
  absl::Duration retry_backoff_max = absl::Seconds(8);
  // Ask both presentation orders and debias: P = ½(P_ab + 1 − P_ba).
  bool both_orders = true;
  // Request logprobs (top 5) and take P(A) from the verdict tokens' probabilities.
  bool use_logprobs = true;

  // SQLite judgment cache file (created if absent; may be shared by several jobs and processes).
  // "" = no cache.
  std::string cache_path;

  // Client-side rate limits: requests and estimated tokens per any 60 s window; 0 = unlimited.
  // Token estimate per request: ceil(bytes/4) of the rendered messages + max_tokens.
  int64_t requests_per_minute = 0;
  int64_t tokens_per_minute = 0;

  // Budget for this client (one job); 0 = unlimited. When the next HTTP request would exceed a
  // limit, judgments fail with ResourceExhausted("budget: ...") instead of being sent.
  int64_t budget_calls = 0;    // HTTP requests (attempts, retries included)
  int64_t budget_tokens = 0;   // prompt + completion tokens (reported by the judge; estimated
                               // for the request about to be sent)
  double budget_cost_usd = 0;  // USD, priced with the two prices below
  double price_prompt_per_1k_usd = 0;      // USD per 1,000 prompt tokens
  double price_completion_per_1k_usd = 0;  // USD per 1,000 completion tokens

  // Custom template files (see judge_template.h for the format); "" = the built-in template.
  std::string template_path;        // pairwise (Compare)
  std::string score_template_path;  // pointwise (Score)
  // Each response is truncated to this many estimated tokens (4 bytes each) before rendering;
  // 0 = no truncation.
  int max_response_tokens = 0;
};

// Reads {"kind" ("chat" | "reward_model"), "base_url", "allow_http_hosts" (array of strings),
// "model", "api_key_env", "max_concurrency", "timeout_s", "judgment_deadline_s", "max_retries",
// "retry_backoff_initial_s", "retry_backoff_max_s", "both_orders", "use_logprobs", "cache_path",
// "requests_per_minute", "tokens_per_minute", "budget_calls", "budget_tokens", "budget_cost_usd",
// "price_prompt_per_1k_usd", "price_completion_per_1k_usd", "template_path", "score_template_path",
// "max_response_tokens"}; unknown keys (including "api_key": secrets do not belong in config files)
// are InvalidArgument naming the key. Reads no environment variable (api_key stays empty; see
// api_key). Does not call Validate.
absl::StatusOr<OracleConfig> ParseOracleConfig(const nlohmann::json& json);

// "chat" | "reward_model".
const char* OracleKindName(OracleKind kind);
// The inverse; InvalidArgument naming oracle.kind for any other text.
absl::StatusOr<OracleKind> ParseOracleKind(const std::string& name);

// InvalidArgument naming the first broken rule.
absl::Status Validate(const OracleConfig& config);

// The config as JSON with the api key redacted, for the startup log.
nlohmann::json RedactedOracleConfig(const OracleConfig& config);

}  // namespace spar::oracle
