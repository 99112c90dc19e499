// Decode tokens/s at a batch size with the KV cache, and the bytes one decode step reads: every
// weight once (not the embedding table, which is gathered) plus the whole KV cache, as stored.
// On CUDA the weights are bf16 and the forward runs under bf16 autocast; the cache keeps the
// dtype the model writes (measured, not assumed). The HBM bound (report.py) is
//   bandwidth / bytes_per_step * batch   tokens/s.
#include <chrono>

#include "bench/gpu_bench.h"
#include "model/internal/llama.h"
#include "model/internal/torch_compat.h"

namespace spar::bench {
namespace {

namespace internal = model::internal;

double WeightBytes(internal::LlamaForCausalLM& model) {
  double bytes = 0;
  for (const auto& p : model->named_parameters()) {
    if (p.key() == "model.embed_tokens.weight") continue;
    bytes += static_cast<double>(p.value().numel()) * p.value().element_size();
  }
  return bytes;
}

double CacheBytes(const internal::KvCache& cache) {
  double bytes = 0;
  for (const auto* side : {&cache.keys, &cache.values}) {
    for (const torch::Tensor& t : *side) bytes += static_cast<double>(t.nbytes());
  }
  return bytes;
}

// One greedy step: feeds `next` [B,1] at position `at`, returns the next tokens.
torch::Tensor DecodeStep(internal::LlamaForCausalLM& model, internal::KvCache& cache,
                         const torch::Tensor& next, int64_t at, bool bf16) {
  internal::CudaAutocast autocast(bf16);
  torch::Tensor pos = torch::full({next.size(0), 1}, at, next.options());
  return model->forward(next, pos, torch::Tensor(), &cache).select(1, 0).argmax(-1, true);
}

}  // namespace

internal::LlamaForCausalLM MakeDecodeModel(const GpuBenchOptions& o) {
  internal::LlamaForCausalLM model(o.config);
  model->to(o.device, o.device.is_cuda() ? torch::kBFloat16 : torch::kFloat32);
  model->eval();
  return model;
}

nlohmann::json MeasureDecode(const GpuBenchOptions& o, internal::LlamaForCausalLM& model,
                             int64_t batch) {
  const model::LlamaConfig& c = o.config;
  const bool bf16 = o.device.is_cuda();
  torch::NoGradGuard no_grad;
  const auto opts = torch::TensorOptions().dtype(torch::kInt64).device(o.device);
  torch::Tensor ids = torch::randint(3, c.vocab_size, {batch, o.prompt}, opts);
  torch::Tensor pos = torch::arange(o.prompt, opts).unsqueeze(0).expand({batch, o.prompt});
  internal::KvCache cache;
  torch::Tensor next;
  {
    internal::CudaAutocast autocast(bf16);
    next = model->forward(ids, pos, torch::Tensor(), &cache).select(1, -1).argmax(-1, true);
  }
  int64_t at = o.prompt;
  for (int i = 0; i < 4; ++i) next = DecodeStep(model, cache, next, at++, bf16);  // warm-up
  const int64_t ctx_start = at;
  const double cache_start = CacheBytes(cache);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < o.decode_steps; ++i) next = DecodeStep(model, cache, next, at++, bf16);
  const double secs = SyncedSeconds(o.device, t0);
  const double cache_end = CacheBytes(cache);
  const double weights = WeightBytes(model);
  const double kv_read = (cache_start + cache_end) / 2.0;  // average over the timed steps
  return {{"kind", "decode"},
          {"batch", batch},
          {"precision", bf16 ? "bf16" : "float32"},
          {"context_start", ctx_start},
          {"context_end", at},
          {"steps", o.decode_steps},
          {"seconds", secs},
          {"tokens_per_s", batch * o.decode_steps / secs},
          {"weight_bytes", weights},
          {"kv_bytes_per_step", kv_read},
          {"bytes_per_step", weights + kv_read}};
}

}  // namespace spar::bench
