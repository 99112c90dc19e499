// Shared pieces of the training loops (torch). Private to trainer/.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "model/internal/llama.h"

namespace spar::trainer::internal {

// Prompt tokens (bytes) and response tokens (bytes + EOS).
struct TokenizedExample {
  std::vector<int32_t> prompt;
  std::vector<int32_t> response;
};
TokenizedExample Tokenize(const std::string& prompt, const std::string& response, int32_t eos);

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
