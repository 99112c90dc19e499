// A Llama-family policy with the byte tokenizer: load/save HF-layout checkpoints
// (config.json + model.safetensors), batched sampling and response scoring. Shared by the sampler
// (generation, log-probs of its samples) and the trainer (which reaches the torch module through
// model/internal/policy_internal.h). LibTorch stays behind the pimpl: this header is torch-free.
// Thread-compatible: one Policy is used by one thread at a time (callers serialize).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/llama_config.h"

namespace spar::model {

struct GenerationParams {
  float temperature = 1.0f;  // softmax temperature; 0 = greedy (argmax)
  float top_p = 1.0f;        // nucleus mass kept, in (0, 1]; 1 = no truncation
  int max_new_tokens = 8;    // response tokens generated at most (EOS included)
  uint64_t seed = 0;         // the draw for (prompt i, sample j, step s) depends only on these
  int num_samples = 1;       // responses per prompt
  int max_batch_size = 256;  // sequences per forward pass
  // Index of prompts[0] in the caller's numbering, for the draws: a caller that splits one
  // request into several Generate calls passes each slice's offset and gets the same samples.
  int64_t first_prompt_index = 0;
};

// The samples of one prompt.
struct Generation {
  std::string prompt;
  std::vector<std::string> texts;                // decoded response bytes, EOS excluded
  std::vector<std::vector<int32_t>> token_ids;   // generated ids, EOS included when emitted
  std::vector<double> logprobs;                  // sum of log pi(token) over token_ids, untempered
  std::vector<bool> finished;                    // true when EOS was emitted
};

class Policy {
 public:
  struct Impl;  // model/internal/policy_internal.h

  ~Policy();
  Policy(const Policy&) = delete;
  Policy& operator=(const Policy&) = delete;

  // Reads <dir>/config.json and <dir>/model.safetensors (F32/F16/BF16/F64 tensors, converted to
  // float32). NotFound naming the missing file; InvalidArgument naming a bad config field or a
  // missing, unexpected or mis-shaped tensor.
  static absl::StatusOr<std::unique_ptr<Policy>> Load(const std::string& checkpoint_dir);
  // A freshly initialised model (normal(0, 0.02) weights from `seed`). InvalidArgument for a bad
  // config or a vocabulary smaller than the byte tokenizer's (259).
  static absl::StatusOr<std::unique_ptr<Policy>> CreateRandom(const LlamaConfig& config,
                                                              uint64_t seed);

  // Writes config.json, model.safetensors and tokenizer_config.json into a "tmp-*" sibling of
  // `checkpoint_dir` and renames it into place (an existing checkpoint there is replaced), so a
  // reader sees the whole old or the whole new directory. Readers ignore "tmp-*" entries.
  absl::Status Save(const std::string& checkpoint_dir) const;

  // Samples params.num_samples responses per prompt: prompt tokens = BOS + bytes(prompt); stops at
  // EOS or after max_new_tokens. Results are in prompt order. Deterministic: sample j of prompt i
  // is a function of (weights, params.seed, i, j), whatever max_batch_size. InvalidArgument for
  // bad params or a prompt longer than max_position_embeddings - max_new_tokens - 1.
  absl::StatusOr<std::vector<Generation>> Generate(const std::vector<std::string>& prompts,
                                                   const GenerationParams& params);

  // log pi(bytes(response) + EOS | BOS + bytes(prompt)) per pair, summed over response tokens.
  absl::StatusOr<std::vector<double>> ScoreResponses(
      const std::vector<std::pair<std::string, std::string>>& prompt_response,
      int max_batch_size = 256);

  int64_t NumParameters() const;
  const LlamaConfig& config() const;

  Impl& impl() { return *impl_; }
  const Impl& impl() const { return *impl_; }

 private:
  explicit Policy(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Validates generation parameters; InvalidArgument naming the field.
absl::Status Validate(const GenerationParams& params);

}  // namespace spar::model
