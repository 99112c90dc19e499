#include "oracle_client/verdict.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace spar::oracle {
namespace {

TEST(VerdictTest, ParsesExactTokensWithWhitespace) {
  EXPECT_EQ(ParseVerdictText("A"), Verdict::kA);
  EXPECT_EQ(ParseVerdictText("B"), Verdict::kB);
  EXPECT_EQ(ParseVerdictText(" A\n"), Verdict::kA);
  EXPECT_EQ(ParseVerdictText("\tB "), Verdict::kB);
}

TEST(VerdictTest, RejectsAnythingElse) {
  for (const char* bad : {"maybe", "", " ", "AB", "a", "b", "A.", "Output A", "0", "1"}) {
    EXPECT_FALSE(ParseVerdictText(bad).has_value()) << bad;
  }
}

TEST(VerdictTest, SoftmaxOverBothVerdictTokens) {
  std::vector<TokenLogprob> top = {{"A", std::log(0.6)}, {"B", std::log(0.2)}, {"C", -0.1}};
  std::optional<double> p = PreferenceFromTopLogprobs(top, Verdict::kA);
  ASSERT_TRUE(p.has_value());
  EXPECT_NEAR(*p, 0.75, 1e-12);  // 0.6 / (0.6 + 0.2)
  // The chosen token does not matter when both are present.
  EXPECT_NEAR(*PreferenceFromTopLogprobs(top, Verdict::kB), 0.75, 1e-12);
  EXPECT_NEAR(*PreferenceFromTopLogprobs(top, std::nullopt), 0.75, 1e-12);
}

TEST(VerdictTest, MatchesTokensWithSurroundingSpaceAndSumsDuplicates) {
  std::vector<TokenLogprob> top = {
      {" A", std::log(0.3)}, {"A", std::log(0.3)}, {" B", std::log(0.2)}};
  EXPECT_NEAR(*PreferenceFromTopLogprobs(top, Verdict::kA), 0.75, 1e-12);
}

TEST(VerdictTest, SentinelLogprobGivesNearCertainty) {
  std::vector<TokenLogprob> top = {{"B", -0.001}, {"A", -9999.0}};
  EXPECT_NEAR(*PreferenceFromTopLogprobs(top, Verdict::kB), 0.0, 1e-12);
}

TEST(VerdictTest, OnlyOneTokenPresentCountsOnlyWhenChosen) {
  std::vector<TokenLogprob> only_a = {{"A", -0.01}, {"maybe", -5}};
  EXPECT_EQ(PreferenceFromTopLogprobs(only_a, Verdict::kA), 1.0);
  EXPECT_FALSE(PreferenceFromTopLogprobs(only_a, Verdict::kB).has_value());
  EXPECT_FALSE(PreferenceFromTopLogprobs(only_a, std::nullopt).has_value());
  std::vector<TokenLogprob> only_b = {{"B", -0.01}};
  EXPECT_EQ(PreferenceFromTopLogprobs(only_b, Verdict::kB), 0.0);
  EXPECT_FALSE(PreferenceFromTopLogprobs(only_b, Verdict::kA).has_value());
}

TEST(VerdictTest, NeitherTokenPresentFallsBack) {
  EXPECT_FALSE(PreferenceFromTopLogprobs({}, Verdict::kA).has_value());
  EXPECT_FALSE(PreferenceFromTopLogprobs({{"maybe", -0.1}, {"AB", -2}}, Verdict::kA).has_value());
  std::vector<TokenLogprob> nan = {{"A", std::numeric_limits<double>::quiet_NaN()}, {"B", -1}};
  EXPECT_EQ(PreferenceFromTopLogprobs(nan, Verdict::kB), 0.0);  // NaN entry ignored
}

TEST(VerdictTest, CombinesBothOrders) {
  EXPECT_DOUBLE_EQ(CombineBothOrders(1.0, 0.0), 1.0);  // consistent win for the first response
  EXPECT_DOUBLE_EQ(CombineBothOrders(0.0, 1.0), 0.0);  // consistent loss
  EXPECT_DOUBLE_EQ(CombineBothOrders(1.0, 1.0), 0.5);  // pure position bias
  EXPECT_DOUBLE_EQ(CombineBothOrders(0.55, 0.55), 0.5);
  EXPECT_DOUBLE_EQ(CombineBothOrders(0.9, 0.3), 0.8);
}

}  // namespace
}  // namespace spar::oracle
