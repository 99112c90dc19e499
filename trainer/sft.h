// Supervised fine-tuning of a Policy on (prompt, response) examples: AdamW with warmup and an
// optional cosine decay, batches drawn from seeded reshuffles of the data, a hook after every
// step (progress, evaluation, early stop). Used to build task base models (tasks/arith's pi_0).
// Runs on the calling thread; deterministic given the seed and the intra-op thread count.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/policy.h"

namespace spar::trainer {

struct SftExample {
  std::string prompt;    // encoded raw (BOS + bytes or tokenizer ids), no template
  std::string response;  // followed by EOS
};

struct SftOptions {
  uint64_t seed = 1;                     // torch's RNG and the data order
  int max_steps = 2000;                  // optimizer steps at most
  int batch_size = 64;                   // examples per step
  double learning_rate = 2e-3;           // AdamW, after a linear warmup
  int warmup_steps = 100;                // linear warmup length, steps
  double weight_decay = 0.1;             // AdamW decoupled weight decay
  double beta2 = 0.95;                   // AdamW second-moment decay
  double max_grad_norm = 1.0;            // global gradient-norm clip (0 = none)
  std::string lr_schedule = "constant";  // after warmup: "constant" | "cosine" (to 0 at max_steps)
};

// Called after step `step` (from 1) with its SFT loss (nats/token); returns true to stop. It may
// use the policy (Generate puts it in eval mode; the next step puts it back in training mode).
using SftStepHook = std::function<absl::StatusOr<bool>(int step, double loss)>;

// Trains `policy` in place until max_steps or the hook says stop; returns the steps run and
// leaves the policy in eval mode. Errors: the hook's, or Internal from LibTorch.
absl::StatusOr<int> RunSft(model::Policy& policy, const std::vector<SftExample>& data,
                           const SftOptions& options, const SftStepHook& after_step);

// Intra-op threads for CPU work (0 = leave as is): set once per process, before creating the
// policy, for a reproducible run.
void SetCpuThreads(int threads);

}  // namespace spar::trainer
