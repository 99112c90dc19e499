// pi_0's builder on the public SFT API: a short run stops at max_steps, reports every step,
// checks accuracy at the eval cadence and the last step, and saves a loadable checkpoint.
#include "tasks/arith/base_model.h"

#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "model/policy.h"
#include "tests/testing/status_matchers.h"

namespace spar::arith {
namespace {

using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;

std::string TempDir(const std::string& name) {
  std::string dir =
      JoinPath(::testing::TempDir(), absl::StrCat("spar_arith_base_test_", ::getpid(), "_", name));
  EXPECT_TRUE(RemoveAll(dir).ok());
  return dir;
}

TEST(ArithBaseTest, BuildsAndSavesAShortRun) {
  ArithBaseOptions o;
  o.out_dir = TempDir("arith");
  o.max_steps = 3;
  o.eval_every = 2;
  o.eval_problems = 10;
  o.batch_size = 8;
  o.target_accuracy = 1.0;
  std::vector<int> steps;
  absl::StatusOr<ArithBaseReport> r =
      BuildArithBaseModel(o, [&](const ArithBaseProgress& p) { steps.push_back(p.step); });
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->steps, 3);
  EXPECT_EQ(steps, std::vector<int>({1, 2, 3}));
  ASSERT_EQ(r->accuracy_curve.size(), 2u);  // steps 2 and 3 (the last)
  EXPECT_GT(r->num_parameters, 500000);
  EXPECT_LT(r->num_parameters, 1500000);
  absl::StatusOr<std::unique_ptr<model::Policy>> p = model::Policy::Load(o.out_dir);
  ASSERT_THAT(p, IsOk());
  EXPECT_EQ((*p)->config().hidden_size, 128);
  o.out_dir = "";
  EXPECT_THAT(BuildArithBaseModel(o), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace spar::arith
