#include "oracle_client/verdict.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/ascii.h"

namespace spar::oracle {

std::optional<Verdict> ParseVerdictText(absl::string_view text) {
  absl::string_view t = absl::StripAsciiWhitespace(text);
  if (t == "A") return Verdict::kA;
  if (t == "B") return Verdict::kB;
  return std::nullopt;
}

std::optional<int> ParseScoreText(absl::string_view text) {
  absl::string_view t = absl::StripAsciiWhitespace(text);
  if (t.empty() || t.size() > 2) return std::nullopt;
  int v = 0;
  for (char c : t) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  if (v < 1 || v > 10 || (t.size() == 2 && t[0] == '0')) return std::nullopt;
  return v;
}

const char* VerdictToken(Verdict v) { return v == Verdict::kA ? "A" : "B"; }

namespace {
// log(exp(a) + exp(b)) with -inf handled.
double LogAddExp(double a, double b) {
  if (std::isinf(a) && a < 0) return b;
  if (std::isinf(b) && b < 0) return a;
  double m = std::max(a, b);
  return m + std::log(std::exp(a - m) + std::exp(b - m));
}
}  // namespace

std::optional<double> PreferenceFromTopLogprobs(const std::vector<TokenLogprob>& top_logprobs,
                                                std::optional<Verdict> chosen) {
  constexpr double kNegInf = -std::numeric_limits<double>::infinity();
  double log_a = kNegInf, log_b = kNegInf;
  bool has_a = false, has_b = false;
  for (const TokenLogprob& t : top_logprobs) {
    if (!std::isfinite(t.logprob) && !(std::isinf(t.logprob) && t.logprob < 0))
      continue;  // NaN/+inf
    std::optional<Verdict> v = ParseVerdictText(t.token);
    if (!v) continue;
    if (*v == Verdict::kA) {
      log_a = LogAddExp(log_a, t.logprob);
      has_a = true;
    } else {
      log_b = LogAddExp(log_b, t.logprob);
      has_b = true;
    }
  }
  if (has_a && has_b) {
    if (std::isinf(log_a) && std::isinf(log_b)) return std::nullopt;
    // softmax over the two: 1 / (1 + exp(log_b - log_a)).
    return 1.0 / (1.0 + std::exp(log_b - log_a));
  }
  if (has_a && chosen == Verdict::kA) return 1.0;
  if (has_b && chosen == Verdict::kB) return 0.0;
  return std::nullopt;
}

double CombineBothOrders(double p_ab, double p_ba) { return 0.5 * (p_ab + 1.0 - p_ba); }

}  // namespace spar::oracle
