#include "oracle_client/internal/judge_request.h"

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "oracle_client/side_by_side.h"

namespace spar::oracle::internal {
namespace {

using nlohmann::json;

// The template id plus the settings that change what an answer means.
std::string PairwiseTemplateKey(const JudgeTemplate& tmpl, const OracleConfig& config) {
  return absl::StrCat(tmpl.id, config.use_logprobs ? "/logprobs" : "/text", "/trunc",
                      config.max_response_tokens);
}

}  // namespace

AskSpec PairwiseSpec(const JudgeTemplate& tmpl, const OracleConfig& config, bool cached,
                     const std::string& prompt, const std::string& first, const std::string& second,
                     JudgeOrder order, const std::string& a, const std::string& b) {
  AskSpec spec;
  spec.kind = AskKind::kPairwise;
  spec.messages = RenderPairwise(tmpl, prompt, first, second);
  spec.max_tokens = 1;
  spec.flight_key = JudgmentCache::Key(
      CacheKeyFields{config.model, PairwiseTemplateKey(tmpl, config), prompt, a, b, order});
  if (cached) spec.cache_key = spec.flight_key;
  return spec;
}

AskSpec PointwiseSpec(const JudgeTemplate& tmpl, const OracleConfig& config, bool cached,
                      const std::string& prompt, const std::string& response) {
  AskSpec spec;
  spec.kind = AskKind::kPointwise;
  spec.messages = RenderPointwise(tmpl, prompt, response);
  spec.max_tokens = 3;  // "10" may be two tokens
  spec.flight_key = JudgmentCache::Key(
      CacheKeyFields{config.model, absl::StrCat(tmpl.id, "/trunc", config.max_response_tokens),
                     prompt, response, "", JudgeOrder::kAB});
  if (cached) spec.cache_key = spec.flight_key;
  return spec;
}

absl::StatusOr<AskSpec> SideBySideSpec(const OracleConfig& config, bool cached,
                                       const std::string& prompt,
                                       const std::vector<std::string>& responses_in) {
  const size_t n = responses_in.size();
  if (prompt.empty()) return absl::InvalidArgumentError("side-by-side: prompt is empty");
  if (n < 1 || n > 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("side-by-side: responses must hold 1..16 responses, got ", n));
  }
  std::vector<std::string> responses;
  responses.reserve(n);
  for (const std::string& r : responses_in) {
    responses.push_back(TruncateToTokens(r, config.max_response_tokens));
  }
  // The presentation order: seeded by the content, so a re-run shows (and caches) the same.
  json all = responses;
  const std::string all_text = DumpJson(all);
  const std::string digest = Sha256HexOfFields({"spar-side-by-side-order-v1", prompt, all_text});
  const uint64_t seed = std::stoull(digest.substr(0, 16), nullptr, 16);
  AskSpec spec;
  spec.kind = AskKind::kSideBySide;
  spec.order = SideBySideOrder(static_cast<int>(n), seed);
  spec.messages = RenderSideBySide(prompt, responses, spec.order);
  // A justification (<= 100 words) and a score per id.
  spec.max_tokens = 64 + 160 * static_cast<int>(n);
  std::string order_text;
  for (int o : spec.order) absl::StrAppend(&order_text, order_text.empty() ? "" : ",", o);
  spec.flight_key = JudgmentCache::Key(
      CacheKeyFields{config.model,
                     absl::StrCat(kSideBySideTemplateId, "/trunc", config.max_response_tokens,
                                  "/order", order_text),
                     prompt, all_text, "", JudgeOrder::kAB});
  if (cached) spec.cache_key = spec.flight_key;
  return spec;
}

AskSpec RewardSpec(const OracleConfig& config, bool cached, const std::string& prompt,
                   const std::string& response) {
  AskSpec spec;
  spec.kind = AskKind::kReward;
  spec.messages = {ChatMessage{"user", prompt}, ChatMessage{"assistant", response}};
  spec.max_tokens = 0;  // a pooling request generates nothing
  spec.flight_key = JudgmentCache::Key(CacheKeyFields{
      config.model, absl::StrCat("reward-model/pooling/trunc", config.max_response_tokens), prompt,
      response, "", JudgeOrder::kAB});
  if (cached) spec.cache_key = spec.flight_key;
  return spec;
}

std::string BuildRequestBody(const AskSpec& spec, const OracleConfig& config) {
  json messages = json::array();
  for (const ChatMessage& m : spec.messages) {
    messages.push_back({{"role", m.role}, {"content", m.content}});
  }
  if (spec.kind == AskKind::kReward) {
    return DumpJson(json{{"model", config.model}, {"messages", std::move(messages)}});
  }
  json req = {{"model", config.model},
              {"messages", std::move(messages)},
              {"max_tokens", spec.max_tokens},
              {"temperature", 0}};
  if (config.use_logprobs && spec.kind == AskKind::kPairwise) {
    req["logprobs"] = true;
    req["top_logprobs"] = 5;
  }
  // Invalid UTF-8 in a response must not abort the call: replace it.
  return DumpJson(req);
}

int64_t EstimatePromptTokens(const AskSpec& spec) {
  int64_t estimate = 0;
  for (const ChatMessage& m : spec.messages) estimate += EstimateTokens(m.content);
  return estimate;
}

}  // namespace spar::oracle::internal
