// mixed_precision: bad values are named; "bf16" on a CPU-only trainer is refused up front
// (CheckDevice) and by TrainDpo, naming the field. (bf16 on CUDA: gpu_test.cc, label gpu.)
#include <string>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "model/internal/policy_internal.h"
#include "model/policy.h"
#include "tests/testing/status_matchers.h"
#include "tests/trainer/toy_data.h"
#include "trainer/trainer.h"

namespace spar::trainer {
namespace {

using ::spar::testing::StatusIs;

TEST(MixedPrecisionTest, UnknownModeNamesTheField) {
  TrainConfig c;
  c.mixed_precision = "fp16";
  absl::Status st = Validate(c);
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(st.message().find("train.mixed_precision"), std::string::npos) << st;
  c.mixed_precision = "bf16";
  EXPECT_TRUE(Validate(c).ok());
}

TEST(MixedPrecisionTest, Bf16WithoutCudaIsInvalidArgumentNamingTheField) {
  auto init = model::Policy::CreateRandom(testing::TinyConfig(), 41);
  ASSERT_TRUE(init.ok());
  if ((*init)->impl().device.is_cuda()) GTEST_SKIP() << "a CUDA device is visible";
  const std::string root =
      JoinPath(::testing::TempDir(), absl::StrCat("spar_bf16_test_", ::getpid()));
  ASSERT_TRUE(RemoveAll(root).ok());
  ASSERT_TRUE((*init)->Save(JoinPath(root, "init")).ok());
  TrainConfig c;
  c.mixed_precision = "bf16";
  absl::Status st = CheckDevice(c);
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(st.message().find("train.mixed_precision"), std::string::npos) << st;
  absl::StatusOr<TrainResult> r =
      TrainDpo(JoinPath(root, "init"), testing::ToyPairs(), c, JoinPath(root, "out"));
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(r.status().message().find("train.mixed_precision"), std::string::npos) << r.status();
  EXPECT_FALSE(PathExists(JoinPath(root, "out")));
  RemoveAll(root).IgnoreError();
}

}  // namespace
}  // namespace spar::trainer
