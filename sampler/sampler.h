// On-policy sampling for the Sampler service: caches loaded policies by checkpoint directory
// (LRU), samples K responses per prompt in batches and streams one result per prompt.
// No gRPC; LibTorch stays behind model::Policy. Thread-safe: calls are serialized internally (one
// generation at a time per Sampler).
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace spar::model {
class Policy;
}

namespace spar::sampler {

struct SamplerConfig {
  int max_batch_size = 256;   // sequences (prompt x sample rows) per forward pass; > 0
  int policy_cache_size = 2;  // loaded checkpoints kept in memory (LRU); > 0
};

// InvalidArgument naming the field ("sampler.max_batch_size must be > 0, got 0").
absl::Status Validate(const SamplerConfig& config);

struct SamplingParams {
  int num_samples = 1;       // K responses per prompt; >= 1
  float temperature = 1.0f;  // >= 0; 0 = greedy
  float top_p = 1.0f;        // in (0, 1]
  int max_new_tokens = 8;    // >= 1; EOS counts
  uint64_t seed = 0;         // sample j of prompt i depends only on (seed, i, j) and the weights
  // Global index of prompts[0] (>= 0): prompt i is drawn as prompt first_prompt_index + i, so a
  // shard of a prompt list sampled on its own gets the samples the whole list would.
  int64_t first_prompt_index = 0;
  // "" / "none" = raw prompt text, "auto" = the checkpoint's chat template, or a template name
  // (model::Policy::EncodePrompt).
  std::string chat_template;
};

// InvalidArgument naming the field.
absl::Status Validate(const SamplingParams& params);

struct SampleOut {
  std::string text;                    // decoded response, EOS excluded
  std::vector<int32_t> token_ids;      // generated ids, EOS included when emitted
  double logprob = 0;                  // log pi_t(token_ids | prompt), untempered
  std::vector<double> token_logprobs;  // log pi_t per entry of token_ids (they sum to logprob)
  bool finished = false;               // EOS emitted (false = cut by max_new_tokens)
};

struct PromptSamples {
  int64_t index = 0;  // position of the prompt in the request
  std::string prompt;
  int64_t prompt_tokens = 0;       // the prompt as fed to the model (BOS and template included)
  std::vector<SampleOut> samples;  // num_samples of them, in sample order
};

class Sampler {
 public:
  static absl::StatusOr<std::unique_ptr<Sampler>> Create(const SamplerConfig& config);
  ~Sampler();

  // Loads `checkpoint_dir` into the cache (no-op when cached; refreshes its LRU position).
  // NotFound / InvalidArgument from model::Policy::Load.
  absl::Status LoadPolicy(const std::string& checkpoint_dir);

  // Samples every prompt with the policy at `checkpoint_dir` (loaded if needed). Works in chunks
  // of about max_batch_size rows and calls on_result once per prompt, in prompt order, as each
  // chunk finishes. on_result returning false cancels: Generate returns CancelledError.
  // InvalidArgument for bad params or an over-long prompt.
  absl::Status Generate(const std::string& checkpoint_dir, const std::vector<std::string>& prompts,
                        const SamplingParams& params,
                        const std::function<bool(PromptSamples)>& on_result);

  // Response tokens generated since creation.
  int64_t tokens_generated() const;
  // Checkpoint directories currently cached, most recently used first.
  std::vector<std::string> cached_policies() const;

 private:
  explicit Sampler(const SamplerConfig& config);
  // Requires mu_ held.
  absl::StatusOr<model::Policy*> GetPolicyLocked(const std::string& checkpoint_dir);

  const SamplerConfig config_;
  mutable std::mutex mu_;
  std::list<std::pair<std::string, std::unique_ptr<model::Policy>>> cache_;  // MRU first
  int64_t tokens_generated_ = 0;
};

}  // namespace spar::sampler
