#include "oracle_client/internal/response_parser.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/outside_text.h"
#include "oracle_client/internal/http_policy.h"
#include "oracle_client/side_by_side.h"
#include "oracle_client/verdict.h"

namespace spar::oracle::internal {
namespace {

using nlohmann::json;

// The judge's error message from an OpenAI-style body ({"error":{...}} or flat vLLM style).
struct ErrorBody {
  std::string message;
  std::string code;
  std::string type;
};

ErrorBody ParseErrorBody(const std::string& body) {
  ErrorBody out;
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return out;
  const json* e = &j;
  if (auto it = j.find("error"); it != j.end()) {
    if (it->is_object()) {
      e = &*it;
    } else if (it->is_string()) {
      out.message = it->get<std::string>();
      return out;
    }
  }
  auto str = [&](const char* key) -> std::string {
    auto it = e->find(key);
    if (it == e->end()) return "";
    if (it->is_string()) return it->get<std::string>();
    if (it->is_number()) return DumpJson(*it);
    return "";
  };
  out.message = str("message");
  out.code = str("code");
  out.type = str("type");
  return out;
}

bool IsInsufficientQuota(const ErrorBody& e) {
  return e.code == "insufficient_quota" || e.type == "insufficient_quota";
}

std::optional<bool> ParseShouldRetry(const std::string& v) {
  std::string s = absl::AsciiStrToLower(absl::StripAsciiWhitespace(v));
  if (s == "true") return true;
  if (s == "false") return false;
  return std::nullopt;
}

// Judge-supplied text made safe to store, log and return (internal/judge_text.h).
std::string Text(absl::string_view raw, const OracleConfig& config, size_t max_bytes = 200) {
  return SafeOutsideText(raw, config.api_key, max_bytes);
}

absl::Status FinalError(const HttpResult& r, const ErrorBody& e, int attempts,
                        const OracleConfig& config) {
  std::string detail = absl::StrCat(
      "judge at ", config.base_url, " failed after ", attempts, " attempt(s): ",
      r.cut           ? absl::StrCat("no response within the request deadline (oracle.timeout_s = ",
                                     absl::ToDoubleSeconds(config.timeout), " s)")
      : r.status == 0 ? absl::StrCat("no response (", r.error_text, ")")
                      : absl::StrCat("HTTP ", r.status),
      e.message.empty() ? "" : absl::StrCat(": ", Text(e.message, config)),
      e.code.empty() ? "" : absl::StrCat(" [code ", Text(e.code, config, 60), "]"),
      r.request_id.empty() ? "" : absl::StrCat(" (x-request-id ", r.request_id, ")"));
  if (r.status == 0) {
    if (r.tls_failure) return absl::FailedPreconditionError(detail);
    return absl::UnavailableError(detail);
  }
  if (r.status == 408 || r.status == 409 || r.status == 429 || r.status >= 500) {
    return absl::UnavailableError(detail);
  }
  switch (r.status) {
    case 400:
    case 422:
      return absl::InvalidArgumentError(detail);
    case 401:
      return absl::UnauthenticatedError(detail);
    case 403:
      return absl::PermissionDeniedError(detail);
    case 404:
      return absl::NotFoundError(detail);
    default:
      return absl::FailedPreconditionError(detail);
  }
}

// The top_logprobs of the first generated token in `choice` (empty when absent or malformed).
std::vector<TokenLogprob> TopLogprobs(const json& choice) {
  std::vector<TokenLogprob> top;
  const json* lp = nullptr;
  if (auto l = choice.find("logprobs"); l != choice.end() && l->is_object()) {
    auto content = l->find("content");
    if (content != l->end() && content->is_array() && !content->empty() &&
        (*content)[0].is_object()) {
      auto t = (*content)[0].find("top_logprobs");
      if (t != (*content)[0].end() && t->is_array()) lp = &*t;
    }
  }
  if (lp == nullptr) return top;
  for (const json& e : *lp) {
    if (!e.is_object()) continue;
    auto tok = e.find("token");
    auto lpv = e.find("logprob");
    if (tok == e.end() || !tok->is_string() || lpv == e.end() || !lpv->is_number()) continue;
    top.push_back(TokenLogprob{tok->get<std::string>(), lpv->get<double>()});
  }
  return top;
}

// Fills out->scores (side-by-side), out->p_first with the score (pointwise) or P(A wins)
// (pairwise) from out->verdict_text and `choice`; false with `why` when unparsable.
bool ParseKind(const json& choice, const AskSpec& spec, const OracleConfig& config,
               OrderResult* out, std::string* why) {
  if (spec.kind == AskKind::kSideBySide) {
    absl::StatusOr<std::vector<int>> scores = ParseSideBySideScores(out->verdict_text, spec.order);
    if (!scores.ok()) {
      *why = absl::StrCat("unparsable answer \"", Text(out->verdict_text, config, 60), "\" (",
                          scores.status().message(), ")");
      return false;
    }
    out->scores = *std::move(scores);
    return true;
  }
  if (spec.kind == AskKind::kPointwise) {
    std::optional<int> score = ParseScoreText(out->verdict_text);
    if (!score) {
      *why = absl::StrCat("unparsable score \"", Text(out->verdict_text, config, 40), "\"");
      return false;
    }
    out->p_first = *score;
    return true;
  }
  std::optional<Verdict> verdict = ParseVerdictText(out->verdict_text);
  std::optional<double> p;
  if (config.use_logprobs) p = PreferenceFromTopLogprobs(TopLogprobs(choice), verdict);
  if (!p && verdict) p = *verdict == Verdict::kA ? 1.0 : 0.0;
  if (!p) {
    *why = absl::StrCat("unparsable verdict \"", Text(out->verdict_text, config, 40), "\"");
    return false;
  }
  out->p_first = *p;
  return true;
}

// The one reward in a vLLM pooling answer: data[0].data is the number, or a list holding exactly
// one (a sequence-classification head with one label), possibly nested; nullopt with `why` for
// anything else (no data, several values, not finite).
std::optional<double> ParseReward(const json& j, std::string* why) {
  auto data = j.find("data");
  if (data == j.end() || !data->is_array() || data->empty() || !(*data)[0].is_object()) {
    *why = "pooling answer has no data[0]";
    return std::nullopt;
  }
  auto value = (*data)[0].find("data");
  if (value == (*data)[0].end()) {
    *why = "pooling answer has no data[0].data";
    return std::nullopt;
  }
  const json* v = &*value;
  while (v->is_array() && v->size() == 1) v = &(*v)[0];
  if (!v->is_number()) {
    *why = absl::StrCat("pooling answer data[0].data holds ",
                        v->is_array() ? absl::StrCat(v->size(), " values") : "no number",
                        "; a reward model gives one reward per sequence");
    return std::nullopt;
  }
  const double r = v->get<double>();
  if (!std::isfinite(r)) {
    *why = "pooling answer's reward is not finite";
    return std::nullopt;
  }
  return r;
}

}  // namespace

ResponseBody ParseResponseBody(const std::string& body) {
  ResponseBody out;
  try {
    out.json = json::parse(body);
  } catch (const json::parse_error& e) {
    out.json = json(json::value_t::discarded);
    out.cut_short = e.byte >= body.size();
  }
  const json& j = out.json;
  if (!j.is_object()) return out;
  if (auto u = j.find("usage"); u != j.end() && u->is_object()) {
    if (auto it = u->find("prompt_tokens"); it != u->end() && it->is_number_integer()) {
      out.prompt_tokens = std::max<int64_t>(0, it->get<int64_t>());
    }
    if (auto it = u->find("completion_tokens"); it != u->end() && it->is_number_integer()) {
      out.completion_tokens = std::max<int64_t>(0, it->get<int64_t>());
    }
  }
  return out;
}

std::optional<OrderResult> ParseAnswer(const ResponseBody& parsed, const std::string& body,
                                       const AskSpec& spec, const OracleConfig& config,
                                       std::string* why) {
  const json& j = parsed.json;
  if (j.is_discarded() || !j.is_object()) {
    *why = absl::StrCat("response body is not JSON: ", Text(body, config, 80));
    return std::nullopt;
  }
  try {
    if (spec.kind == AskKind::kReward) {
      std::optional<double> reward = ParseReward(j, why);
      if (!reward) return std::nullopt;
      OrderResult out;
      out.p_first = *reward;
      out.verdict_text = DumpJson(json(*reward));
      return out;
    }
    auto choices = j.find("choices");
    if (choices == j.end() || !choices->is_array() || choices->empty() ||
        !(*choices)[0].is_object()) {
      *why = "response has no choices";
      return std::nullopt;
    }
    const json& choice = (*choices)[0];
    OrderResult out;
    if (auto msg = choice.find("message"); msg != choice.end() && msg->is_object()) {
      if (auto content = msg->find("content"); content != msg->end() && content->is_string()) {
        // Valid UTF-8 already (the JSON parser checks); the key must still not be stored.
        out.verdict_text = RedactKey(content->get<std::string>(), config.api_key);
      }
    }
    if (!ParseKind(choice, spec, config, &out, why)) return std::nullopt;
    return out;
  } catch (const json::exception& e) {
    *why = absl::StrCat("malformed response: ", e.what());
    return std::nullopt;
  }
}

absl::Status AttemptError(const HttpResult& r, int attempts, const OracleConfig& config,
                          bool* transient) {
  ErrorBody e = r.status == 0 ? ErrorBody{} : ParseErrorBody(r.body);
  AttemptOutcome outcome;
  outcome.http_status = r.status;
  outcome.x_should_retry = ParseShouldRetry(r.x_should_retry);
  outcome.insufficient_quota = r.status == 429 && IsInsufficientQuota(e);
  *transient = ShouldRetry(outcome);
  if (outcome.insufficient_quota) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "judge at ", config.base_url, " reports insufficient_quota (billing), not retried",
        e.message.empty() ? "" : absl::StrCat(": ", Text(e.message, config))));
  }
  return FinalError(r, e, attempts, config);
}

}  // namespace spar::oracle::internal
