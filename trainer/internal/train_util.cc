#include "trainer/internal/train_util.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "absl/strings/str_cat.h"
#include "model/internal/torch_compat.h"

namespace spar::trainer::internal {

TokenizedExample Tokenize(const std::string& prompt, const std::string& response, int32_t eos) {
  TokenizedExample ex;
  ex.first = model::ByteTokenizer::kBos;
  ex.prompt = model::ByteTokenizer::Encode(prompt);
  ex.response = model::ByteTokenizer::Encode(response);
  ex.response.push_back(eos);
  return ex;
}

void Truncate(TokenizedExample& ex, int max_prompt_length, int max_length) {
  if (max_prompt_length > 0 && ex.prompt.size() > static_cast<size_t>(max_prompt_length)) {
    ex.prompt.erase(ex.prompt.begin(), ex.prompt.end() - max_prompt_length);  // keep the end
  }
  if (max_length > 0 && ex.prompt.size() + ex.response.size() > static_cast<size_t>(max_length)) {
    // At least one response token survives: cut the prompt's start first if it alone is too long.
    const size_t max_prompt = static_cast<size_t>(max_length - 1);
    if (ex.prompt.size() > max_prompt) {
      ex.prompt.erase(ex.prompt.begin(), ex.prompt.end() - max_prompt);
    }
    ex.response.resize(static_cast<size_t>(max_length) - ex.prompt.size());  // keep the start
  }
}

std::vector<size_t> Permutation(size_t n, std::mt19937_64& rng) {
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
  return order;
}

std::vector<std::vector<size_t>> EpochBatches(const std::vector<size_t>& lengths, size_t batch_size,
                                              bool bucketing, std::mt19937_64& rng) {
  const size_t n = lengths.size();
  std::vector<size_t> order = Permutation(n, rng);
  std::vector<std::vector<size_t>> batches;
  if (!bucketing) {
    for (size_t s = 0; s < n; s += batch_size) {
      batches.emplace_back(order.begin() + s, order.begin() + std::min(n, s + batch_size));
    }
    return batches;
  }
  // Sort within mega-batches of kBucketBatches batches (longest first, ties by index), cut into
  // batches, then shuffle the batch order: similar lengths share a batch, the order stays random.
  constexpr size_t kBucketBatches = 16;
  const size_t mega = batch_size * kBucketBatches;
  for (size_t s = 0; s < n; s += mega) {
    std::vector<size_t> chunk(order.begin() + s, order.begin() + std::min(n, s + mega));
    std::stable_sort(chunk.begin(), chunk.end(), [&](size_t a, size_t b) {
      return lengths[a] != lengths[b] ? lengths[a] > lengths[b] : a < b;
    });
    for (size_t k = 0; k < chunk.size(); k += batch_size) {
      batches.emplace_back(chunk.begin() + k,
                           chunk.begin() + std::min(chunk.size(), k + batch_size));
    }
  }
  std::vector<size_t> batch_order = Permutation(batches.size(), rng);
  std::vector<std::vector<size_t>> shuffled;
  shuffled.reserve(batches.size());
  for (size_t i : batch_order) shuffled.push_back(std::move(batches[i]));
  return shuffled;
}

double LrFactor(const std::string& schedule, int step, int total_steps, int warmup_steps) {
  if (step < warmup_steps) return static_cast<double>(step) / std::max(1, warmup_steps);
  const double decay_steps = std::max(1, total_steps - warmup_steps);
  const double progress = (step - warmup_steps) / decay_steps;
  if (schedule == "linear") return std::max(0.0, 1.0 - progress);
  if (schedule == "cosine") return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));
  return 1.0;
}

SftLossOutput SftLoss(model::internal::LlamaForCausalLM& module,
                      const model::internal::ScoreBatch& batch) {
  torch::Tensor token_logps = model::internal::TokenLogProbs(module, batch);
  torch::Tensor seq = token_logps.sum(-1);
  torch::Tensor lens = batch.target_mask.sum(-1).clamp_min(1.0);
  SftLossOutput out;
  out.loss = (-seq / lens).mean();
  out.seq_logps = seq.detach();
  return out;
}

std::unique_ptr<torch::optim::AdamW> MakeOptimizer(model::internal::LlamaForCausalLM& module,
                                                   double learning_rate, double weight_decay) {
  return std::make_unique<torch::optim::AdamW>(
      module->parameters(), torch::optim::AdamWOptions(learning_rate).weight_decay(weight_decay));
}

// Token offsets of each example's response in a flat per-token buffer.
std::vector<int64_t> Offsets(const std::vector<TokenizedExample>& rows) {
  std::vector<int64_t> off(rows.size() + 1, 0);
  for (size_t i = 0; i < rows.size(); ++i) off[i + 1] = off[i] + rows[i].response.size();
  return off;
}

void ScoreFrozen(model::internal::LlamaForCausalLM& module, const model::LlamaConfig& cfg,
                 const torch::Device& device, const std::vector<TokenizedExample>& rows,
                 bool tokens, bool bf16, torch::Tensor* seq_out, torch::Tensor* token_out) {
  torch::NoGradGuard no_grad;
  module->eval();
  const size_t n = rows.size();
  std::vector<float> seq(n);
  const std::vector<int64_t> off = Offsets(rows);
  std::vector<float> flat(tokens ? off[n] : 0);
  constexpr size_t kChunk = 64;
  for (size_t s = 0; s < n; s += kChunk) {
    std::vector<std::vector<int32_t>> prompts, responses;
    std::vector<int64_t> firsts;
    for (size_t i = s; i < std::min(n, s + kChunk); ++i) {
      firsts.push_back(rows[i].first);
      prompts.push_back(rows[i].prompt);
      responses.push_back(rows[i].response);
    }
    model::internal::ScoreBatch batch =
        model::internal::MakeScoreBatch(prompts, responses, firsts, cfg.pad_token_id, device);
    torch::Tensor tok;
    {
      model::internal::CudaAutocast autocast(bf16);
      tok = model::internal::TokenLogProbs(module, batch);
    }
    tok = tok.to(torch::kCPU, torch::kFloat32).contiguous();
    torch::Tensor sums = tok.sum(-1).contiguous();
    const float* sp = sums.data_ptr<float>();
    const auto acc = tok.accessor<float, 2>();
    for (size_t k = 0; k < prompts.size(); ++k) {
      const size_t i = s + k;
      seq[i] = sp[k];
      if (tokens) {
        const int64_t start = static_cast<int64_t>(rows[i].prompt.size());
        for (size_t j = 0; j < rows[i].response.size(); ++j) {
          flat[off[i] + j] = acc[k][start + j];
        }
      }
    }
  }
  *seq_out = torch::tensor(seq);
  if (tokens) *token_out = torch::tensor(flat);
}

// Per-token values of rows `idx` laid out like a ScoreBatch's targets [R, width] (0 off-response).
torch::Tensor GatherTokens(const torch::Tensor& flat, const std::vector<int64_t>& off,
                           const std::vector<TokenizedExample>& rows,
                           const std::vector<size_t>& idx, int64_t width) {
  torch::Tensor out = torch::zeros({static_cast<int64_t>(idx.size()), width});
  auto acc = out.accessor<float, 2>();
  const float* src = flat.data_ptr<float>();
  for (size_t k = 0; k < idx.size(); ++k) {
    const size_t i = idx[k];
    const int64_t start = static_cast<int64_t>(rows[i].prompt.size());
    for (size_t j = 0; j < rows[i].response.size(); ++j) acc[k][start + j] = src[off[i] + j];
  }
  return out;
}

torch::Tensor Select(const torch::Tensor& t, const std::vector<size_t>& idx,
                     const torch::Device& device) {
  std::vector<int64_t> i64(idx.begin(), idx.end());
  return t.index_select(0, torch::tensor(i64)).to(device);
}

std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(model::internal::LlamaForCausalLM& module,
                                                       const TrainConfig& c) {
  if (c.optimizer == "rmsprop") {
    return std::make_unique<torch::optim::RMSprop>(
        module->parameters(),
        torch::optim::RMSpropOptions(c.learning_rate).weight_decay(c.weight_decay));
  }
  return std::make_unique<torch::optim::AdamW>(
      module->parameters(),
      torch::optim::AdamWOptions(c.learning_rate).weight_decay(c.weight_decay));
}

absl::Status CheckFiniteWeights(const std::vector<torch::Tensor>& params, int step) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> finite;
  finite.reserve(params.size());
  for (const torch::Tensor& p : params) finite.push_back(torch::isfinite(p).all());
  if (finite.empty() || torch::stack(finite).all().item<bool>()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("non-finite weights after step ", step,
                   ": check training.weight_decay, learning_rate, nll_weight and max_grad_norm"));
}

}  // namespace spar::trainer::internal
