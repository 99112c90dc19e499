// Shared pieces of the training loops (torch). Private to trainer/.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "model/byte_tokenizer.h"
#include "model/internal/llama.h"

namespace spar::trainer::internal {

// One training sequence: `first` (the prompt encoding's first id: BOS for the byte tokenizer),
// the rest of the prompt, and the response tokens (+ EOS). Truncation never drops `first`.
struct TokenizedExample {
  int32_t first = model::ByteTokenizer::kBos;
  std::vector<int32_t> prompt;
  std::vector<int32_t> response;
};
// Byte tokenizer: prompt bytes, response bytes + eos.
TokenizedExample Tokenize(const std::string& prompt, const std::string& response, int32_t eos);

// Cuts ex to max_prompt_length prompt tokens (keeping the end) and max_length prompt + response
// tokens (keeping the response's start, and at least one response token); 0 = no limit.
void Truncate(TokenizedExample& ex, int max_prompt_length, int max_length);

// The batches of one epoch: a permutation from `rng` cut into batch_size pieces; with
// `bucketing`, sorted by `lengths` within mega-batches of 16 batches, then the batch order
// shuffled (all deterministic given rng).
std::vector<std::vector<size_t>> EpochBatches(const std::vector<size_t>& lengths,
                                              size_t batch_size, bool bucketing,
                                              std::mt19937_64& rng);

// Multiplier of the peak learning rate at 0-based optimizer step `step` (HF conventions): linear
// warmup step/warmup_steps, then 1 ("constant"), linear decay to 0 ("linear") or half-cosine to
// 0 ("cosine") at total_steps.
double LrFactor(const std::string& schedule, int step, int total_steps, int warmup_steps);

// Deterministic permutation of [0, n) from `rng` (own Fisher-Yates: std::shuffle's algorithm is
// implementation-defined).
std::vector<size_t> Permutation(size_t n, std::mt19937_64& rng);

// Mean over rows of -log pi(response)/|response| (SFT), and the per-row sequence log-probs.
struct SftLossOutput {
  torch::Tensor loss;       // scalar
  torch::Tensor seq_logps;  // [B], detached
};
SftLossOutput SftLoss(model::internal::LlamaForCausalLM& module,
                      const model::internal::ScoreBatch& batch);

// AdamW over all parameters of `module`.
std::unique_ptr<torch::optim::AdamW> MakeOptimizer(model::internal::LlamaForCausalLM& module,
                                                   double learning_rate, double weight_decay);

}  // namespace spar::trainer::internal
