// Deterministic rule judges usable in-process (tests, the demo) and behind the reference judge
// server (services/judge). Pure functions; thread-safe.
#pragma once

#include <string>

#include "oracle_client/verdict.h"

namespace spar::arith {

// The rule judge answers with the oracle's verdict type.
using Verdict = oracle::Verdict;

struct RuleVerdict {
  // Why the winner won, strongest first.
  enum class Basis {
    kQuality,   // one answer is better on the task's own criterion (correct/closer/parsable)
    kTieBreak,  // equally good, different texts: shorter, then lexicographically smaller wins
    kTie,       // identical texts: the first position ("A") wins by convention
  };
  Verdict winner = Verdict::kA;
  Basis basis = Basis::kTie;
  std::string reason;  // one short sentence, for logs and tests
};

// How two answers to an arithmetic question compare beyond "a correct answer beats a wrong one":
// kCloser grades wrong answers (numerically closer wins, a number beats none); kExact does not
// (two wrong answers are equally good: a tie that goes to position A, so asking both orders
// debiases it to exactly 0.5). kExact aligns the judge with exact-answer accuracy: under kCloser
// a policy can win by being nearly right more often without being right more often.
enum class ArithRule { kCloser, kExact };

// Judges two responses to the arithmetic prompt `instruction` ("37+48="): a correct answer beats a
// wrong one; otherwise (kCloser) the one numerically closer to the truth wins; a response with no
// parsable number loses to one with a number. When `instruction` is not an arithmetic question, or
// both answers are equally good, the tie-breaks decide: shorter text, then the lexicographically
// smaller one; identical texts are a tie that goes to A, so that asking both orders and debiasing
// gives exactly 0.5.
RuleVerdict JudgeArithmetic(const std::string& instruction, const std::string& a,
                            const std::string& b, ArithRule rule = ArithRule::kCloser);

// The rule as a reward model (spar-judge's /pooling): a scalar reward for `response`, ordered as
// JudgeArithmetic orders answers on quality. Correct: +5. A wrong number: -min(4, ln(1 + |answer -
// truth|)) under kCloser (closer is better), -1 under kExact. No number: -5. Not an arithmetic
// question: 0. So sigma(r_correct - r_wrong) >= sigma(5 + ln 2) > 0.996.
double ArithReward(const std::string& instruction, const std::string& response,
                   ArithRule rule = ArithRule::kCloser);

}  // namespace spar::arith
