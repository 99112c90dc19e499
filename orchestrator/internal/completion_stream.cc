#include "orchestrator/internal/completion_stream.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/outside_text.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace spar::orchestrator::internal {
namespace {

using nlohmann::json;

// An OpenAI error object as a Status: the code Spar's server names, else by type.
absl::Status ErrorStatus(const json& error) {
  const std::string message =
      error.is_object() && error.contains("message") && error["message"].is_string()
          ? error["message"].get<std::string>()
          : DumpJson(error);
  const std::string code = error.is_object() && error.contains("code") && error["code"].is_string()
                               ? error["code"].get<std::string>()
                               : "";
  absl::StatusCode c = absl::StatusCode::kInternal;
  if (code == "INVALID_ARGUMENT" || error.value("type", "") == "invalid_request_error") {
    c = absl::StatusCode::kInvalidArgument;
  } else if (code == "UNAVAILABLE" || code == "CANCELLED") {
    c = absl::StatusCode::kUnavailable;
  } else if (code == "NOT_FOUND") {
    c = absl::StatusCode::kNotFound;
  }
  return absl::Status(c, absl::StrCat("engine: ", SafeOutsideText(message, "", 1000)));
}

}  // namespace

CompletionStream::CompletionStream(std::vector<std::string> prompts, int64_t first_index, int n,
                                   std::function<absl::Status(v1::GenerateResponse)> on_prompt)
    : prompts_(std::move(prompts)),
      first_index_(first_index),
      n_(n),
      on_prompt_(std::move(on_prompt)),
      choices_(prompts_.size() * n),
      delivered_(prompts_.size(), false),
      aborted_prompt_(prompts_.size(), false),
      n_honoured_(n <= 1),
      seen_(prompts_.size() * n, false) {}

absl::Status CompletionStream::Feed(const char* data, size_t size) {
  if (!error_.ok()) return error_;
  buffer_.append(data, size);
  // Events end with a blank line; servers may use \r\n.
  for (;;) {
    size_t end = buffer_.find("\n\n");
    size_t skip = 2;
    const size_t crlf = buffer_.find("\r\n\r\n");
    if (crlf != std::string::npos && (end == std::string::npos || crlf < end)) {
      end = crlf;
      skip = 4;
    }
    if (end == std::string::npos) break;
    std::string event = buffer_.substr(0, end);
    buffer_.erase(0, end + skip);
    std::string payload;
    for (absl::string_view line : absl::StrSplit(event, '\n')) {
      if (absl::ConsumePrefix(&line, "data:")) {
        absl::ConsumePrefix(&line, " ");
        absl::ConsumeSuffix(&line, "\r");
        absl::StrAppend(&payload, line);
      }
    }
    if (payload.empty()) continue;  // comments, keep-alives
    try {
      error_ = Event(payload);
    } catch (const json::exception& e) {  // a field of the wrong type: the engine's fault
      error_ = absl::InternalError(absl::StrCat("engine sent an unexpected event (", e.what(),
                                                "): ", SafeOutsideText(payload, "", 200)));
    }
    if (!error_.ok()) return error_;
  }
  return absl::OkStatus();
}

absl::Status CompletionStream::Event(const std::string& data) {
  if (data == "[DONE]") {
    done_ = true;
    return Done();
  }
  json chunk = json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (!chunk.is_object()) {
    return absl::InternalError(
        absl::StrCat("engine sent a malformed event: ", SafeOutsideText(data, "", 200)));
  }
  if (chunk.contains("error")) return ErrorStatus(chunk["error"]);
  if (!chunk.contains("choices") || !chunk["choices"].is_array()) return absl::OkStatus();
  for (const json& c : chunk["choices"]) SPAR_RETURN_IF_ERROR(Choice(c));
  return absl::OkStatus();
}

absl::Status CompletionStream::Choice(const json& c) {
  const int64_t index = c.value("index", int64_t{-1});
  if (index < 0 || index >= static_cast<int64_t>(choices_.size())) {
    return absl::InternalError(
        absl::StrCat("engine sent choice index ", index, " of ", choices_.size()));
  }
  Partial& p = choices_[index];
  if (p.finished_set) {
    return absl::InternalError(absl::StrCat("engine sent choice ", index, " after it finished"));
  }
  if (!seen_[index]) {
    seen_[index] = true;
    ++choices_seen_;
  }
  if (!n_honoured_ && index >= static_cast<int64_t>(prompts_.size())) {
    n_honoured_ = true;
    for (int64_t prompt : held_) SPAR_RETURN_IF_ERROR(Deliver(prompt));
    held_.clear();
  }
  if (c.contains("text") && c["text"].is_string()) p.text += c["text"].get<std::string>();
  const bool ids_given = c.contains("token_ids") && c["token_ids"].is_array();
  if (ids_given) {
    for (const json& id : c["token_ids"]) p.token_ids.push_back(id.get<int32_t>());
  }
  if (c.contains("logprobs") && c["logprobs"].is_object()) {
    const json& lp = c["logprobs"];
    if (lp.contains("token_logprobs") && lp["token_logprobs"].is_array()) {
      for (const json& v : lp["token_logprobs"]) {
        p.token_logprobs.push_back(v.is_number() ? v.get<double>() : 0.0);
      }
    }
    // vLLM's return_tokens_as_token_ids / Spar's server: "token_id:<id>".
    if (!ids_given && lp.contains("tokens") && lp["tokens"].is_array()) {
      for (const json& t : lp["tokens"]) {
        absl::string_view s = t.is_string() ? t.get_ref<const std::string&>() : "";
        int32_t id = 0;
        if (absl::ConsumePrefix(&s, "token_id:") && absl::SimpleAtoi(s, &id)) {
          p.token_ids.push_back(id);
        }
      }
    }
  }
  if (!c.contains("finish_reason") || c["finish_reason"].is_null()) return absl::OkStatus();
  return Finished(index, c["finish_reason"].is_string() ? c["finish_reason"].get<std::string>()
                                                        : DumpJson(c["finish_reason"]));
}

absl::Status CompletionStream::Finished(int64_t index, const std::string& reason) {
  Partial& p = choices_[index];
  p.finished_set = true;
  p.finished = reason == "stop";
  const int64_t prompt = index / n_;
  if (reason != "stop" && reason != "length") {
    // Half-written by an engine that gave up on it: never a sample; the prompt is asked again.
    if (!aborted_prompt_[prompt]) ++aborted_;
    aborted_prompt_[prompt] = true;
    return absl::OkStatus();
  }
  // Log-probs were asked for (the trainer and the importance weights need them): an engine that
  // answers without them is misconfigured, and a retry would not change that.
  if (!p.text.empty() && p.token_logprobs.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "engine answered prompt ", first_index_ + prompt,
        " without the per-token log-probs that were asked for (\"logprobs\": 1); Spar needs "
        "them for every sample"));
  }
  if (!p.token_ids.empty() && p.token_ids.size() != p.token_logprobs.size()) {
    return absl::FailedPreconditionError(
        absl::StrCat("engine answered prompt ", first_index_ + prompt, " with ", p.token_ids.size(),
                     " token ids but ", p.token_logprobs.size(), " log-probs"));
  }
  for (int j = 0; j < n_; ++j) {
    if (!choices_[prompt * n_ + j].finished_set) return absl::OkStatus();
  }
  if (aborted_prompt_[prompt]) return absl::OkStatus();
  if (!n_honoured_) {
    held_.push_back(prompt);
    return absl::OkStatus();
  }
  return Deliver(prompt);
}

absl::Status CompletionStream::Deliver(int64_t prompt) {
  v1::GenerateResponse out;
  out.set_index(first_index_ + prompt);
  out.set_prompt(prompts_[prompt]);
  for (int j = 0; j < n_; ++j) {
    Partial& s = choices_[prompt * n_ + j];
    v1::Sample* o = out.add_samples();
    o->set_text(std::move(s.text));
    o->mutable_token_ids()->Add(s.token_ids.begin(), s.token_ids.end());
    double sum = 0;
    for (double v : s.token_logprobs) sum += v;
    o->set_logprob(sum);
    o->mutable_token_logprobs()->Add(s.token_logprobs.begin(), s.token_logprobs.end());
    o->set_finished(s.finished);
  }
  delivered_[prompt] = true;
  return on_prompt_(std::move(out));
}

// At [DONE]: an engine that numbered no choice past the prompt count answered one choice per
// prompt where n were asked for.
absl::Status CompletionStream::Done() {
  if (n_honoured_ || choices_seen_ == 0) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "engine answered ", choices_seen_, " choices for ", prompts_.size(), " prompts where n = ",
      n_, " per prompt was asked for: it ignores \"n\" (no sample was kept)"));
}

std::vector<int64_t> CompletionStream::Pending() const {
  std::vector<int64_t> out;
  for (size_t i = 0; i < delivered_.size(); ++i) {
    if (!delivered_[i]) out.push_back(static_cast<int64_t>(i));
  }
  return out;
}

}  // namespace spar::orchestrator::internal
