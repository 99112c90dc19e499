#include "orchestrator/dno.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

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
                             const std::vector<PairJudgment>& judgments, int opponents) {
  const int k = static_cast<int>(texts.size());
  const int m = opponents < 0 ? k : std::min(opponents, k);
  std::vector<double> sum(k, 0.0);
  std::vector<int> n(k, 0);
  for (int i = 0; i < k; ++i) {
    for (int j = 0; j < m; ++j) {
      if (i != j && texts[i] == texts[j]) {
        sum[i] += 0.5;
        ++n[i];
      }
    }
  }
  for (const PairJudgment& jd : judgments) {
    if (!jd.ok || jd.i < 0 || jd.j < 0 || jd.i >= k || jd.j >= k || jd.i == jd.j) continue;
    if (jd.j < m) {
      sum[jd.i] += jd.p_i_wins;
      ++n[jd.i];
    }
    if (jd.i < m) {
      sum[jd.j] += 1.0 - jd.p_i_wins;
      ++n[jd.j];
    }
  }
  std::vector<double> out(k, 0.5);
  for (int i = 0; i < k; ++i) {
    if (n[i] > 0) out[i] = sum[i] / n[i];
  }
  return out;
}

std::optional<std::vector<double>> OracleRewards(const std::vector<std::string>& texts,
                                                 const std::vector<PairJudgment>& judgments,
                                                 const std::vector<bool>& negative) {
  const int k = static_cast<int>(texts.size());
  std::map<std::string, double> reward_of;
  for (const PairJudgment& jd : judgments) {
    if (!jd.ok || jd.i < 0 || jd.j < 0 || jd.i >= k || jd.j >= k) continue;
    if (!jd.reward_i || !jd.reward_j) return std::nullopt;  // a chat judge
    reward_of[texts[jd.i]] = *jd.reward_i;
    reward_of[texts[jd.j]] = *jd.reward_j;
  }
  if (reward_of.empty()) return std::nullopt;
  std::vector<double> out(k, 0.0);
  double lowest = reward_of.begin()->second;
  for (const auto& [text, r] : reward_of) lowest = std::min(lowest, r);
  for (int i = 0; i < k; ++i) {
    if (i < static_cast<int>(negative.size()) && negative[i]) {
      out[i] = lowest;
      continue;
    }
    auto it = reward_of.find(texts[i]);
    if (it == reward_of.end()) return std::nullopt;
    out[i] = it->second;
  }
  return out;
}

bool HasRepeatedNgram(const std::string& text, int n, int max_repeats) {
  if (n <= 0) return false;
  std::vector<std::string> words =
      absl::StrSplit(text, absl::ByAnyChar(" \t\n\r"), absl::SkipEmpty());
  if (static_cast<int>(words.size()) < n) return false;
  std::map<std::string, int> count;
  for (size_t i = 0; i + n <= words.size(); ++i) {
    std::string gram = absl::StrJoin(words.begin() + i, words.begin() + i + n, "\x1f");
    if (++count[gram] > max_repeats) return true;
  }
  return false;
}

std::vector<PairRef> PairsToJudge(const std::vector<std::string>& texts,
                                  const std::vector<bool>& defective) {
  std::vector<PairRef> out;
  for (const PairRef& p : PairsToJudge(texts)) {
    if (!defective[p.i] && !defective[p.j]) out.push_back(p);
  }
  return out;
}

std::vector<PairJudgment> WithAutomaticNegatives(const std::vector<std::string>& texts,
                                                 const std::vector<PairJudgment>& judgments,
                                                 const std::vector<bool>& negative) {
  const int k = static_cast<int>(texts.size());
  auto neg = [&](int i) {
    return i >= 0 && i < k && static_cast<size_t>(i) < negative.size() && negative[i];
  };
  std::vector<PairJudgment> all;
  for (const PairJudgment& j : judgments) {
    if (neg(j.i) || neg(j.j)) continue;  // a negative's outcome is fixed, whatever a judge said
    all.push_back(j);
  }
  for (int i = 0; i < k; ++i) {
    for (int j = 0; j < k; ++j) {
      if (!neg(i) && neg(j) && texts[i] != texts[j])
        all.push_back({i, j, 1.0, true, std::nullopt, std::nullopt});
    }
  }
  return all;
}

std::vector<double> DefectAwareWinRates(const std::vector<std::string>& texts,
                                        const std::vector<PairJudgment>& judgments,
                                        const std::vector<bool>& defective, int opponents) {
  std::vector<double> rates =
      WinRates(texts, WithAutomaticNegatives(texts, judgments, defective), opponents);
  for (size_t i = 0; i < texts.size(); ++i) {
    if (defective[i]) rates[i] = 0.0;
  }
  return rates;
}

std::vector<PreferencePairRow> DnoMarginPairs(const std::string& prompt,
                                              const std::vector<std::string>& texts,
                                              const std::vector<double>& values,
                                              const DnoMarginOptions& o) {
  std::vector<PreferencePairRow> out;
  std::set<std::pair<std::string, std::string>> seen;
  constexpr double kEps = 1e-9;
  auto defect = [&](size_t i) { return i < o.defective.size() && o.defective[i]; };
  for (size_t c = 0; c < texts.size(); ++c) {
    if (defect(c) || values[c] + kEps < o.gate) continue;
    const double need = static_cast<int>(c) == o.teacher_index ? o.teacher_min_gap : o.min_gap;
    for (size_t r = 0; r < texts.size(); ++r) {
      if (texts[c] == texts[r]) continue;
      if (!defect(r) && values[c] - values[r] + kEps < need) continue;
      if (!seen.insert({texts[c], texts[r]}).second) continue;
      out.push_back({prompt, texts[c], texts[r], values[c], values[r]});
    }
  }
  return out;
}

std::vector<PreferencePairRow> DnoSoftAllPairs(const std::string& prompt,
                                               const std::vector<std::string>& texts,
                                               const std::vector<double>& win_rates,
                                               const std::vector<bool>& negative) {
  const int k = static_cast<int>(texts.size());
  auto neg = [&](int i) { return static_cast<size_t>(i) < negative.size() && negative[i]; };
  std::vector<PreferencePairRow> out;
  std::set<std::pair<std::string, std::string>> seen;
  for (int a = 0; a < k; ++a) {
    for (int b = a + 1; b < k; ++b) {
      if (texts[a] == texts[b] || (neg(a) && neg(b))) continue;
      if (!seen.insert(std::minmax(texts[a], texts[b])).second) continue;
      const double p = 1.0 / (1.0 + std::exp(-(win_rates[a] - win_rates[b])));
      const bool swap = p < 0.5;
      const int c = swap ? b : a, r = swap ? a : b;
      PreferencePairRow row{prompt, texts[c], texts[r], win_rates[c], win_rates[r]};
      row.p = swap ? 1.0 - p : p;
      out.push_back(std::move(row));
    }
  }
  return out;
}

DnoMarginOptions DnoScoreOptions(int teacher_index, std::vector<bool> defective) {
  DnoMarginOptions o;
  o.gate = 5;
  o.min_gap = 1;
  o.teacher_min_gap = 2;
  o.teacher_index = teacher_index;
  o.defective = std::move(defective);
  return o;
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
