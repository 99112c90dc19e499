#include "orchestrator/best_round.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "orchestrator/run_dir.h"

namespace spar::orchestrator {

bool IsKnownSelectBest(const std::string& s) {
  return s == "win_rate_vs_base" || s == "greedy_accuracy" || s == "last";
}

RoundEval BaseRoundEval(double base_greedy_accuracy) {
  return RoundEval{0, 0.5, base_greedy_accuracy};
}

absl::StatusOr<int> SelectBestRound(const std::vector<RoundEval>& evals,
                                    const std::string& select_best, const RoundEval& base) {
  const std::string by = select_best.empty() ? kSelectBestDefault : select_best;
  if (!IsKnownSelectBest(by)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "eval.select_best: unknown \"", by, "\" (known: win_rate_vs_base, greedy_accuracy, last)"));
  }
  auto value = [&by](const RoundEval& e) {
    return by == "last"              ? static_cast<double>(e.round)
           : by == "greedy_accuracy" ? e.greedy_accuracy
                                     : e.win_rate_vs_base;
  };
  if (evals.empty()) return 0;
  // pi_0 competes (and, as round 0, wins ties) except for "last".
  const RoundEval* best = by == "last" ? nullptr : &base;
  for (const RoundEval& e : evals) {
    // Strictly better wins; a tie goes to the earlier round.
    if (best == nullptr || value(e) > value(*best) ||
        (value(e) == value(*best) && e.round < best->round)) {
      best = &e;
    }
  }
  return best == nullptr ? 0 : best->round;
}

absl::StatusOr<std::vector<RoundEval>> ReadRoundEvals(const std::string& job_dir, int rounds,
                                                      bool validation) {
  RunDir dir(job_dir);
  std::vector<RoundEval> out;
  for (int t = 1; t <= rounds; ++t) {
    // Evaluated = STAGE records eval (eval.json alone may be from an eval cut short).
    absl::StatusOr<std::string> stage = ReadFile(dir.Stage(t));
    if (!stage.ok() || absl::StripAsciiWhitespace(*stage) != kStages[kNumStages - 1]) continue;
    if (!validation) {
      out.push_back({t, -1, -1});  // only "last" has anything to compare
      continue;
    }
    const std::string path = dir.Eval(t);
    absl::StatusOr<nlohmann::json> read = ReadJsonFile(path);
    if (!read.ok()) return absl::DataLossError(absl::StrCat(path, ": ", read.status().message()));
    const nlohmann::json& j = *read;
    const nlohmann::json* v =
        j.is_object() && j.contains("validation") ? &j.at("validation") : nullptr;
    auto number = [v](const char* key) { return v->contains(key) && v->at(key).is_number(); };
    if (v == nullptr || !v->is_object() || !number("win_rate_vs_base") ||
        !number("greedy_accuracy")) {
      return absl::DataLossError(absl::StrCat(
          path, ": expected numbers validation.win_rate_vs_base and validation.greedy_accuracy"));
    }
    out.push_back(
        {t, v->at("win_rate_vs_base").get<double>(), v->at("greedy_accuracy").get<double>()});
  }
  return out;
}

}  // namespace spar::orchestrator
