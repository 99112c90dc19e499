#include "orchestrator/dno.h"

#include <set>

namespace spar::orchestrator {

std::vector<PairRef> PairsToJudge(const std::vector<std::string>& texts) {
  std::vector<PairRef> out;
  for (int i = 0; i < static_cast<int>(texts.size()); ++i) {
    for (int j = i + 1; j < static_cast<int>(texts.size()); ++j) {
      if (texts[i] != texts[j]) out.push_back({i, j});
    }
  }
  return out;
}

std::vector<double> WinRates(const std::vector<std::string>& texts,
                             const std::vector<PairJudgment>& judgments) {
  const int k = static_cast<int>(texts.size());
  std::vector<double> sum(k, 0.0);
  std::vector<int> n(k, 0);
  for (int i = 0; i < k; ++i) {
    for (int j = 0; j < k; ++j) {
      if (i != j && texts[i] == texts[j]) {
        sum[i] += 0.5;
        ++n[i];
      }
    }
  }
  for (const PairJudgment& jd : judgments) {
    if (!jd.ok || jd.i < 0 || jd.j < 0 || jd.i >= k || jd.j >= k || jd.i == jd.j) continue;
    sum[jd.i] += jd.p_i_wins;
    ++n[jd.i];
    sum[jd.j] += 1.0 - jd.p_i_wins;
    ++n[jd.j];
  }
  std::vector<double> out(k, 0.5);
  for (int i = 0; i < k; ++i) {
    if (n[i] > 0) out[i] = sum[i] / n[i];
  }
  return out;
}

std::vector<PreferencePairRow> DnoMarginPairs(const std::string& prompt,
                                              const std::vector<std::string>& texts,
                                              const std::vector<double>& win_rates, double gate,
                                              double min_gap) {
  std::vector<PreferencePairRow> out;
  std::set<std::pair<std::string, std::string>> seen;
  constexpr double kEps = 1e-9;
  for (size_t c = 0; c < texts.size(); ++c) {
    if (win_rates[c] + kEps < gate) continue;
    for (size_t r = 0; r < texts.size(); ++r) {
      if (texts[c] == texts[r]) continue;
      if (win_rates[c] - win_rates[r] + kEps < min_gap) continue;
      if (!seen.insert({texts[c], texts[r]}).second) continue;
      out.push_back({prompt, texts[c], texts[r], win_rates[c], win_rates[r]});
    }
  }
  return out;
}

}  // namespace spar::orchestrator
