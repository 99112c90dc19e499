// Shared by the trainer tests and spar_trainer_test_helper (the kill-and-resume and Gloo tests
// run the same request in two processes).
#pragma once

#include <string>
#include <vector>

#include "model/byte_tokenizer.h"
#include "model/policy.h"
#include "tests/testing/tiny_model.h"
#include "trainer/trainer.h"

namespace spar::trainer::testing {

inline model::LlamaConfig TinyConfig() { return spar::testing::TinyByteLlamaConfig(); }

inline std::vector<PreferencePair> ToyPairs() {
  std::vector<PreferencePair> pairs;
  for (int a = 1; a <= 12; ++a) {
    const int b = (a * 7) % 10;
    PreferencePair p;
    p.prompt = std::to_string(a) + "+" + std::to_string(b) + "=";
    p.chosen = std::to_string(a + b);
    p.rejected = std::to_string(a + b + 1 + a % 3) + (a % 2 ? "0" : "");
    p.chosen_win_rate = 0.6 + 0.03 * (a % 4);
    p.rejected_win_rate = 0.4 - 0.05 * (a % 3);
    pairs.push_back(p);
  }
  return pairs;
}

// Listwise groups of 2, 3 and 4 responses (so the trainer pads), rewards on no common scale,
// proposal log-probs that a sampler could have reported.
inline std::vector<ListwiseGroup> ToyGroups() {
  auto r = [](const char* text, double reward) {
    ListwiseResponse out;
    out.text = text;
    out.reward = reward;
    return out;
  };
  std::vector<ListwiseGroup> groups = {
      {"1+2=", {r("3", 1.0), r("4", 0.0)}},
      {"10+5=", {r("15", 0.9), r("16", 0.2), r("51", 0.2)}},
      {"7+7=", {r("14", 0.75), r("41", 0.5), r("15", 0.25), r("1", 0.0)}}};
  for (ListwiseGroup& g : groups) {
    for (size_t k = 0; k < g.responses.size(); ++k) {
      g.responses[k].proposal_logprob = -6.0 - 1.5 * static_cast<double>(k);
    }
  }
  return groups;
}

// A resumable request: 12 pairs, batch 4, 2 epochs = 6 steps, state every 2 steps.
inline TrainConfig ResumableConfig() {
  TrainConfig c;
  c.learning_rate = 1e-3;
  c.batch_size = 4;
  c.epochs = 2;
  c.seed = 7;
  c.lr_scheduler = "cosine";
  c.warmup_steps = 1;
  c.save_every_steps = 2;
  return c;
}

}  // namespace spar::trainer::testing
