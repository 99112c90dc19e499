// Internal to oracle_client: what one request to the judge asks (AskSpec: the chat messages, the
// answer's size, the cache and single-flight keys) for each kind of question, and its JSON body.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "oracle_client/judge_template.h"
#include "oracle_client/judgment_cache.h"
#include "oracle_client/oracle_config.h"

namespace spar::oracle::internal {

// What kind of answer a request asks for.
enum class AskKind { kPairwise, kPointwise, kSideBySide, kReward };

// One request's parsed answer.
struct OrderResult {
  // P(the output shown as "A" wins), or the pointwise score, or the reward model's reward
  double p_first = 0.5;
  std::string verdict_text;
  std::vector<int> scores;  // side-by-side: one per candidate, un-shuffled
  bool cached = false;
};

// One request to make (or find in the cache).
struct AskSpec {
  AskKind kind = AskKind::kPairwise;
  std::vector<ChatMessage> messages;
  int max_tokens = 1;
  std::string cache_key;   // "" = not cached
  std::string flight_key;  // single-flight key (the cache key, computed with or without a cache)
  std::vector<int> order;  // side-by-side: the presentation order
};

// The pairwise request showing `first` as A and `second` as B; `a`, `b` and `order` name the
// comparison (response_a, response_b, truncated) for the cache key. `cached`: the client has a
// cache (else cache_key stays "").
AskSpec PairwiseSpec(const JudgeTemplate& tmpl, const OracleConfig& config, bool cached,
                     const std::string& prompt, const std::string& first, const std::string& second,
                     JudgeOrder order, const std::string& a, const std::string& b);

// The pointwise request scoring `response` (already truncated).
AskSpec PointwiseSpec(const JudgeTemplate& tmpl, const OracleConfig& config, bool cached,
                      const std::string& prompt, const std::string& response);

// The side-by-side request scoring every response (truncated here) in one call, shown in the
// order SideBySideOrder seeded by the content. InvalidArgument for an empty prompt or not 1..16
// responses.
absl::StatusOr<AskSpec> SideBySideSpec(const OracleConfig& config, bool cached,
                                       const std::string& prompt,
                                       const std::vector<std::string>& responses);

// The reward-model request scoring `response` (already truncated) as the assistant's answer to
// `prompt`: POST /pooling with the conversation as chat messages, so the server renders it with
// the reward model's own chat template (vLLM's pooling API).
AskSpec RewardSpec(const OracleConfig& config, bool cached, const std::string& prompt,
                   const std::string& response);

// The JSON body of `spec`: chat completions at temperature 0, log-probs for a pairwise request
// when oracle.use_logprobs; a reward request: {"model", "messages"} for /pooling.
std::string BuildRequestBody(const AskSpec& spec, const OracleConfig& config);

// Estimated prompt tokens of `spec` (budget reservations and the rate limiter).
int64_t EstimatePromptTokens(const AskSpec& spec);

}  // namespace spar::oracle::internal
