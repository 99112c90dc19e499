// ConfinePath: paths from requests stay inside the roots; a huge path is refused by its length
// before any resolving (issue 24 item 11: a 1 MB path pinned a CPU, one realpath per component).
#include "common/path_confine.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>

#include "common/file_util.h"
#include "tests/testing/status_matchers.h"

namespace spar {
namespace {

using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;
using ::testing::HasSubstr;

class PathConfineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/spar_confine_XXXXXX";
    root_ = mkdtemp(tmpl);
    ASSERT_THAT(MakeDirs(JoinPath(root_, "models")), IsOk());
  }
  void TearDown() override { RemoveAll(root_).IgnoreError(); }
  std::string root_;
};

TEST_F(PathConfineTest, RelativePathsJoinTheFirstRootAndStayInside) {
  EXPECT_THAT(ConfinePath("models/new/file", {root_}, "f"), IsOk());
  EXPECT_EQ(*ConfinePath("models", {root_}, "f"), JoinPath(root_, "models"));
  EXPECT_THAT(ConfinePath("../x", {root_}, "f"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside")));
  EXPECT_THAT(ConfinePath("/etc/passwd", {root_}, "f"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside")));
  EXPECT_THAT(ConfinePath("", {root_}, "f"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(PathConfineTest, APathOfPathMaxBytesOrMoreIsRefusedByLength) {
  std::string huge;
  while (huge.size() < (1 << 20)) huge += "a/";
  EXPECT_THAT(
      ConfinePath(huge, {root_}, "base_model"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("base_model is 1048576 bytes")));
  EXPECT_THAT(ConfinePath(std::string(5000, 'b'), {root_}, "f"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("limit")));
}

}  // namespace
}  // namespace spar
