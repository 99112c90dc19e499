// Parsing a pairwise judge's answer into a preference, and combining the two presentation orders.
// Strict: a verdict is the text "A" or "B" (surrounding whitespace ignored) or a probability from
// the verdict tokens' log-probs; anything else is unparsable, never a guess (ALGORITHMS.md §8).
// Pure functions; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace spar::oracle {

enum class Verdict { kA, kB };

// "A" -> kA, "B" -> kB after trimming ASCII whitespace; anything else ("maybe", "", "AB") nullopt.
std::optional<Verdict> ParseVerdictText(absl::string_view text);

// "A" / "B".
const char* VerdictToken(Verdict v);

struct TokenLogprob {
  std::string token;
  double logprob = 0.0;
};

// P(A is preferred) from the top log-probs of the first generated token
// (choices[0].logprobs.content[0].top_logprobs). Tokens are matched after trimming whitespace
// (" A" counts as "A"); several entries for the same verdict are summed in probability space.
// - both verdict tokens present: softmax over the two;
// - only one present: 1 or 0, but only when it is also the chosen token (`chosen`), the absent one
//   counting as -inf;
// - otherwise nullopt (the caller falls back to the text verdict).
std::optional<double> PreferenceFromTopLogprobs(const std::vector<TokenLogprob>& top_logprobs,
                                                std::optional<Verdict> chosen);

// A pointwise score: an integer in [1, 10] after trimming ASCII whitespace ("7", " 10\n");
// anything else ("7/10", "seven", "0", "11") nullopt.
std::optional<int> ParseScoreText(absl::string_view text);

// Position-debiased P(first response wins) from P(A) with the first response shown as A (p_ab)
// and P(A) with the responses swapped (p_ba): ½(p_ab + 1 − p_ba).
double CombineBothOrders(double p_ab, double p_ba);

}  // namespace spar::oracle
