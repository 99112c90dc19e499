// Internal to oracle_client: what the judge's HTTP answers mean. A 2xx body becomes the reported
// token usage and a parsed answer (pairwise verdict or log-prob preference, pointwise score,
// side-by-side scores) or the reason it is unparsable; any other outcome becomes the error
// status the judgment ends with and whether it is worth a retry. Text the judge sends back is
// passed through SafeOutsideText (valid UTF-8, API key redacted) before it reaches a message.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "oracle_client/internal/http_pool.h"
#include "oracle_client/internal/judge_request.h"
#include "oracle_client/judge_usage.h"
#include "oracle_client/oracle_config.h"

namespace spar::oracle::internal {

// A 2xx body, parsed as JSON.
struct ResponseBody {
  nlohmann::json json;     // discarded when the body is not JSON
  bool cut_short = false;  // the body ended mid-JSON (a transport fault, not a bad answer)
  // The prompt and completion tokens the body reports (0/0 when absent); counted whether or not
  // the answer parses, since the judge charges for it.
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};
ResponseBody ParseResponseBody(const std::string& body);

// The answer in a 2xx body. Unparsable (bad JSON, no choices, verdict neither "A"/"B" nor in the
// log-probs, score not 1..10, side-by-side scores broken) -> nullopt with `why` set.
std::optional<OrderResult> ParseAnswer(const ResponseBody& parsed, const std::string& body,
                                       const AskSpec& spec, const OracleConfig& config,
                                       std::string* why);

// The error a failed (non-2xx or no response) attempt ends with after `attempts` attempts, and
// whether it is transient (worth a retry before the deadline): insufficient_quota is
// ResourceExhausted and never retried; otherwise the code follows the HTTP status (STYLE R4).
absl::Status AttemptError(const HttpResult& r, int attempts, const OracleConfig& config,
                          bool* transient);

}  // namespace spar::oracle::internal
