// The one place that knows LibTorch version and device differences (Debian's 1.13 CPU build here,
// 2.x with CUDA on GPU hosts). Private to model/, sampler/, trainer/ .cc files.
#pragma once

#include <cmath>
#include <mutex>

#include <torch/torch.h>
#include <torch/version.h>

namespace spar::model::internal {

// CUDA when this LibTorch build has it and a device is visible, CPU otherwise. Decided once.
inline torch::Device DefaultDevice() {
  static const torch::Device device =
      torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  return device;
}

// Inference guard: InferenceMode exists in 1.13 and 2.x; tensors made under it cannot be used
// for autograd later, which is what sampling and scoring want.
using InferenceGuard = c10::InferenceMode;

// Intra-op threads for CPU work. Small models on a small machine run fastest (and reproducibly)
// with few threads; callers set this once per process.
inline void SetCpuThreads(int threads) {
  if (threads > 0 && at::get_num_threads() != threads) at::set_num_threads(threads);
}

// softmax(q k^T / sqrt(d) + bias) v for q [B,H,T,d], k/v [B,H,S,d] (kv heads already repeated),
// bias [B,1,T,S] additive (large negative = masked). LibTorch >= 2.0 has a fused kernel
// (at::scaled_dot_product_attention, flash/memory-efficient on CUDA); 1.13 takes the explicit
// path, which also fixes the softmax in float32 for half-precision inputs.
inline torch::Tensor ScaledDotProductAttention(const torch::Tensor& q, const torch::Tensor& k,
                                               const torch::Tensor& v, const torch::Tensor& bias) {
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v, bias.to(q.scalar_type()));
#else
  torch::Tensor scores = torch::matmul(q, k.transpose(2, 3)) / std::sqrt(double(q.size(-1)));
  scores = scores + bias;
  torch::Tensor probs = torch::softmax(scores.to(torch::kFloat32), -1).to(q.scalar_type());
  return torch::matmul(probs, v);
#endif
}

// The default generator of `device` (CPU, or a CUDA device): its state is saved before a
// checkpointed layer's forward and restored for the recomputation, so random ops (LoRA dropout)
// draw the same numbers both times. at::globalContext().defaultGenerator works in 1.13 and 2.x
// without CUDA headers.
inline torch::Tensor GetRngState(const torch::Device& device) {
  at::Generator gen = device.is_cuda() ? at::globalContext().defaultGenerator(device)
                                       : at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}
inline void SetRngState(const torch::Device& device, const torch::Tensor& state) {
  at::Generator gen = device.is_cuda() ? at::globalContext().defaultGenerator(device)
                                       : at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

}  // namespace spar::model::internal
