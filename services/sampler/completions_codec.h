// The OpenAI /v1/completions wire format as Spar's HTTP sampler speaks it (sampler_http_server.h):
// parsing a request into sampler::SamplingParams and writing choices, with errors that name the
// field. No sockets; thread-safe pure functions.
//
// Request fields: model, prompt (a string or a list of strings), n (>= 1, default 1), temperature
// (default 1), top_p (default 1), max_tokens (default 16), seed (default 0: the same request gives
// the same samples), logprobs (null/0 = none; >= 1 returns the sampled tokens' log-probs only,
// untempered, as vLLM's default raw log-probs), stream, stream_options.include_usage,
// add_special_tokens (default true: raw text, the tokenizer adds its BOS; false: the text is a
// rendered chat template, encoded as is), and Spar's spar_first_index (>= 0, default 0): prompt i
// of the list is drawn as prompt spar_first_index + i, so a split request samples what the whole
// list would. echo, suffix, best_of, stop, penalties and logit_bias are refused unless neutral;
// user is ignored; other fields are refused (InvalidArgument naming the field).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "sampler/sampler.h"

namespace spar::services {

struct CompletionRequest {
  std::string model;                 // "" when absent
  std::vector<std::string> prompts;  // at least one
  sampler::SamplingParams params;    // chat_template "none" or model::kVerbatimPrompt
  bool logprobs = false;
  bool stream = false;
  bool include_usage = false;
};

// InvalidArgument "<field>: ..." for a malformed body or field.
absl::StatusOr<CompletionRequest> ParseCompletionRequest(const std::string& body);

// The n choices of one prompt: index position * n + j (OpenAI's numbering across a prompt list),
// text, finish_reason ("stop" at EOS, "length" at max_tokens), token_ids and, when asked,
// logprobs {tokens: ["token_id:<id>", ...], token_logprobs, top_logprobs: null}.
nlohmann::json ChoicesJson(const sampler::PromptSamples& samples, int64_t position, bool logprobs);

// An OpenAI error body {"error": {"message", "type", "param", "code"}}; param is the field named
// before the first ':' of an InvalidArgument message, null otherwise.
nlohmann::json ErrorJson(const absl::Status& status);
// The HTTP status for a Status code (400, 401, 403, 404, 409, 503, 500, ...).
int HttpStatusFor(const absl::Status& status);

}  // namespace spar::services
