#include "orchestrator/dno.h"

#include <gtest/gtest.h>

namespace spar::orchestrator {
namespace {

TEST(DnoTest, IdenticalTextsAreNotJudged) {
  std::vector<PairRef> p = PairsToJudge({"5", "5", "6"});
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].i, 0);
  EXPECT_EQ(p[0].j, 2);
  EXPECT_EQ(p[1].i, 1);
  EXPECT_EQ(p[1].j, 2);
}

TEST(DnoTest, WinRatesAverageOverOpponents) {
  // y0 beats y1 (p=1) and y2 (p=0.75); y1 vs y2 = 0.5.
  std::vector<std::string> t = {"a", "b", "c"};
  std::vector<double> wr = WinRates(t, {{0, 1, 1.0, true}, {0, 2, 0.75, true}, {1, 2, 0.5, true}});
  EXPECT_DOUBLE_EQ(wr[0], (1.0 + 0.75) / 2);
  EXPECT_DOUBLE_EQ(wr[1], (0.0 + 0.5) / 2);
  EXPECT_DOUBLE_EQ(wr[2], (0.25 + 0.5) / 2);
}

TEST(DnoTest, DuplicatesCountHalfAndFailuresAreExcluded) {
  std::vector<std::string> t = {"a", "a", "b"};
  // (0,2) judged: a wins; (1,2) failed: excluded.
  std::vector<double> wr = WinRates(t, {{0, 2, 1.0, true}, {1, 2, 0.0, false}});
  EXPECT_DOUBLE_EQ(wr[0], (0.5 + 1.0) / 2);  // vs its duplicate 0.5, vs b 1.0
  EXPECT_DOUBLE_EQ(wr[1], 0.5);              // only its duplicate
  EXPECT_DOUBLE_EQ(wr[2], 0.0);
}

TEST(DnoTest, MarginPolicyKeepsEveryQualifyingPairOnce) {
  std::vector<std::string> t = {"85", "84", "85", "12"};
  std::vector<double> wr = {0.9, 0.5, 0.9, 0.1};
  auto pairs = DnoMarginPairs("37+48=", t, wr, /*gate=*/0.5, /*min_gap=*/0.25);
  // chosen "85" vs "84" (gap .4) and vs "12" (gap .8); "84" (0.5 >= gate) vs "12" (gap .4).
  ASSERT_EQ(pairs.size(), 3u);
  EXPECT_EQ(pairs[0].chosen, "85");
  EXPECT_EQ(pairs[0].rejected, "84");
  EXPECT_EQ(pairs[1].chosen, "85");
  EXPECT_EQ(pairs[1].rejected, "12");
  EXPECT_EQ(pairs[2].chosen, "84");
  EXPECT_EQ(pairs[2].rejected, "12");
  EXPECT_DOUBLE_EQ(pairs[0].chosen_win_rate, 0.9);
}

TEST(DnoTest, NoPositiveNoPairs) {
  auto pairs = DnoMarginPairs("p", {"a", "b"}, {0.4, 0.1}, 0.5, 0.25);
  EXPECT_TRUE(pairs.empty());
}

TEST(DnoTest, GapBelowThresholdDropped) {
  auto pairs = DnoMarginPairs("p", {"a", "b"}, {0.6, 0.4}, 0.5, 0.25);
  EXPECT_TRUE(pairs.empty());
}

}  // namespace
}  // namespace spar::orchestrator
