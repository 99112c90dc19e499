// The BLAS behind LibTorch's CPU matmuls and the CPU kernel it runs (OpenBLAS), and a start-up
// step that moves a process off OpenBLAS's generic fallback onto the best kernel this CPU supports.
//
// Why: Debian 12's OpenBLAS 0.3.21 does not recognise newer CPUs (e.g. Sapphire Rapids) and falls
// back to its SSE3 "Prescott" kernels, 4-5x slower than the AVX2/AVX-512 ones the CPU runs. The
// kernel is chosen when the library loads (OPENBLAS_CORETYPE), so switching means re-executing the
// process with the variable set. The user's own OPENBLAS_CORETYPE always wins.
//
// Everything here is found at run time (dlsym), so nothing links OpenBLAS directly. LibTorch from
// the PyPI wheel (the primary build) carries MKL inside instead: the kernel reads "MKL/auto" (or
// "MKL/<MKL_ENABLE_INSTRUCTIONS>") and the start-up step does nothing; with no known BLAS the
// functions answer "unknown".
#pragma once

#include <string>

namespace spar {

// OpenBLAS's name for the kernel in use ("Prescott", "Haswell", "SkylakeX", "Zen", ...), or
// "unknown" when the BLAS is not OpenBLAS.
std::string BlasKernelInUse();

// openblas_get_config() ("OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY ..."), MKL's version string
// ("Intel(R) oneAPI Math Kernel Library Version 2024.2-Product Build ..."), or "unknown".
std::string BlasConfig();

// The widest vector extension this CPU and OS support: "avx512", "avx2", "avx" or "sse".
std::string CpuCapability();

// The OpenBLAS kernel this CPU should run: "SkylakeX" (AVX-512 F/BW/DQ/VL/CD), "Haswell"
// (AVX2 + FMA), "Sandybridge" (AVX) or "Prescott".
std::string BestBlasKernelForCpu();

// Vector class of an OpenBLAS kernel name: 3 AVX-512, 2 AVX2, 1 AVX, 0 SSE or unknown names.
int BlasKernelClass(const std::string& kernel);

// How the kernel in use was chosen, for logs, metrics labels and `spar version`.
struct BlasKernelChoice {
  std::string kernel;  // BlasKernelInUse(); with MKL "MKL/auto" or "MKL/<MKL_ENABLE_INSTRUCTIONS>"
  std::string how;     // "library" (OpenBLAS's own detection), "user" (OPENBLAS_CORETYPE set by
                       // the user), "upgraded" (Spar re-executed with a better kernel), or
                       // "upgrade-refused" (the better kernel failed its self-check)
};
BlasKernelChoice CurrentBlasKernelChoice();

// Call first thing in main(), before any thread starts. When OPENBLAS_CORETYPE is unset and
// OpenBLAS runs a kernel of a lower vector class than BestBlasKernelForCpu(), re-executes the
// program (/proc/self/exe, same argv and environment) with OPENBLAS_CORETYPE set to the better
// kernel. The re-executed process checks the new kernel against a plain-loop sgemm; if it is wrong
// it re-executes once more with the library's own choice. SPAR_BLAS_AUTO=0 turns this off.
// Returns only when no re-exec happens (or exec itself failed).
void MaybeUpgradeBlasKernel(char** argv);

// True when an sgemm through the BLAS in use matches a plain-loop reference on a few shapes
// (relative error <= 1e-4). True when no cblas_sgemm is found.
bool BlasSelfCheck();

}  // namespace spar
