// Internal to the engine sampler port: reads a streamed /v1/completions answer (server-sent
// events) and assembles each prompt's n choices into a v1::GenerateResponse. An engine's answer
// that is wrong never becomes a sample: a choice without the per-token log-probs that were asked
// for is refused; a choice the engine aborted (finish_reason other than "stop" / "length", e.g.
// SGLang's "abort") leaves its prompt undelivered, to be asked again; and no prompt is handed on
// before the stream shows that the engine honoured n (a choice index >= the number of prompts
// exists only then: an engine that ignores n numbers one choice per prompt, and its choices of
// different prompts would otherwise pass for one prompt's samples). No sockets; not thread-safe
// (one per request).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "nlohmann/json_fwd.hpp"
#include "spar/v1/sampler.pb.h"

namespace spar::orchestrator::internal {

class CompletionStream {
 public:
  // `prompts`: the request's prompts (as the job has them, for GenerateResponse.prompt);
  // `first_index`: the global index of prompts[0]; n: choices per prompt. `on_prompt` gets each
  // prompt's result once all its choices have a finish_reason; an error from it stops the stream.
  CompletionStream(std::vector<std::string> prompts, int64_t first_index, int n,
                   std::function<absl::Status(v1::GenerateResponse)> on_prompt);

  // Feeds raw bytes of the body. An error: a malformed event, an error event (its code), or what
  // on_prompt returned. After an error, further input is ignored.
  absl::Status Feed(const char* data, size_t size);
  // The first error Feed returned (OK when none).
  const absl::Status& status() const { return error_; }
  // True once "data: [DONE]" has been read.
  bool done() const { return done_; }
  // Prompts not delivered yet (positions in the request), in order.
  std::vector<int64_t> Pending() const;
  // Prompts left undelivered because the engine aborted one of their choices.
  int64_t aborted() const { return aborted_; }

 private:
  absl::Status Event(const std::string& data);
  absl::Status Choice(const nlohmann::json& choice);
  absl::Status Finished(int64_t index, const std::string& reason);
  absl::Status Deliver(int64_t prompt);
  absl::Status Done();

  struct Partial {
    std::string text;
    std::vector<int32_t> token_ids;
    std::vector<double> token_logprobs;
    bool finished_set = false;
    bool finished = false;
  };

  std::vector<std::string> prompts_;
  int64_t first_index_;
  int n_;
  std::function<absl::Status(v1::GenerateResponse)> on_prompt_;
  std::vector<Partial> choices_;      // prompts * n
  std::vector<bool> delivered_;       // per prompt
  std::vector<bool> aborted_prompt_;  // per prompt: a choice was aborted; never delivered
  std::vector<int64_t> held_;         // complete prompts waiting for evidence that n is honoured
  bool n_honoured_ = false;
  int64_t choices_seen_ = 0;  // distinct choice indexes
  std::vector<bool> seen_;    // per choice index
  int64_t aborted_ = 0;
  std::string buffer_;
  absl::Status error_;
  bool done_ = false;
};

}  // namespace spar::orchestrator::internal
