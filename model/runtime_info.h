// What this build and this host run: Spar's version, the LibTorch it was built with, whether CUDA
// is compiled in and which GPUs are visible, the BLAS and its CPU kernel, the CPU's vector class.
// Shown by `spar version`, printed by CI and the benchmarks, logged at service start.
#pragma once

#include <string>

#include "nlohmann/json.hpp"

namespace spar::model {

struct RuntimeInfo {
  std::string spar_version;         // project(VERSION) of the build
  std::string libtorch_version;     // TORCH_VERSION of the headers built against
  bool cuda_compiled = false;       // LibTorch built with CUDA (torch_cuda linked)
  bool nccl_compiled = false;       // c10d's ProcessGroupNCCL compiled into the trainer
  bool cudnn_available = false;     // cuDNN usable at run time
  std::string cuda_version;         // CUDA runtime compiled in ("13.0"), "" without CUDA
  std::string cudnn_version;        // cuDNN compiled in ("9.19.0"), "" without CUDA
  std::string nccl_version;         // NCCL c10d was compiled with ("2.28.9"), "" without NCCL
  int gpus_visible = 0;             // CUDA devices this process sees
  std::string blas_kernel;          // OpenBLAS kernel ("Haswell", ...), "MKL/<cap>" or "unknown"
  std::string blas_kernel_how;      // library | user | upgraded | upgrade-refused
  std::string blas_config;          // openblas_get_config() or MKL's version string
  std::string cpu_capability;       // avx512 | avx2 | avx | sse
  std::string aten_cpu_capability;  // ATen's vectorised kernels: AVX512 | AVX2 | DEFAULT
  int intra_op_threads = 0;         // torch's current intra-op thread count
};

RuntimeInfo CurrentRuntimeInfo();

nlohmann::json ToJson(const RuntimeInfo& info);

// Multi-line "key: value" text for people.
std::string ToText(const RuntimeInfo& info);

}  // namespace spar::model
