// The engine backend of the sampler stage (sampler.engine "openai" and its presets): a SamplerPort
// that sends each round's prompts to an OpenAI-compatible completions server -- vLLM, SGLang or
// Spar's own HTTP sampler (services/sampler/sampler_http_server.h) -- and hands the round's policy
// to it first. docs/engines.md says which engine versions this targets.
//
// Per Generate call:
//  1. Hand-off: the engine must serve request.policy (mapped by path_map to the engine's view).
//     When it does not: handoff "reload" (presets spar, sglang) POSTs /update_weights_from_disk
//     {"model_path"}; handoff "restart" stops the engine Spar supervises (sampler_engine.command,
//     internal/engine_process.h) and starts it on the checkpoint, waiting until it answers
//     /v1/models; with neither (vllm, openai without a command) it must already serve it. A
//     supervised engine that has died is started again on the round's checkpoint. Then the
//     engine is asked what it serves (spar/vllm/openai: GET /v1/models root; sglang: GET
//     /get_model_info model_path) and a mismatch fails the call with FAILED_PRECONDITION naming
//     both paths: a stale policy is an error, never a silent off-policy round. Timed into
//     spar_sampler_weight_sync_seconds.
//  2. Prompts are rendered by Spar (model/engine_prompt.h: the job's chat template) and sent in
//     streamed /v1/completions requests of prompts_per_request prompts (n = K, temperature,
//     top_p, max_tokens, seed, logprobs = 1; preset spar also spar_first_index, so its samples
//     equal the native sampler's; preset vllm also return_token_ids and
//     return_tokens_as_token_ids). One GenerateResponse per
//     prompt is passed on as soon as its K choices have finished (finish_reason "stop" =
//     finished), with token ids (where the engine returns them) and per-token log-probs.
//  3. Connection errors, 5xx and 429 are retried (max_attempts per request, backoff); a retry
//     re-checks the hand-off (a restarted engine may serve something else) and asks only for the
//     prompts not yet delivered. UNAVAILABLE once attempts are spent, so the stage is retried
//     or resumed like any other.
// Thread-safe.
#pragma once

#include <memory>
#include <string>

#include "common/metrics/registry.h"
#include "orchestrator/engine_config.h"
#include "orchestrator/ports.h"

namespace spar::orchestrator {

// `registry` may be null (no metrics). Validate first.
std::unique_ptr<SamplerPort> MakeEngineSamplerPort(const EngineConfig& config,
                                                   metrics::Registry* registry);

}  // namespace spar::orchestrator
