// Trainer MFU: bf16-autocast training steps of the Llama decoder on random tokens (next-token
// cross-entropy, AdamW; forward under autocast, backward outside it, as trainer/ does), full
// fine-tuning and LoRA. Model FLOPs per token (PaLM's accounting, no recomputation counted):
//   full: 6 * N + 12 * L * H * S
//   LoRA: 4 * N + 6 * N_lora + 12 * L * H * S   (frozen weights: forward 2N and input gradients
//         2N, no weight gradients; adapters: 6 N_lora)
// N = parameters in matmuls (all but the embedding table, which is gathered), L layers, H hidden
// size, S sequence length (the attention term is not halved for causality).
#include <chrono>

#include "bench/gpu_bench.h"
#include "model/internal/llama.h"
#include "model/internal/torch_compat.h"

namespace spar::bench {
namespace {

namespace internal = model::internal;

int64_t MatmulParams(internal::LlamaForCausalLM& model) {
  int64_t n = 0;
  for (const auto& p : model->named_parameters()) {
    if (p.key() != "model.embed_tokens.weight" && p.key().find("lora_") == std::string::npos) {
      n += p.value().numel();
    }
  }
  return n;
}

std::vector<torch::Tensor> Trainable(internal::LlamaForCausalLM& model, int64_t* count) {
  std::vector<torch::Tensor> out;
  *count = 0;
  for (const torch::Tensor& p : model->parameters()) {
    if (!p.requires_grad()) continue;
    out.push_back(p);
    *count += p.numel();
  }
  return out;
}

// One optimizer step on `ids` [B, S+1]; returns the loss.
double Step(internal::LlamaForCausalLM& model, torch::optim::Optimizer& opt,
            const torch::Tensor& ids, const torch::Tensor& pos, bool bf16) {
  const int64_t s = pos.size(1);
  opt.zero_grad();
  torch::Tensor loss;
  {
    internal::CudaAutocast autocast(bf16);
    torch::Tensor logits = model->forward(ids.narrow(1, 0, s), pos, torch::Tensor());
    loss = torch::nn::functional::cross_entropy(
        logits.reshape({-1, logits.size(-1)}).to(torch::kFloat32),
        ids.narrow(1, 1, s).reshape({-1}));
  }
  loss.backward();
  opt.step();
  return loss.item<double>();
}

}  // namespace

nlohmann::json MeasureTraining(const GpuBenchOptions& o, bool lora) {
  const model::LlamaConfig& c = o.config;
  internal::LlamaForCausalLM model(c);  // constructor-drawn weights: values do not change timing
  model->to(o.device);
  if (lora) {
    internal::AddLoraAdapters(
        model, o.lora_rank, 2.0, 0.0,
        {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}, 1);
  }
  model->train();
  int64_t trainable = 0;
  torch::optim::AdamW opt(Trainable(model, &trainable), torch::optim::AdamWOptions(1e-5));
  const auto opts = torch::TensorOptions().dtype(torch::kInt64).device(o.device);
  const int64_t b = o.train_batch, s = o.train_seq;
  torch::Tensor ids = torch::randint(3, c.vocab_size, {b, s + 1}, opts);
  torch::Tensor pos = torch::arange(s, opts).unsqueeze(0).expand({b, s});
  const bool bf16 = o.device.is_cuda();
  for (int i = 0; i < 2; ++i) Step(model, opt, ids, pos, bf16);  // warm-up
  const auto t0 = std::chrono::steady_clock::now();
  double loss = 0;
  for (int i = 0; i < o.train_steps; ++i) loss = Step(model, opt, ids, pos, bf16);
  const double secs = SyncedSeconds(o.device, t0);
  const double n = static_cast<double>(MatmulParams(model));
  const double attention = 12.0 * c.num_hidden_layers * c.hidden_size * s;
  const double per_token = lora ? 4.0 * n + 6.0 * trainable + attention : 6.0 * n + attention;
  const double tokens_per_s = b * s * o.train_steps / secs;
  return {{"kind", "train"},
          {"mode", lora ? "lora" : "full"},
          {"precision", bf16 ? "bf16-autocast" : "float32"},
          {"matmul_params", n},
          {"trainable_params", trainable},
          {"lora_rank", lora ? o.lora_rank : 0},
          {"batch", b},
          {"seq", s},
          {"steps", o.train_steps},
          {"seconds", secs},
          {"loss", loss},
          {"tokens_per_s", tokens_per_s},
          {"flops_per_token", per_token},
          {"achieved_flops", per_token * tokens_per_s}};
}

}  // namespace spar::bench
