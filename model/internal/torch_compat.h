// The one place that knows LibTorch version and device differences (Debian's 1.13 CPU build here,
// 2.x with CUDA on GPU hosts). Private to model/, sampler/, trainer/ .cc files.
#pragma once

#include <torch/torch.h>

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

}  // namespace spar::model::internal
