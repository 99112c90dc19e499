// The built-in task's evaluation: greedy answers scored against the truth of each arithmetic
// question. Shared by the orchestrator's eval stage (answers from the sampler) and pi_0's
// builder (answers from a local Policy). Pure functions; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "common/stats.h"

namespace spar::arith {

struct GreedyScore {
  int correct = 0;
  int verifiable = 0;    // prompts that are arithmetic questions
  double accuracy = -1;  // correct / verifiable; -1 when no prompt is verifiable
  Interval ci95{0, 1};   // 95% Wilson interval of the accuracy
};

// Scores answers[i] against prompts[i]; prompts that are not arithmetic questions are skipped.
GreedyScore ScoreGreedyAnswers(const std::vector<std::string>& prompts,
                               const std::vector<std::string>& answers);

// Two policies' answers to the same prompts, compared paired (McNemar) on the verifiable ones.
struct PairedGreedy {
  int gained = 0;  // right in `answers`, wrong in `base_answers`
  int lost = 0;    // the reverse
  int verifiable = 0;
  double mcnemar_p = 1;       // exact two-sided McNemar p-value
  Interval diff_ci95{-1, 1};  // 95% interval of accuracy(answers) - accuracy(base_answers)
};

PairedGreedy CompareGreedyAnswers(const std::vector<std::string>& prompts,
                                  const std::vector<std::string>& base_answers,
                                  const std::vector<std::string>& answers);

}  // namespace spar::arith
