#include "common/blas_kernel.h"

#include <gtest/gtest.h>

namespace spar {
namespace {

TEST(BlasKernelTest, KernelClassesOrderTheVectorExtensions) {
  EXPECT_EQ(BlasKernelClass("Prescott"), 0);
  EXPECT_EQ(BlasKernelClass("Core2"), 0);
  EXPECT_EQ(BlasKernelClass("Sandybridge"), 1);
  EXPECT_EQ(BlasKernelClass("Haswell"), 2);
  EXPECT_EQ(BlasKernelClass("Zen"), 2);
  EXPECT_EQ(BlasKernelClass("SkylakeX"), 3);
  EXPECT_EQ(BlasKernelClass("SapphireRapids"), 3);
  EXPECT_EQ(BlasKernelClass("haswell"), 2);  // OPENBLAS_CORETYPE is case-insensitive
  EXPECT_EQ(BlasKernelClass("unknown"), 0);
}

TEST(BlasKernelTest, BestKernelFollowsTheCpuCapability) {
  const std::string cap = CpuCapability();
  const std::string best = BestBlasKernelForCpu();
  if (cap == "avx512") EXPECT_EQ(best, "SkylakeX");
  if (cap == "avx2") EXPECT_EQ(best, "Haswell");
  if (cap == "avx") EXPECT_EQ(best, "Sandybridge");
  if (cap == "sse") EXPECT_EQ(best, "Prescott");
#if defined(__x86_64__)
  EXPECT_NE(cap, "");  // every x86-64 CPU has at least SSE2
#endif
}

TEST(BlasKernelTest, WithoutOpenBlasLoadedNothingIsClaimed) {
  // spar_common_test links no BLAS: the kernel is unknown and the self-check has nothing to do.
  EXPECT_EQ(BlasKernelInUse(), "unknown");
  EXPECT_TRUE(BlasSelfCheck());
}

}  // namespace
}  // namespace spar
