#include "common/blas_kernel.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <random>
#include <vector>

#include "absl/strings/ascii.h"
#include "common/log.h"

namespace spar {
namespace {

constexpr char kCoretypeEnv[] = "OPENBLAS_CORETYPE";
constexpr char kUpgradedEnv[] = "SPAR_BLAS_UPGRADED";  // the kernel Spar chose, set on re-exec
constexpr char kRefusedEnv[] = "SPAR_BLAS_UPGRADE_REFUSED";  // the kernel that failed the check
constexpr char kMklCapEnv[] = "MKL_ENABLE_INSTRUCTIONS";     // SSE4_2 | AVX | AVX2 | AVX512 ...

template <typename F>
F Lookup(const char* name) {
  return reinterpret_cast<F>(::dlsym(RTLD_DEFAULT, name));
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

// cblas_sgemm with the CBLAS enums as ints (RowMajor 101, NoTrans 111).
using SgemmFn = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int,
                         float, float*, int);

bool SgemmMatches(SgemmFn sgemm, int m, int n, int k, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> a(static_cast<size_t>(m) * k), b(static_cast<size_t>(k) * n);
  std::vector<float> c(static_cast<size_t>(m) * n, 0.0f);
  for (float& x : a) x = u(rng);
  for (float& x : b) x = u(rng);
  sgemm(101, 111, 111, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, c.data(), n);
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double ref = 0, mag = 0;
      for (int p = 0; p < k; ++p) {
        ref += static_cast<double>(a[i * k + p]) * b[p * n + j];
        mag += std::fabs(static_cast<double>(a[i * k + p]) * b[p * n + j]);
      }
      if (!(std::fabs(c[i * n + j] - ref) <= 1e-4 * (mag + 1e-6))) return false;
    }
  }
  return true;
}

[[noreturn]] void Reexec(char** argv) {
  ::execv("/proc/self/exe", argv);
  SPAR_LOG(Fatal) << "re-executing with " << kCoretypeEnv << " failed: errno " << errno;
  std::abort();
}

}  // namespace

std::string BlasKernelInUse() {
  auto corename = Lookup<char* (*)()>("openblas_get_corename");
  if (corename == nullptr) return "unknown";
  const char* name = corename();
  return name == nullptr ? "unknown" : name;
}

std::string BlasConfig() {
  if (auto config = Lookup<char* (*)()>("openblas_get_config"); config != nullptr) {
    const char* c = config();
    return c == nullptr ? "unknown" : std::string(absl::StripAsciiWhitespace(c));
  }
  if (auto version = Lookup<void (*)(char*, int)>("MKL_Get_Version_String"); version != nullptr) {
    char buf[256] = {};
    version(buf, sizeof(buf) - 1);
    return std::string(absl::StripAsciiWhitespace(buf));
  }
  return "unknown";
}

std::string CpuCapability() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512cd")) {
    return "avx512";
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "avx2";
  if (__builtin_cpu_supports("avx")) return "avx";
  return "sse";
}

std::string BestBlasKernelForCpu() {
  const std::string cap = CpuCapability();
  if (cap == "avx512") return "SkylakeX";
  if (cap == "avx2") return "Haswell";
  if (cap == "avx") return "Sandybridge";
  return "Prescott";
}

int BlasKernelClass(const std::string& kernel) {
  const std::string k = absl::AsciiStrToLower(kernel);
  if (k == "skylakex" || k == "cooperlake" || k == "sapphirerapids") return 3;
  if (k == "haswell" || k == "zen" || k == "excavator") return 2;
  if (k == "sandybridge" || k == "bulldozer" || k == "piledriver" || k == "steamroller") return 1;
  return 0;
}

BlasKernelChoice CurrentBlasKernelChoice() {
  BlasKernelChoice c;
  c.kernel = BlasKernelInUse();
  if (c.kernel == "unknown" && Lookup<void*>("MKL_Get_Version_String") != nullptr) {
    // MKL picks its code path per CPU at run time; MKL_ENABLE_INSTRUCTIONS caps it.
    const std::string cap = Env(kMklCapEnv);
    c.kernel = "MKL/" + (cap.empty() ? std::string("auto") : cap);
    c.how = cap.empty() ? "library" : "user";
    return c;
  }
  const std::string coretype = Env(kCoretypeEnv);
  if (!Env(kRefusedEnv).empty() && coretype.empty()) {
    c.how = "upgrade-refused";
  } else if (!coretype.empty()) {
    c.how = coretype == Env(kUpgradedEnv) ? "upgraded" : "user";
  } else {
    c.how = "library";
  }
  return c;
}

bool BlasSelfCheck() {
  if (Env("SPAR_BLAS_TEST_FAIL_CHECK") == "1") return false;  // test-only: a broken kernel
  auto sgemm = Lookup<SgemmFn>("cblas_sgemm");
  if (sgemm == nullptr) return true;
  std::mt19937 rng(12345);
  return SgemmMatches(sgemm, 37, 53, 71, rng) && SgemmMatches(sgemm, 128, 96, 160, rng) &&
         SgemmMatches(sgemm, 1, 300, 64, rng);
}

void MaybeUpgradeBlasKernel(char** argv) {
  if (Env("SPAR_BLAS_AUTO") == "0") return;
  const std::string upgraded = Env(kUpgradedEnv);
  if (!upgraded.empty() && Env(kCoretypeEnv) == upgraded) {
    // This process is the re-executed one: keep the kernel only if it computes correctly.
    if (BlasSelfCheck()) return;
    SPAR_LOG(Warning) << "OpenBLAS kernel " << upgraded
                      << " failed the sgemm self-check; using the library's own choice";
    ::setenv(kRefusedEnv, upgraded.c_str(), 1);
    ::unsetenv(kCoretypeEnv);
    ::unsetenv(kUpgradedEnv);
    Reexec(argv);
  }
  // Test-only: SPAR_BLAS_TEST_DETECTED=1 treats OPENBLAS_CORETYPE as OpenBLAS's own detection, so
  // a test can stand in for a CPU the library does not recognise.
  const bool user_set = !Env(kCoretypeEnv).empty() && Env("SPAR_BLAS_TEST_DETECTED") != "1";
  if (user_set || !Env(kRefusedEnv).empty()) return;
  const std::string in_use = BlasKernelInUse();
  if (in_use == "unknown") return;
  const std::string best = BestBlasKernelForCpu();
  if (BlasKernelClass(in_use) >= BlasKernelClass(best)) return;
  ::setenv(kCoretypeEnv, best.c_str(), 1);
  ::setenv(kUpgradedEnv, best.c_str(), 1);
  Reexec(argv);
}

}  // namespace spar
