// The one place that knows LibTorch version and device differences (the PyPI 2.x build with CUDA,
// primary; Debian's 1.13 CPU build). Private to model/, sampler/, trainer/ .cc files.
#pragma once

#include <ATen/Version.h>
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <cmath>
#include <mutex>

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

// CUDA autocast (mixed precision) to `dtype` for the guard's scope, on this thread; a no-op when
// `on` is false. Forward passes run under it, backward outside (PyTorch's recipe). LibTorch
// >= 2.4 names the calls per device type; 1.13 - 2.3 have the GPU-specific ones.
inline bool CudaAutocastEnabled() {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  return at::autocast::is_autocast_enabled(at::kCUDA);
#else
  return at::autocast::is_enabled();
#endif
}
class CudaAutocast {
 public:
  explicit CudaAutocast(bool on, at::ScalarType dtype = at::kBFloat16) : on_(on) {
    if (!on_) return;
    prev_enabled_ = CudaAutocastEnabled();
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    prev_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, dtype);
#else
    prev_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_enabled(true);
    at::autocast::set_autocast_gpu_dtype(dtype);
#endif
    at::autocast::increment_nesting();
  }
  ~CudaAutocast() {
    if (!on_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCUDA, prev_enabled_);
    at::autocast::set_autocast_dtype(at::kCUDA, prev_dtype_);
#else
    at::autocast::set_enabled(prev_enabled_);
    at::autocast::set_autocast_gpu_dtype(prev_dtype_);
#endif
  }
  CudaAutocast(const CudaAutocast&) = delete;
  CudaAutocast& operator=(const CudaAutocast&) = delete;

 private:
  bool on_;
  bool prev_enabled_ = false;
  at::ScalarType prev_dtype_ = at::kHalf;
};

// ATen's vectorised CPU kernels in use ("AVX2", "AVX512", "DEFAULT"; ATEN_CPU_CAPABILITY caps
// it). LibTorch 1.13 has no accessor: "unknown".
inline std::string AtenCpuCapability() {
#if TORCH_VERSION_MAJOR >= 2
  return at::get_cpu_capability();
#else
  return "unknown";
#endif
}

// The CUDA runtime and cuDNN versions this LibTorch was compiled with ("13.0", "9.19.0"), from its
// CUDA hooks (no device needed). Only meaningful in a CUDA build (SPAR_TORCH_CUDA); "" otherwise.
inline std::string CompiledCudaVersion() {
  try {
    const long v = at::detail::getCUDAHooks().versionCUDART();  // 13000 = 13.0
    return std::to_string(v / 1000) + "." + std::to_string(v / 10 % 100);
  } catch (const std::exception&) {
    return "";
  }
}
inline std::string CompiledCudnnVersion() {
  try {
    const long v = at::detail::getCUDAHooks().versionCuDNN();  // 91900 = 9.19.0
    return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." +
           std::to_string(v % 100);
  } catch (const std::exception&) {
    return "";
  }
}

}  // namespace spar::model::internal
