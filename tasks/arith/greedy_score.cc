#include "tasks/arith/greedy_score.h"

#include "tasks/arith/problems.h"

namespace spar::arith {

GreedyScore ScoreGreedyAnswers(const std::vector<std::string>& prompts,
                               const std::vector<std::string>& answers) {
  GreedyScore g;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (!ArithTruth(prompts[i]).has_value()) continue;
    ++g.verifiable;
    g.correct += ArithCorrect(prompts[i], answers[i]) ? 1 : 0;
  }
  if (g.verifiable > 0) {
    g.accuracy = static_cast<double>(g.correct) / g.verifiable;
    g.ci95 = WilsonInterval(g.correct, g.verifiable);
  }
  return g;
}

PairedGreedy CompareGreedyAnswers(const std::vector<std::string>& prompts,
                                  const std::vector<std::string>& base_answers,
                                  const std::vector<std::string>& answers) {
  PairedGreedy g;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (!ArithTruth(prompts[i]).has_value()) continue;
    ++g.verifiable;
    const bool before = ArithCorrect(prompts[i], base_answers[i]);
    const bool after = ArithCorrect(prompts[i], answers[i]);
    g.gained += after && !before ? 1 : 0;
    g.lost += before && !after ? 1 : 0;
  }
  g.mcnemar_p = McNemarExactP(g.lost, g.gained);
  if (g.verifiable > 0) g.diff_ci95 = PairedDifferenceInterval(g.lost, g.gained, g.verifiable);
  return g;
}

}  // namespace spar::arith
