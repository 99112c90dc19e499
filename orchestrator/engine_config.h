// sampler_engine: which generation engine the orchestrator's sample stage uses (Spar's own gRPC
// sampler, or an OpenAI-compatible engine: engine_sampler_port.h). A plain struct, light to
// include (services/app/app.h holds one).
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace spar::orchestrator {

struct EngineConfig {
  // "native" (Spar's gRPC sampler; no engine), or an OpenAI-compatible engine: "openai"
  // (generic), "vllm", "sglang", "spar" (presets, see above).
  std::string engine = "native";
  std::string url;           // base URL: http(s)://host:port[/v1]
  std::string served_model;  // "model" of requests; "" = the first id /v1/models lists
  std::string api_key;       // bearer token; from SPAR_SAMPLER_ENGINE_API_KEY, never logged
  // Prompts per /v1/completions request; boundaries at its multiples in the global prompt index.
  // Spar's engine (preset spar): a multiple of its max_batch_size / K gives log-probs identical
  // to the native sampler's (tokens are identical either way but for float ties).
  int prompts_per_request = 64;
  int max_attempts = 4;                        // per request, >= 1
  absl::Duration timeout = absl::Minutes(10);  // per read (a stream's gap between events)
  // "FROM=TO": a checkpoint path starting with FROM is sent to the engine as TO + the rest (the
  // runs volume mounted elsewhere in the engine's container). "" = paths as they are.
  std::string path_map;
  // Spar supervises the engine process: an argv template ("{model_path}" = the checkpoint path
  // as the engine sees it), started on the first hand-off and started again when it has died.
  // Empty = the engine runs on its own.
  std::vector<std::string> command;
  // How a new checkpoint is handed over: "reload" (POST /update_weights_from_disk; presets spar
  // and sglang) or "restart" (the supervised engine is stopped and started on it; needs command).
  // "" = reload where the preset can, else restart when a command is given, else none (the engine
  // must already serve the round's checkpoint).
  std::string handoff;
  absl::Duration start_timeout = absl::Minutes(15);  // a (re)started engine must serve by then
};

// InvalidArgument naming the field (sampler_engine.url, ...). OK for "native".
absl::Status Validate(const EngineConfig& config);

}  // namespace spar::orchestrator
