#include "services/sampler/completions_codec.h"

#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/utf8.h"
#include "model/chat_template.h"

namespace spar::services {
namespace {

using nlohmann::json;

absl::Status Bad(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

absl::StatusOr<int64_t> Int(const json& body, const char* field, int64_t fallback) {
  if (!body.contains(field) || body[field].is_null()) return fallback;
  const json& v = body[field];
  if (!v.is_number_integer()) return Bad(field, "must be an integer");
  return v.get<int64_t>();
}

absl::StatusOr<double> Number(const json& body, const char* field, double fallback) {
  if (!body.contains(field) || body[field].is_null()) return fallback;
  const json& v = body[field];
  if (!v.is_number()) return Bad(field, "must be a number");
  return v.get<double>();
}

absl::StatusOr<bool> Bool(const json& body, const char* field, bool fallback) {
  if (!body.contains(field) || body[field].is_null()) return fallback;
  if (!body[field].is_boolean()) return Bad(field, "must be true or false");
  return body[field].get<bool>();
}

absl::StatusOr<std::vector<std::string>> Prompts(const json& body) {
  if (!body.contains("prompt")) return Bad("prompt", "is required");
  const json& p = body["prompt"];
  if (p.is_string()) return std::vector<std::string>{p.get<std::string>()};
  if (!p.is_array() || p.empty()) {
    return Bad("prompt", "must be a string or a non-empty list of strings");
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < p.size(); ++i) {
    if (!p[i].is_string()) {
      return Bad(absl::StrCat("prompt[", i, "]"),
                 "must be a string (token-id prompts are not supported by Spar's sampler)");
    }
    out.push_back(p[i].get<std::string>());
  }
  return out;
}

// Fields that change the output and that Spar does not implement: refused unless neutral.
absl::Status CheckNeutral(const json& body) {
  for (const char* f : {"echo"}) {
    if (body.contains(f) && !body[f].is_null() && body[f] != false)
      return Bad(f, "is not supported");
  }
  for (const char* f : {"presence_penalty", "frequency_penalty"}) {
    if (body.contains(f) && !body[f].is_null() && body[f] != 0) return Bad(f, "is not supported");
  }
  const json n = body.contains("n") && body["n"].is_number_integer() ? body["n"] : json(1);
  if (body.contains("best_of") && !body["best_of"].is_null() && body["best_of"] != n) {
    return Bad("best_of", "is not supported");
  }
  for (const char* f : {"suffix", "stop", "logit_bias"}) {
    const bool empty = !body.contains(f) || body[f].is_null() ||
                       (body[f].is_array() && body[f].empty()) ||
                       (body[f].is_object() && body[f].empty()) ||
                       (body[f].is_string() && body[f].get<std::string>().empty());
    if (!empty) return Bad(f, "is not supported");
  }
  return absl::OkStatus();
}

const std::set<std::string>& KnownFields() {
  static const std::set<std::string> fields = {"model",
                                               "prompt",
                                               "n",
                                               "temperature",
                                               "top_p",
                                               "max_tokens",
                                               "seed",
                                               "logprobs",
                                               "stream",
                                               "stream_options",
                                               "add_special_tokens",
                                               "spar_first_index",
                                               "user",
                                               "echo",
                                               "presence_penalty",
                                               "frequency_penalty",
                                               "best_of",
                                               "suffix",
                                               "stop",
                                               "logit_bias"};
  return fields;
}

}  // namespace

namespace {
absl::StatusOr<CompletionRequest> ParseBody(const std::string& text);
}  // namespace

absl::StatusOr<CompletionRequest> ParseCompletionRequest(const std::string& text) {
  try {
    return ParseBody(text);
  } catch (const json::exception& e) {  // a field of an unexpected type the checks missed
    return absl::InvalidArgumentError(absl::StrCat("body: ", e.what()));
  }
}

namespace {

absl::StatusOr<CompletionRequest> ParseBody(const std::string& text) {
  json body = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object()) return Bad("body", "must be a JSON object");
  for (const auto& [key, value] : body.items()) {
    if (KnownFields().count(key) == 0) return Bad(key, "is not a supported field");
  }
  CompletionRequest r;
  if (body.contains("model") && !body["model"].is_null()) {
    if (!body["model"].is_string()) return Bad("model", "must be a string");
    r.model = body["model"].get<std::string>();
  }
  SPAR_ASSIGN_OR_RETURN(r.prompts, Prompts(body));
  SPAR_ASSIGN_OR_RETURN(int64_t n, Int(body, "n", 1));
  if (n < 1 || n > 4096) return Bad("n", absl::StrCat("must be in [1, 4096], got ", n));
  SPAR_RETURN_IF_ERROR(CheckNeutral(body));  // after n: best_of is compared with it
  SPAR_ASSIGN_OR_RETURN(int64_t max_tokens, Int(body, "max_tokens", 16));
  if (max_tokens < 1 || max_tokens > (int64_t{1} << 20)) {
    return Bad("max_tokens", absl::StrCat("must be >= 1, got ", max_tokens));
  }
  SPAR_ASSIGN_OR_RETURN(double temperature, Number(body, "temperature", 1.0));
  SPAR_ASSIGN_OR_RETURN(double top_p, Number(body, "top_p", 1.0));
  SPAR_ASSIGN_OR_RETURN(int64_t seed, Int(body, "seed", 0));
  SPAR_ASSIGN_OR_RETURN(int64_t first, Int(body, "spar_first_index", 0));
  if (first < 0) return Bad("spar_first_index", absl::StrCat("must be >= 0, got ", first));
  SPAR_ASSIGN_OR_RETURN(int64_t logprobs, Int(body, "logprobs", 0));
  if (logprobs < 0) return Bad("logprobs", absl::StrCat("must be >= 0, got ", logprobs));
  SPAR_ASSIGN_OR_RETURN(r.stream, Bool(body, "stream", false));
  SPAR_ASSIGN_OR_RETURN(bool add_special, Bool(body, "add_special_tokens", true));
  if (body.contains("stream_options") && !body["stream_options"].is_null()) {
    const json& so = body["stream_options"];
    if (!so.is_object()) return Bad("stream_options", "must be an object");
    SPAR_ASSIGN_OR_RETURN(r.include_usage, Bool(so, "include_usage", false));
  }
  r.logprobs = logprobs > 0;
  r.params.num_samples = static_cast<int>(n);
  r.params.max_new_tokens = static_cast<int>(max_tokens);
  r.params.temperature = static_cast<float>(temperature);
  r.params.top_p = static_cast<float>(top_p);
  r.params.seed = static_cast<uint64_t>(seed);
  r.params.first_prompt_index = first;
  r.params.chat_template = add_special ? "none" : std::string(model::kVerbatimPrompt);
  // Checked here so the error names the wire field; sampler::Validate agrees.
  if (!(temperature >= 0) || !std::isfinite(temperature)) {
    return Bad("temperature", absl::StrCat("must be >= 0, got ", temperature));
  }
  if (!(top_p > 0 && top_p <= 1))
    return Bad("top_p", absl::StrCat("must be in (0, 1], got ", top_p));
  SPAR_RETURN_IF_ERROR(sampler::Validate(r.params));
  return r;
}

}  // namespace

json ChoicesJson(const sampler::PromptSamples& ps, int64_t position, bool logprobs) {
  json choices = json::array();
  const int64_t n = static_cast<int64_t>(ps.samples.size());
  for (int64_t j = 0; j < n; ++j) {
    const sampler::SampleOut& s = ps.samples[j];
    json c = {{"index", position * n + j},
              {"text", SanitizeUtf8(s.text)},
              {"finish_reason", s.finished ? "stop" : "length"},
              {"token_ids", s.token_ids},
              {"logprobs", nullptr}};
    if (logprobs) {
      json tokens = json::array();
      for (int32_t id : s.token_ids) tokens.push_back(absl::StrCat("token_id:", id));
      c["logprobs"] = {
          {"tokens", tokens}, {"token_logprobs", s.token_logprobs}, {"top_logprobs", nullptr}};
    }
    choices.push_back(std::move(c));
  }
  return choices;
}

json ErrorJson(const absl::Status& status) {
  std::string message(status.message());
  json param = nullptr;
  if (absl::IsInvalidArgument(status)) {
    const size_t colon = message.find(':');
    if (colon != std::string::npos && message.find(' ') > colon) param = message.substr(0, colon);
  }
  const char* type = absl::IsInvalidArgument(status) ? "invalid_request_error"
                     : absl::IsNotFound(status)      ? "not_found_error"
                     : absl::IsUnauthenticated(status) || absl::IsPermissionDenied(status)
                         ? "authentication_error"
                         : "server_error";
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param},
            {"code", absl::StatusCodeToString(status.code())}}}};
}

int HttpStatusFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kFailedPrecondition:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kCancelled:
      return 499;
    case absl::StatusCode::kUnavailable:
      return 503;
    default:
      return 500;
  }
}

}  // namespace spar::services
