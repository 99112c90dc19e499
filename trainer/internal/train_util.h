// Shared pieces of the training loops (torch). Private to trainer/.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "model/byte_tokenizer.h"
#include "model/internal/llama.h"
#include "trainer/train_config.h"

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
std::vector<std::vector<size_t>> EpochBatches(const std::vector<size_t>& lengths, size_t batch_size,
                                              bool bucketing, std::mt19937_64& rng);

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

// Token offsets of each example's response in a flat per-token buffer ([n + 1]).
std::vector<int64_t> Offsets(const std::vector<TokenizedExample>& rows);

// Log-probs of `rows` under a frozen module (no grad, eval mode, chunks of 64; bf16 autocast when
// `bf16`): sequence sums [n] into *seq_out and, when `tokens`, every response's per-token values
// concatenated (row i at Offsets(rows)[i]) into *token_out. float32 CPU.
void ScoreFrozen(model::internal::LlamaForCausalLM& module, const model::LlamaConfig& cfg,
                 const torch::Device& device, const std::vector<TokenizedExample>& rows,
                 bool tokens, bool bf16, torch::Tensor* seq_out, torch::Tensor* token_out);

// Per-token values of rows `idx` laid out like a ScoreBatch's targets [R, width] (0 off-response).
torch::Tensor GatherTokens(const torch::Tensor& flat, const std::vector<int64_t>& off,
                           const std::vector<TokenizedExample>& rows,
                           const std::vector<size_t>& idx, int64_t width);

// Rows `idx` of `t`, on `device`.
torch::Tensor Select(const torch::Tensor& t, const std::vector<size_t>& idx,
                     const torch::Device& device);

// Averages named values over steps.
class MetricMeans {
 public:
  void Add(const std::map<std::string, double>& values, double weight) {
    for (const auto& [k, v] : values) {
      sums_[k] += v * weight;
      weights_[k] += weight;
    }
  }
  std::map<std::string, double> Means() const {
    std::map<std::string, double> out;
    for (const auto& [k, v] : sums_) out[k] = v / weights_.at(k);
    return out;
  }
  void Clear() {
    sums_.clear();
    weights_.clear();
  }

 private:
  std::map<std::string, double> sums_, weights_;
};

// The optimizer `c` names ("adamw" | "rmsprop") over all parameters of `module`, with its
// learning rate and weight decay.
std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(model::internal::LlamaForCausalLM& module,
                                                       const TrainConfig& c);

// FailedPrecondition "non-finite weights after step N" when an update left any parameter NaN or
// infinite (e.g. weight_decay or nll_weight = inf). One device sync per step.
absl::Status CheckFiniteWeights(const std::vector<torch::Tensor>& params, int step);

}  // namespace spar::trainer::internal
