#include "oracle_client/oracle_config.h"

#include <cmath>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "oracle_client/internal/http_policy.h"

namespace spar::oracle {
namespace {

template <typename T>
absl::Status Read(const nlohmann::json& json, const char* key, T* out) {
  auto it = json.find(key);
  if (it == json.end()) return absl::OkStatus();
  try {
    *out = it->get<T>();
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("oracle.", key, " has the wrong type: ", e.what()));
  }
  return absl::OkStatus();
}

template <typename Int>
absl::Status ReadInt(const nlohmann::json& json, const char* key, Int* out) {
  auto it = json.find(key);
  if (it == json.end()) return absl::OkStatus();
  if (!it->is_number_integer()) {
    return absl::InvalidArgumentError(absl::StrCat("oracle.", key, " must be an integer"));
  }
  return Read(json, key, out);
}

absl::Status ReadNumber(const nlohmann::json& json, const char* key, double* out) {
  auto it = json.find(key);
  if (it == json.end()) return absl::OkStatus();
  if (!it->is_number()) {
    return absl::InvalidArgumentError(absl::StrCat("oracle.", key, " must be a number"));
  }
  *out = it->get<double>();
  return absl::OkStatus();
}

// A duration in seconds, in (0, 86400].
absl::Status ReadSeconds(const nlohmann::json& json, const char* key, absl::Duration* out) {
  auto it = json.find(key);
  if (it == json.end()) return absl::OkStatus();
  if (!it->is_number()) {
    return absl::InvalidArgumentError(absl::StrCat("oracle.", key, " must be a number"));
  }
  double s = it->get<double>();
  if (!std::isfinite(s) || s <= 0 || s > 86400) {
    return absl::InvalidArgumentError(
        absl::StrCat("oracle.", key, " must be in (0, 86400], got ", s));
  }
  *out = absl::Seconds(s);
  return absl::OkStatus();
}

absl::Status ReadKind(const nlohmann::json& json, OracleKind* out) {
  auto it = json.find("kind");
  if (it == json.end()) return absl::OkStatus();
  SPAR_ASSIGN_OR_RETURN(*out,
                        ParseOracleKind(it->is_string() ? it->get<std::string>() : DumpJson(*it)));
  return absl::OkStatus();
}

}  // namespace

const char* OracleKindName(OracleKind kind) {
  return kind == OracleKind::kRewardModel ? "reward_model" : "chat";
}

absl::StatusOr<OracleKind> ParseOracleKind(const std::string& name) {
  if (name == "chat") return OracleKind::kChat;
  if (name == "reward_model") return OracleKind::kRewardModel;
  return absl::InvalidArgumentError(
      absl::StrCat("oracle.kind must be \"chat\" or \"reward_model\", got ", name));
}

absl::StatusOr<OracleConfig> ParseOracleConfig(const nlohmann::json& json) {
  if (!json.is_object()) return absl::InvalidArgumentError("oracle config must be a JSON object");
  static const std::set<std::string> kKnown = {"kind",
                                               "base_url",
                                               "allow_http_hosts",
                                               "model",
                                               "api_key_env",
                                               "max_concurrency",
                                               "timeout_s",
                                               "judgment_deadline_s",
                                               "max_retries",
                                               "retry_backoff_initial_s",
                                               "retry_backoff_max_s",
                                               "both_orders",
                                               "use_logprobs",
                                               "cache_path",
                                               "requests_per_minute",
                                               "tokens_per_minute",
                                               "budget_calls",
                                               "budget_tokens",
                                               "budget_cost_usd",
                                               "price_prompt_per_1k_usd",
                                               "price_completion_per_1k_usd",
                                               "template_path",
                                               "score_template_path",
                                               "max_response_tokens"};
  for (auto it = json.begin(); it != json.end(); ++it) {
    if (it.key() == "api_key") {
      return absl::InvalidArgumentError(
          "oracle.api_key is not accepted in config files; name an environment variable with "
          "oracle.api_key_env instead");
    }
    if (kKnown.count(it.key()) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("oracle.", it.key(), " is not a known key"));
    }
  }
  OracleConfig c;
  SPAR_RETURN_IF_ERROR(ReadKind(json, &c.kind));
  SPAR_RETURN_IF_ERROR(Read(json, "base_url", &c.base_url));
  SPAR_RETURN_IF_ERROR(Read(json, "allow_http_hosts", &c.allow_http_hosts));
  SPAR_RETURN_IF_ERROR(Read(json, "model", &c.model));
  SPAR_RETURN_IF_ERROR(Read(json, "api_key_env", &c.api_key_env));
  SPAR_RETURN_IF_ERROR(ReadInt(json, "max_concurrency", &c.max_concurrency));
  SPAR_RETURN_IF_ERROR(ReadInt(json, "max_retries", &c.max_retries));
  SPAR_RETURN_IF_ERROR(Read(json, "both_orders", &c.both_orders));
  SPAR_RETURN_IF_ERROR(Read(json, "use_logprobs", &c.use_logprobs));
  SPAR_RETURN_IF_ERROR(Read(json, "cache_path", &c.cache_path));
  SPAR_RETURN_IF_ERROR(ReadInt(json, "requests_per_minute", &c.requests_per_minute));
  SPAR_RETURN_IF_ERROR(ReadInt(json, "tokens_per_minute", &c.tokens_per_minute));
  SPAR_RETURN_IF_ERROR(ReadInt(json, "budget_calls", &c.budget_calls));
  SPAR_RETURN_IF_ERROR(ReadInt(json, "budget_tokens", &c.budget_tokens));
  SPAR_RETURN_IF_ERROR(ReadNumber(json, "budget_cost_usd", &c.budget_cost_usd));
  SPAR_RETURN_IF_ERROR(ReadNumber(json, "price_prompt_per_1k_usd", &c.price_prompt_per_1k_usd));
  SPAR_RETURN_IF_ERROR(
      ReadNumber(json, "price_completion_per_1k_usd", &c.price_completion_per_1k_usd));
  SPAR_RETURN_IF_ERROR(Read(json, "template_path", &c.template_path));
  SPAR_RETURN_IF_ERROR(Read(json, "score_template_path", &c.score_template_path));
  SPAR_RETURN_IF_ERROR(ReadInt(json, "max_response_tokens", &c.max_response_tokens));
  SPAR_RETURN_IF_ERROR(ReadSeconds(json, "timeout_s", &c.timeout));
  SPAR_RETURN_IF_ERROR(ReadSeconds(json, "judgment_deadline_s", &c.judgment_deadline));
  SPAR_RETURN_IF_ERROR(ReadSeconds(json, "retry_backoff_initial_s", &c.retry_backoff_initial));
  SPAR_RETURN_IF_ERROR(ReadSeconds(json, "retry_backoff_max_s", &c.retry_backoff_max));
  return c;
}

absl::Status Validate(const OracleConfig& c) {
  if (c.base_url.empty()) return absl::InvalidArgumentError("oracle.base_url must be set");
  for (size_t i = 0; i < c.allow_http_hosts.size(); ++i) {
    const std::string& h = c.allow_http_hosts[i];
    if (h.empty() || h.find_first_of(":/[]@?# \t\r\n") != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("oracle.allow_http_hosts[", i,
                       "] must be a non-empty host name without scheme, port "
                       "or path, got \"",
                       h, "\""));
    }
  }
  SPAR_RETURN_IF_ERROR(
      internal::ParseBaseUrl(c.base_url, "oracle.base_url", c.allow_http_hosts).status());
  if (c.model.empty()) return absl::InvalidArgumentError("oracle.model must be non-empty");
  if (c.max_concurrency < 1 || c.max_concurrency > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("oracle.max_concurrency must be in [1, 1024], got ", c.max_concurrency));
  }
  if (c.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("oracle.timeout must be > 0, got ", absl::FormatDuration(c.timeout)));
  }
  if (c.judgment_deadline <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("oracle.judgment_deadline must be > 0, got ",
                                                   absl::FormatDuration(c.judgment_deadline)));
  }
  if (c.max_retries < -1 || c.max_retries > 1000) {
    return absl::InvalidArgumentError(absl::StrCat(
        "oracle.max_retries must be in [-1, 1000] (-1 = until the deadline), got ", c.max_retries));
  }
  if (c.retry_backoff_initial <= absl::ZeroDuration() ||
      c.retry_backoff_max < c.retry_backoff_initial) {
    return absl::InvalidArgumentError(absl::StrCat(
        "oracle.retry_backoff_initial must be > 0 and <= oracle.retry_backoff_max, got ",
        absl::FormatDuration(c.retry_backoff_initial), " and ",
        absl::FormatDuration(c.retry_backoff_max)));
  }
  if (c.requests_per_minute < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "oracle.requests_per_minute must be >= 0 (0 = unlimited), got ", c.requests_per_minute));
  }
  if (c.tokens_per_minute < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "oracle.tokens_per_minute must be >= 0 (0 = unlimited), got ", c.tokens_per_minute));
  }
  if (c.budget_calls < 0 || c.budget_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("oracle.budget_calls and oracle.budget_tokens must be >= 0, got ",
                     c.budget_calls, " and ", c.budget_tokens));
  }
  for (auto [name, v] : {std::pair<const char*, double>{"budget_cost_usd", c.budget_cost_usd},
                         {"price_prompt_per_1k_usd", c.price_prompt_per_1k_usd},
                         {"price_completion_per_1k_usd", c.price_completion_per_1k_usd}}) {
    if (!std::isfinite(v) || v < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("oracle.", name, " must be a finite number >= 0, got ", v));
    }
  }
  if (c.budget_cost_usd > 0 && c.price_prompt_per_1k_usd == 0 &&
      c.price_completion_per_1k_usd == 0) {
    return absl::InvalidArgumentError(
        "oracle.budget_cost_usd is set but both prices are 0, so it could never be reached");
  }
  if (c.max_response_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("oracle.max_response_tokens must be >= 0 (0 = no truncation), got ",
                     c.max_response_tokens));
  }
  if (c.kind == OracleKind::kRewardModel &&
      !(c.template_path.empty() && c.score_template_path.empty())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "oracle.", c.template_path.empty() ? "score_template_path" : "template_path",
        " is set but oracle.kind is \"reward_model\": a reward model is asked no template"));
  }
  if (c.api_key.find_first_of("\r\n") != std::string::npos) {
    return absl::InvalidArgumentError("oracle api key must not contain line breaks");
  }
  return absl::OkStatus();
}

nlohmann::json RedactedOracleConfig(const OracleConfig& c) {
  return nlohmann::json{{"kind", OracleKindName(c.kind)},
                        {"base_url", c.base_url},
                        {"allow_http_hosts", c.allow_http_hosts},
                        {"model", c.model},
                        {"api_key", c.api_key.empty() ? "" : "<redacted>"},
                        {"api_key_env", c.api_key_env},
                        {"max_concurrency", c.max_concurrency},
                        {"timeout_s", absl::ToDoubleSeconds(c.timeout)},
                        {"judgment_deadline_s", absl::ToDoubleSeconds(c.judgment_deadline)},
                        {"max_retries", c.max_retries},
                        {"retry_backoff_initial_s", absl::ToDoubleSeconds(c.retry_backoff_initial)},
                        {"retry_backoff_max_s", absl::ToDoubleSeconds(c.retry_backoff_max)},
                        {"both_orders", c.both_orders},
                        {"use_logprobs", c.use_logprobs},
                        {"cache_path", c.cache_path},
                        {"requests_per_minute", c.requests_per_minute},
                        {"tokens_per_minute", c.tokens_per_minute},
                        {"budget_calls", c.budget_calls},
                        {"budget_tokens", c.budget_tokens},
                        {"budget_cost_usd", c.budget_cost_usd},
                        {"price_prompt_per_1k_usd", c.price_prompt_per_1k_usd},
                        {"price_completion_per_1k_usd", c.price_completion_per_1k_usd},
                        {"template_path", c.template_path},
                        {"score_template_path", c.score_template_path},
                        {"max_response_tokens", c.max_response_tokens}};
}

}  // namespace spar::oracle
