#include "model/runtime_info.h"

#include "absl/strings/str_cat.h"
#include "common/blas_kernel.h"
#include "model/internal/torch_compat.h"

#ifdef SPAR_NCCL
#include <torch/csrc/cuda/nccl.h>
#endif

#ifndef SPAR_VERSION
#define SPAR_VERSION "unknown"
#endif

namespace spar::model {
namespace {

#ifdef SPAR_NCCL
// The NCCL version c10d was compiled with: major << 32 | minor << 16 | patch.
std::string NcclVersion() {
  try {
    const std::uint64_t v = torch::cuda::nccl::version();
    return absl::StrCat(v >> 32, ".", (v >> 16) & 0xffff, ".", v & 0xffff);
  } catch (const std::exception&) {
    return "";
  }
}
#endif

}  // namespace

RuntimeInfo CurrentRuntimeInfo() {
  RuntimeInfo r;
  r.spar_version = SPAR_VERSION;
  r.libtorch_version = TORCH_VERSION;
#ifdef SPAR_TORCH_CUDA
  r.cuda_compiled = true;
  r.cuda_version = internal::CompiledCudaVersion();
  r.cudnn_version = internal::CompiledCudnnVersion();
#endif
#ifdef SPAR_NCCL
  r.nccl_compiled = true;
  r.nccl_version = NcclVersion();
#endif
  r.gpus_visible = static_cast<int>(torch::cuda::device_count());
  r.cudnn_available = r.gpus_visible > 0 && torch::cuda::cudnn_is_available();
  const BlasKernelChoice choice = CurrentBlasKernelChoice();
  r.blas_kernel = choice.kernel;
  r.blas_kernel_how = choice.how;
  r.blas_config = BlasConfig();
  r.cpu_capability = CpuCapability();
  r.aten_cpu_capability = internal::AtenCpuCapability();
  r.intra_op_threads = at::get_num_threads();
  return r;
}

nlohmann::json ToJson(const RuntimeInfo& r) {
  return {{"spar_version", r.spar_version},        {"libtorch_version", r.libtorch_version},
          {"cuda_compiled", r.cuda_compiled},      {"nccl_compiled", r.nccl_compiled},
          {"cudnn_available", r.cudnn_available},  {"gpus_visible", r.gpus_visible},
          {"cuda_version", r.cuda_version},        {"cudnn_version", r.cudnn_version},
          {"nccl_version", r.nccl_version},        {"aten_cpu_capability", r.aten_cpu_capability},
          {"blas_kernel", r.blas_kernel},          {"blas_kernel_how", r.blas_kernel_how},
          {"blas_config", r.blas_config},          {"cpu_capability", r.cpu_capability},
          {"intra_op_threads", r.intra_op_threads}};
}

std::string ToText(const RuntimeInfo& r) {
  const std::string cuda =
      r.cuda_compiled ? absl::StrCat("yes (CUDA ", r.cuda_version, ", cuDNN ", r.cudnn_version, ")")
                      : "no";
  const std::string nccl = r.nccl_compiled ? absl::StrCat("yes (", r.nccl_version, ")") : "no";
  return absl::StrCat("spar ", r.spar_version, "\nlibtorch ", r.libtorch_version,
                      "\ncuda compiled: ", cuda, "\nnccl compiled: ", nccl,
                      "\ncudnn available: ", r.cudnn_available ? "yes" : "no",
                      "\ngpus visible: ", r.gpus_visible, "\nblas: ", r.blas_config,
                      "\nblas kernel: ", r.blas_kernel, " (", r.blas_kernel_how, ")",
                      "\ncpu: ", r.cpu_capability, " (ATen kernels: ", r.aten_cpu_capability, ")",
                      "\nintra-op threads: ", r.intra_op_threads, "\n");
}

}  // namespace spar::model
