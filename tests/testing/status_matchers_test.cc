#include "tests/testing/status_matchers.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace spar::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// What a matcher prints when `value` does not match, as EXPECT_THAT would show it.
template <typename M, typename T>
std::string Explain(const M& matcher, const T& value) {
  ::testing::StringMatchResultListener listener;
  ::testing::Matcher<const T&>(matcher).MatchAndExplain(value, &listener);
  return listener.str();
}

TEST(StatusMatchersTest, StatusIsComparesTheCodeAndOptionallyTheMessage) {
  const absl::Status refused = absl::InvalidArgumentError("spec.rounds must be >= 1, got 0");
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spec.rounds")));
  EXPECT_THAT(refused, Not(StatusIs(absl::StatusCode::kNotFound)));
  EXPECT_THAT(refused, Not(StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spec.seed"))));
  EXPECT_THAT(absl::OkStatus(), IsOk());
  EXPECT_THAT(refused, Not(IsOk()));
}

TEST(StatusMatchersTest, StatusOrIsMatchedByItsStatus) {
  const absl::StatusOr<int> value = 7;
  const absl::StatusOr<int> missing = absl::NotFoundError("/nonexistent/ckpt");
  EXPECT_THAT(value, IsOk());
  EXPECT_THAT(missing, StatusIs(absl::StatusCode::kNotFound, "/nonexistent/ckpt"));
  EXPECT_THAT(missing, Not(IsOk()));
  EXPECT_THAT(value, Not(StatusIs(absl::StatusCode::kNotFound)));
}

TEST(StatusMatchersTest, AFailurePrintsTheStatusAndWhatWasWanted) {
  const absl::Status st = absl::UnavailableError("judge down");
  EXPECT_EQ(Explain(IsOk(), st), "which is UNAVAILABLE: judge down");
  EXPECT_EQ(::testing::DescribeMatcher<absl::Status>(
                StatusIs(absl::StatusCode::kNotFound, HasSubstr("ckpt"))),
            "has code NOT_FOUND and a message that has substring \"ckpt\"");
  EXPECT_EQ(::testing::DescribeMatcher<absl::Status>(StatusIs(absl::StatusCode::kOk), true),
            "has a code other than OK or a message that does not match (is anything)");
}

}  // namespace
}  // namespace spar::testing
