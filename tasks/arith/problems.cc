#include "tasks/arith/problems.h"

#include <algorithm>
#include <cctype>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace spar::arith {
namespace {

uint64_t ProblemHash(int64_t a, int64_t b) {
  uint64_t h =
      static_cast<uint64_t>(a) * 1000003ULL + static_cast<uint64_t>(b) * 7919ULL + 12345ULL;
  h ^= h >> 13;
  h *= 0x9E3779B97F4A7C15ULL;
  h ^= h >> 29;
  return h;
}

bool InEval(int64_t a, int64_t b) {
  return ProblemHash(a, b) % 8 == 0;  // 1,253 of the 10,000 problems held out
}

// A train-side problem in the validation slice: bits of the hash that InEval does not read.
bool InValidation(int64_t a, int64_t b) { return (ProblemHash(a, b) >> 8) % 16 == 0; }

bool InSplit(ArithSplit split, int64_t a, int64_t b) {
  if (InEval(a, b)) return split == ArithSplit::kEval;
  switch (split) {
    case ArithSplit::kTrain:
      return true;
    case ArithSplit::kValidation:
      return InValidation(a, b);
    case ArithSplit::kRounds:
      return !InValidation(a, b);
    case ArithSplit::kEval:
      return false;
  }
  return false;
}

}  // namespace

std::vector<ArithProblem> MakeArithProblems(ArithSplit split, int n, uint64_t seed) {
  std::vector<ArithProblem> all;
  for (int64_t a = 0; a <= kArithMaxOperand; ++a) {
    for (int64_t b = 0; b <= kArithMaxOperand; ++b) {
      if (!InSplit(split, a, b)) continue;
      all.push_back({a, b, absl::StrCat(a, "+", b, "="), absl::StrCat(a + b)});
    }
  }
  std::mt19937_64 rng(seed);
  // Fisher-Yates with our own index draw: std::shuffle's algorithm is implementation-defined.
  for (size_t i = all.size(); i > 1; --i) {
    size_t j = static_cast<size_t>(rng() % i);
    std::swap(all[i - 1], all[j]);
  }
  if (n >= 0 && static_cast<size_t>(n) < all.size()) all.resize(static_cast<size_t>(n));
  return all;
}

std::optional<int64_t> ArithTruth(const std::string& prompt) {
  absl::string_view s = absl::StripAsciiWhitespace(prompt);
  if (!absl::ConsumeSuffix(&s, "=")) return std::nullopt;
  size_t plus = s.find('+');
  if (plus == absl::string_view::npos) return std::nullopt;
  int64_t a = 0, b = 0;
  absl::string_view sa = absl::StripAsciiWhitespace(s.substr(0, plus));
  absl::string_view sb = absl::StripAsciiWhitespace(s.substr(plus + 1));
  if (sa.empty() || sb.empty()) return std::nullopt;
  for (char c : sa)
    if (!absl::ascii_isdigit(c)) return std::nullopt;
  for (char c : sb)
    if (!absl::ascii_isdigit(c)) return std::nullopt;
  if (!absl::SimpleAtoi(sa, &a) || !absl::SimpleAtoi(sb, &b)) return std::nullopt;
  return a + b;
}

std::optional<int64_t> ParseArithAnswer(const std::string& response) {
  size_t i = 0;
  while (i < response.size() && absl::ascii_isspace(static_cast<unsigned char>(response[i]))) ++i;
  size_t start = i;
  if (i < response.size() && response[i] == '-') ++i;
  size_t digits = i;
  while (i < response.size() && absl::ascii_isdigit(static_cast<unsigned char>(response[i]))) ++i;
  if (i == digits || i - digits > 18) return std::nullopt;
  int64_t v = 0;
  if (!absl::SimpleAtoi(absl::string_view(response).substr(start, i - start), &v)) {
    return std::nullopt;
  }
  return v;
}

bool ArithCorrect(const std::string& prompt, const std::string& response) {
  std::optional<int64_t> truth = ArithTruth(prompt);
  std::optional<int64_t> got = ParseArithAnswer(response);
  return truth.has_value() && got.has_value() && *truth == *got;
}

}  // namespace spar::arith
