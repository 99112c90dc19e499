// The demo's built-in base model: a tiny Llama (~0.8M parameters, byte tokenizer) SFT'd on the
// addition task (tasks/arith/problems.h) until its greedy accuracy on a fixed eval subset reaches a
// target (the demo wants a base partway up its learning curve, right about a third of the time,
// leaving room for the recipes to improve it).
// Runs on the calling thread; deterministic given the seed and thread count.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "model/llama_config.h"
#include "model/policy.h"
#include "tasks/arith/problems.h"

namespace spar::arith {

// hidden 128, 4 layers, 8 heads (8 kv heads: no sharing), SwiGLU 352, tied embeddings, vocab 259.
model::LlamaConfig ArithBaseModelConfig();

struct ArithBaseOptions {
  std::string out_dir;                   // checkpoint directory written (Policy::Save)
  uint64_t seed = 1;                     // weights init, data order
  double target_accuracy = 0.30;         // stop once greedy eval accuracy >= this, in [0, 1]
  int max_steps = 2000;                  // optimizer steps at most
  int batch_size = 64;                   // SFT examples per step
  double learning_rate = 2e-3;           // AdamW, after a linear warmup
  int warmup_steps = 100;                // linear warmup length, steps
  double weight_decay = 0.1;             // AdamW decoupled weight decay
  double beta2 = 0.95;                   // AdamW second-moment decay
  double max_grad_norm = 1.0;            // global gradient-norm clip (0 = none)
  std::string lr_schedule = "constant";  // after warmup: "constant" | "cosine" (to 0 at max_steps)
  int eval_every = 50;                   // steps between accuracy checks
  int fine_eval_every = 10;              // ... once a check reached target_accuracy / 3
  int eval_problems = 200;               // eval-split problems in the fixed check subset
  uint64_t eval_seed = 7;                // which eval problems
  int num_threads = 2;                   // torch intra-op threads (0 = leave as is)
  model::LlamaConfig model = ArithBaseModelConfig();
};

struct ArithBaseProgress {
  int step = 0;
  double loss = 0;       // this step's SFT loss (nats/token)
  double accuracy = -1;  // greedy eval accuracy when measured at this step, else -1
};

struct ArithBaseReport {
  int steps = 0;
  double seconds = 0;
  double greedy_accuracy = 0;  // on the eval subset, at the saved checkpoint
  int64_t num_parameters = 0;
  std::vector<std::pair<int, double>> accuracy_curve;  // (step, accuracy) at each check
};

// InvalidArgument for bad options (empty out_dir, target outside [0,1], non-positive counts).
absl::StatusOr<ArithBaseReport> BuildArithBaseModel(
    const ArithBaseOptions& options,
    const std::function<void(const ArithBaseProgress&)>& on_progress = nullptr);

// Fraction of `problems` whose greedy response (temperature 0) is correct.
absl::StatusOr<double> ArithGreedyAccuracy(model::Policy& policy,
                                           const std::vector<ArithProblem>& problems,
                                           int max_new_tokens = 6);

}  // namespace spar::arith
