#include "tasks/arith/rule_judge.h"

#include "gtest/gtest.h"
#include "oracle_client/verdict.h"

namespace spar::arith {
namespace {

using Basis = RuleVerdict::Basis;

struct Case {
  const char* instruction;
  const char* a;
  const char* b;
  Verdict winner;
  Basis basis;
};

TEST(RuleJudgeTest, Table) {
  const Case cases[] = {
      {"37+48=", "85", "84", Verdict::kA, Basis::kQuality},  // correct beats wrong
      {"37+48=", "84", "85", Verdict::kB, Basis::kQuality},
      {"37+48=", "80", "95", Verdict::kA, Basis::kQuality},  // closer (5 vs 10)
      {"37+48=", "100", "83", Verdict::kB, Basis::kQuality},
      {"37+48=", "-85", "0", Verdict::kB, Basis::kQuality},           // |-170| vs |-85|
      {"37+48=", "eighty-five", "12", Verdict::kB, Basis::kQuality},  // unparsable loses
      {"37+48=", "85", "", Verdict::kA, Basis::kQuality},
      {"37+48=", "85", "85", Verdict::kA, Basis::kTie},  // identical -> A
      {"37+48=", "", "", Verdict::kA, Basis::kTie},
      {"37+48=", "85 because", "85", Verdict::kB, Basis::kTieBreak},  // equally good: shorter
      {"37+48=", "85b", "85a", Verdict::kB, Basis::kTieBreak},        // same length: lexicographic
      {"37+48=", "84", "86", Verdict::kA, Basis::kTieBreak},          // equally far
      {"37+48=", "x", "y", Verdict::kA, Basis::kTieBreak},            // both unparsable
      {"not arithmetic", "long answer", "short", Verdict::kB, Basis::kTieBreak},
      {" 1+2= ", " 3", "3 ", Verdict::kA, Basis::kTieBreak},
  };
  for (const Case& c : cases) {
    RuleVerdict v = JudgeArithmetic(c.instruction, c.a, c.b);
    EXPECT_EQ(v.winner, c.winner) << c.instruction << " a=" << c.a << " b=" << c.b << " "
                                  << v.reason;
    EXPECT_EQ(v.basis, c.basis) << c.instruction << " a=" << c.a << " b=" << c.b << " " << v.reason;
    EXPECT_FALSE(v.reason.empty());
  }
}

TEST(RuleJudgeTest, DifferentTextsAreOrderConsistent) {
  const char* texts[] = {"85", "84", "86", "x", "", "85 ", "-3", "999999999999999999"};
  for (const char* a : texts) {
    for (const char* b : texts) {
      if (std::string(a) == b) continue;
      Verdict ab = JudgeArithmetic("37+48=", a, b).winner;
      Verdict ba = JudgeArithmetic("37+48=", b, a).winner;
      EXPECT_NE(ab, ba) << "a=" << a << " b=" << b;
    }
  }
}

TEST(RuleJudgeTest, ExactRuleOnlyRewardsTheCorrectAnswer) {
  // Correct beats wrong in either position; two wrong answers (closer or not, number or not) are
  // a tie that goes to position A, so both orders debias to 0.5.
  for (const char* wrong : {"84", "12", "x", ""}) {
    RuleVerdict ab = JudgeArithmetic("37+48=", "85", wrong, ArithRule::kExact);
    RuleVerdict ba = JudgeArithmetic("37+48=", wrong, "85", ArithRule::kExact);
    EXPECT_EQ(ab.winner, Verdict::kA) << wrong;
    EXPECT_EQ(ba.winner, Verdict::kB) << wrong;
    EXPECT_EQ(ab.basis, RuleVerdict::Basis::kQuality) << wrong;
  }
  RuleVerdict ab = JudgeArithmetic("37+48=", "84", "12", ArithRule::kExact);
  RuleVerdict ba = JudgeArithmetic("37+48=", "12", "84", ArithRule::kExact);
  EXPECT_EQ(ab.winner, Verdict::kA);
  EXPECT_EQ(ba.winner, Verdict::kA);
  EXPECT_EQ(ab.basis, RuleVerdict::Basis::kTie);
  // The graded default still prefers the closer wrong answer.
  EXPECT_EQ(JudgeArithmetic("37+48=", "12", "84").winner, Verdict::kB);
}

}  // namespace
}  // namespace spar::arith
