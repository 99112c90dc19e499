// What this build and this host run: Spar's version, the LibTorch it was built with, whether CUDA
// is compiled in and which GPUs are visible, the BLAS and its CPU kernel, the CPU's vector class.
// Shown by `spar version`, printed by CI and the benchmarks, logged at service start.
#pragma once

#include <string>

#include "nlohmann/json.hpp"

namespace spar::model {

struct RuntimeInfo {
  std::string spar_version;      // project(VERSION) of the build
  std::string libtorch_version;  // TORCH_VERSION of the headers built against
  bool cuda_compiled = false;    // LibTorch built with CUDA (torch_cuda linked)
  bool nccl_compiled = false;    // c10d's ProcessGroupNCCL compiled into the trainer
  bool cudnn_available = false;  // cuDNN usable at run time
  int gpus_visible = 0;          // CUDA devices this process sees
  std::string blas_kernel;       // OpenBLAS kernel in use ("Haswell", ...) or "unknown"
  std::string blas_kernel_how;   // library | user | upgraded | upgrade-refused
  std::string blas_config;       // openblas_get_config()
  std::string cpu_capability;    // avx512 | avx2 | avx | sse
  int intra_op_threads = 0;      // torch's current intra-op thread count
};

RuntimeInfo CurrentRuntimeInfo();

nlohmann::json ToJson(const RuntimeInfo& info);

// Multi-line "key: value" text for people.
std::string ToText(const RuntimeInfo& info);

}  // namespace spar::model
