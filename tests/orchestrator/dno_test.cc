#include "orchestrator/dno.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

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

// ---- DNO-Prct: hand-made judgments and scores ----

TEST(DnoPrctTest, RepeatedNgramDefects) {
  // "the cat sat" occurs 3 times (> 2): a defect with n = 3, max_repeats = 2.
  EXPECT_TRUE(HasRepeatedNgram("the cat sat the cat sat the cat sat", 3, 2));
  EXPECT_FALSE(HasRepeatedNgram("the cat sat the cat sat", 3, 2));  // twice is allowed
  EXPECT_FALSE(HasRepeatedNgram("the cat sat the cat sat the cat sat", 3, 3));
  // Overlapping occurrences count: "a a" occurs 4 times in five a's.
  EXPECT_TRUE(HasRepeatedNgram("a a a a a", 2, 3));
  EXPECT_FALSE(HasRepeatedNgram("one two three four five six", 2, 1));
  EXPECT_FALSE(HasRepeatedNgram("x x x x", 0, 1));  // off
  EXPECT_FALSE(HasRepeatedNgram("short", 4, 1));
  // Whitespace of any kind separates words.
  EXPECT_TRUE(HasRepeatedNgram("go\tgo\ngo  go", 1, 3));
}

TEST(DnoPrctTest, DefectsAreNotJudgedNeverChosenAndAlwaysRejected) {
  // Candidate 1 is defective. Judged pairs skip it.
  const std::vector<std::string> t = {"a", "la la la la la la", "b"};
  const std::vector<bool> d = {false, true, false};
  std::vector<PairRef> judge = PairsToJudge(t, d);
  ASSERT_EQ(judge.size(), 1u);
  EXPECT_EQ(judge[0].i, 0);
  EXPECT_EQ(judge[0].j, 2);
  // b beats a (P(a > b) = 0.25); both beat the defect without a judge call, even when a judge
  // claims otherwise (the stray (0,1) judgment is ignored).
  std::vector<double> wr = DefectAwareWinRates(t, {{0, 2, 0.25, true}, {0, 1, 0.0, true}}, d);
  EXPECT_DOUBLE_EQ(wr[0], (0.25 + 1.0) / 2);
  EXPECT_DOUBLE_EQ(wr[1], 0.0);
  EXPECT_DOUBLE_EQ(wr[2], (0.75 + 1.0) / 2);
  DnoMarginOptions o;
  o.gate = 0.5;
  o.min_gap = 0.25;
  o.defective = d;
  auto pairs = DnoMarginPairs("p", t, wr, o);
  // b > a (gap 0.5), a > defect, b > defect; never the defect as chosen.
  ASSERT_EQ(pairs.size(), 3u);
  for (const auto& p : pairs) EXPECT_NE(p.chosen, t[1]);
  int against_defect = 0;
  for (const auto& p : pairs) against_defect += p.rejected == t[1] ? 1 : 0;
  EXPECT_EQ(against_defect, 2);
  // The defect is rejected whatever the gap, but only by candidates that pass the gate.
  o.gate = 0.8;
  pairs = DnoMarginPairs("p", t, wr, o);
  ASSERT_EQ(pairs.size(), 2u);  // only b (0.875) is a positive: b > a, b > defect
  for (const auto& p : pairs) EXPECT_EQ(p.chosen, "b");
  // A gate of 0 still never chooses a defect.
  o.gate = 0.0;
  for (const auto& p : DnoMarginPairs("p", t, wr, o)) EXPECT_NE(p.chosen, t[1]);
}

TEST(DnoPrctTest, TeacherJoinsTheCandidatesWithItsOwnMargin) {
  // K = 3 samples + teacher (index 3). Win rates over the 3 others each.
  const std::vector<std::string> t = {"s0", "s1", "s2", "gold"};
  // Teacher beats s1, s2 (1.0) and loses to s0 (0.0); s0 beats everyone; s1 beats s2.
  std::vector<PairJudgment> j = {{0, 1, 1.0, true}, {0, 2, 1.0, true}, {0, 3, 1.0, true},
                                 {1, 2, 1.0, true}, {1, 3, 0.0, true}, {2, 3, 0.0, true}};
  std::vector<double> wr = WinRates(t, j);
  EXPECT_DOUBLE_EQ(wr[0], 1.0);
  EXPECT_DOUBLE_EQ(wr[3], 2.0 / 3);
  EXPECT_DOUBLE_EQ(wr[1], 1.0 / 3);
  EXPECT_DOUBLE_EQ(wr[2], 0.0);
  DnoMarginOptions o;
  o.gate = 0.5;
  o.min_gap = 0.25;
  o.teacher_min_gap = 0.5;
  o.teacher_index = 3;
  o.defective.assign(4, false);
  auto pairs = DnoMarginPairs("p", t, wr, o);
  std::set<std::pair<std::string, std::string>> got;
  for (const auto& p : pairs) got.insert({p.chosen, p.rejected});
  // Student s0 (gap >= 0.25): over gold, s1, s2. Teacher (gap >= 0.5): over s2 (gap 2/3) but not
  // over s1 (gap 1/3, enough for a student, not for the teacher).
  const std::set<std::pair<std::string, std::string>> want = {
      {"s0", "gold"}, {"s0", "s1"}, {"s0", "s2"}, {"gold", "s2"}};
  EXPECT_EQ(got, want);
}

TEST(DnoPrctTest, SideBySideScoresUseGateFiveAndMarginsTwoAndOne) {
  // 6-point scores: samples 5, 4, 3, 6(defect) and the teacher 5.
  const std::vector<std::string> t = {"s0", "s1", "s2", "rep rep rep", "gold"};
  const std::vector<double> scores = {5, 4, 3, 6, 5};
  DnoMarginOptions o = DnoScoreOptions(/*teacher_index=*/4, {false, false, false, true, false});
  std::set<std::pair<std::string, std::string>> got;
  for (const auto& p : DnoMarginPairs("p", t, scores, o)) got.insert({p.chosen, p.rejected});
  // s0 (student, 5): margin 1 -> over s1 (4), s2 (3), the defect; not over gold (5).
  // gold (teacher, 5): margin 2 -> over s2 (3) and the defect; not over s1 (4).
  // s1 (4) is below the gate; the defect (6) is never chosen.
  const std::set<std::pair<std::string, std::string>> want = {
      {"s0", "s1"}, {"s0", "s2"}, {"s0", "rep rep rep"}, {"gold", "s2"}, {"gold", "rep rep rep"}};
  EXPECT_EQ(got, want);
  // No candidate >= 5: no pairs for the prompt.
  EXPECT_TRUE(DnoMarginPairs("p", {"a", "b"}, {4, 1}, DnoScoreOptions(-1, {false, false})).empty());
}

// DNO Algorithm 1 (dno_soft_all): one pair per two distinct texts, p = σ(R_t(y1) - R_t(y2)) with
// R_t a win rate against the policy's own K samples (the teacher after them is a candidate, never
// an opponent); chosen = the side with p >= ½; two negatives make no pair. The numbers are
// printed by tests/orchestrator/dno_label_reference.py, written from the paper's Algorithm 1.
TEST(DnoSoftAllTest, LabelIsTheSigmoidOfTheWinRateGapAgainstThePolicysSamples) {
  const std::vector<std::string> t = {"a", "b", "c", "a", "cut", "gold"};
  const std::vector<bool> negative = {false, false, false, false, true, false};
  const std::vector<PairJudgment> j = {
      {0, 1, 0.9, true}, {0, 2, 0.0, false}, {1, 2, 0.2, true}, {3, 1, 0.7, true},
      {3, 2, 0.6, true}, {0, 5, 0.1, true},  {1, 5, 0.0, true}, {2, 5, 0.3, true},
      {3, 5, 0.2, true}, {0, 4, 0.0, true}};  // the last: a judge on a negative, ignored
  const std::vector<double> r = DefectAwareWinRates(t, j, negative, /*opponents=*/5);
  const std::vector<double> want_r = {0.8, 0.4, 0.73333333333333339, 0.7, 0.0, 0.88};
  ASSERT_EQ(r.size(), want_r.size());
  for (size_t i = 0; i < r.size(); ++i) EXPECT_NEAR(r[i], want_r[i], 1e-12) << i;
  std::map<std::pair<std::string, std::string>, double> got;
  for (const PreferencePairRow& row : DnoSoftAllPairs("q", t, r, negative)) {
    ASSERT_TRUE(row.p.has_value());
    EXPECT_TRUE(got.emplace(std::make_pair(row.chosen, row.rejected), *row.p).second);
  }
  const std::map<std::pair<std::string, std::string>, double> want = {
      {{"a", "b"}, 0.598687660112452},      {{"a", "c"}, 0.51666049656941138},
      {{"a", "cut"}, 0.6899744811276125},   {{"b", "cut"}, 0.598687660112452},
      {{"c", "b"}, 0.58257020646231472},    {{"c", "cut"}, 0.67553632298945432},
      {{"gold", "a"}, 0.51998934015558174}, {{"gold", "b"}, 0.61774787476924897},
      {{"gold", "c"}, 0.53660107935359069}, {{"gold", "cut"}, 0.70682222109356752}};
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [pair, p] : want) {
    ASSERT_EQ(got.count(pair), 1u) << pair.first << " > " << pair.second;
    EXPECT_NEAR(got[pair], p, 1e-12) << pair.first << " > " << pair.second;
  }
  // The label is not the judged preference (a > b was judged 0.9), and every opponent counts
  // only if it is the policy's: with the teacher as an opponent, a's win rate would be 0.66.
  EXPECT_LT((got[{"a", "b"}]), 0.6);
  EXPECT_NEAR(DefectAwareWinRates(t, j, negative)[0], (0.9 + 0.5 + 1.0 + 0.1) / 4, 1e-12);
}

TEST(DnoSoftAllTest, WinRatesRideAlongAndOrientationFollowsP) {
  // p is σ(R1 - R2): the higher win rate is chosen.
  auto rows = DnoSoftAllPairs("q", {"x", "y"}, {0.2, 0.9}, {});
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].chosen, "y");
  EXPECT_EQ(rows[0].rejected, "x");
  EXPECT_DOUBLE_EQ(rows[0].chosen_win_rate, 0.9);
  EXPECT_DOUBLE_EQ(rows[0].rejected_win_rate, 0.2);
  EXPECT_NEAR(*rows[0].p, 1.0 / (1.0 + std::exp(-0.7)), 1e-12);
  EXPECT_TRUE(DnoSoftAllPairs("q", {"x", "x"}, {0.5, 0.5}, {}).empty());  // one text
}

}  // namespace
}  // namespace spar::orchestrator
