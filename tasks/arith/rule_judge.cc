#include "tasks/arith/rule_judge.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>

#include "tasks/arith/problems.h"

namespace spar::arith {
namespace {

// Distance of `answer` from `truth`; nullopt when the response states no number.
// ParseArithAnswer caps answers at 18 digits and truths are small, so the difference fits int64.
std::optional<int64_t> Distance(const std::optional<int64_t>& truth, const std::string& response) {
  std::optional<int64_t> got = ParseArithAnswer(response);
  if (!got) return std::nullopt;
  int64_t d = *got - *truth;
  return d < 0 ? -d : d;
}

RuleVerdict Make(Verdict w, RuleVerdict::Basis basis, std::string reason) {
  RuleVerdict v;
  v.winner = w;
  v.basis = basis;
  v.reason = std::move(reason);
  return v;
}

}  // namespace

RuleVerdict JudgeArithmetic(const std::string& instruction, const std::string& a,
                            const std::string& b, ArithRule rule) {
  using Basis = RuleVerdict::Basis;
  if (a == b)
    return Make(Verdict::kA, Basis::kTie, "identical responses; position A by convention");
  std::optional<int64_t> truth = ArithTruth(instruction);
  constexpr int64_t kMaxTruth = 4'000'000'000'000'000'000;  // keeps Distance free of overflow
  if (truth && (*truth > kMaxTruth || *truth < -kMaxTruth)) truth.reset();
  if (truth) {
    std::optional<int64_t> da = Distance(truth, a);
    std::optional<int64_t> db = Distance(truth, b);
    if (rule == ArithRule::kExact) {
      const bool ca = da && *da == 0, cb = db && *db == 0;
      if (ca != cb) {
        return Make(ca ? Verdict::kA : Verdict::kB, Basis::kQuality,
                    "correct answer beats a wrong one");
      }
      return Make(Verdict::kA, Basis::kTie, "equally good (exact rule); position A by convention");
    }
    if (da && !db) return Make(Verdict::kA, Basis::kQuality, "only A states a number");
    if (!da && db) return Make(Verdict::kB, Basis::kQuality, "only B states a number");
    if (da && db && *da != *db) {
      Verdict w = *da < *db ? Verdict::kA : Verdict::kB;
      bool correct = *da == 0 || *db == 0;
      return Make(w, Basis::kQuality,
                  correct ? "correct answer beats a wrong one" : "closer to the truth");
    }
  }
  if (a.size() != b.size()) {
    return Make(a.size() < b.size() ? Verdict::kA : Verdict::kB, Basis::kTieBreak,
                "equally good; shorter wins");
  }
  return Make(a < b ? Verdict::kA : Verdict::kB, Basis::kTieBreak,
              "equally good, same length; lexicographically smaller wins");
}

double ArithReward(const std::string& instruction, const std::string& response, ArithRule rule) {
  const std::optional<int64_t> truth = ArithTruth(instruction);
  if (!truth) return 0.0;
  const std::optional<int64_t> d = Distance(truth, response);
  if (!d) return -5.0;
  if (*d == 0) return 5.0;
  if (rule == ArithRule::kExact) return -1.0;
  return -std::min(4.0, std::log1p(static_cast<double>(*d)));
}

}  // namespace spar::arith
