// The built-in verifiable task: two-operand integer addition, "37+48=" -> "85".
// Used by the demo (prompts, SFT data), the rule judge (truth of a judge prompt's question) and the
// orchestrator's evaluation (greedy accuracy). Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace spar::arith {

struct ArithProblem {
  int64_t a = 0;
  int64_t b = 0;
  std::string prompt;  // "37+48="
  std::string answer;  // "85"
};

// kTrain: the train side (pi_0's SFT data). kEval: held out, what a job reports. kValidation: a
// fixed slice of the train side where a job chooses its best round. kRounds: the train side
// without the validation slice, the self-play rounds' prompts (a round never trains on what
// chooses it).
enum class ArithSplit { kTrain, kEval, kValidation, kRounds };

// Operands are in [0, kArithMaxOperand]. Every (a, b) is on the train or the eval side, decided by
// a fixed hash, so train and eval never share a problem: kArithEvalSize problems are held out
// (enough for an eval whose 95% interval on accuracy is about ±0.028), the other 8,747 train; of
// those, a second hash puts kArithValidationSize in the validation slice.
inline constexpr int64_t kArithMaxOperand = 99;
inline constexpr int kArithEvalSize = 1253;
inline constexpr int kArithValidationSize = 534;

// `n` problems of `split`, drawn without replacement in an order fixed by `seed`
// (n is capped at the split's size).
std::vector<ArithProblem> MakeArithProblems(ArithSplit split, int n, uint64_t seed);

// The truth of a prompt "a+b=" (surrounding whitespace allowed); nullopt when the text is not
// such a question.
std::optional<int64_t> ArithTruth(const std::string& prompt);

// The integer a response states: leading whitespace skipped, then an optional '-' and digits,
// up to the first non-digit. nullopt when there is none.
std::optional<int64_t> ParseArithAnswer(const std::string& response);

// True when `response` states the right answer to `prompt`.
bool ArithCorrect(const std::string& prompt, const std::string& response);

}  // namespace spar::arith
