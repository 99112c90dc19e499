// Contrastive and supervised training of a model::Policy checkpoint: DPO (ref = the initial
// policy, whose log-probs are computed once before the first update) and SFT. Loads the init
// checkpoint, trains with AdamW and global-norm clipping, saves the result with Policy::Save
// (whole-directory atomic). No gRPC; torch stays in the .cc files.
// Thread-compatible: one training run per call; runs on the calling thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace spar::trainer {

struct TrainConfig {
  std::string loss = "dpo";     // "dpo" (TrainDpo) | "sft" (TrainSft)
  double beta = 0.1;            // DPO temperature on the log-ratio margin
  double learning_rate = 1e-4;  // AdamW step size, constant
  double weight_decay = 0.0;    // AdamW decoupled weight decay; 0 = none
  int epochs = 1;               // passes over the data
  int batch_size = 16;          // pairs (or SFT examples) per optimizer step
  double max_grad_norm = 1.0;   // global-norm clipping threshold; 0 = no clipping
  double nll_weight = 0.0;      // DPO only: weight of -log pi(y_w)/|y_w| (RPO); 0 = off
  uint64_t seed = 0;            // shuffle order (and torch's RNG)
};

// InvalidArgument naming the field, e.g. "train.loss: unknown loss \"x\"".
absl::Status Validate(const TrainConfig& config);

struct PreferencePair {
  std::string prompt;
  std::string chosen;    // y_w
  std::string rejected;  // y_l
};

struct SftExample {
  std::string prompt;
  std::string response;
};

struct TrainProgress {
  int step = 0;         // optimizer steps done (1-based after the first step)
  int total_steps = 0;
  double loss = 0;      // this step's loss
  double tokens_per_second = 0;
  std::map<std::string, double> metrics;  // this step's metrics (TRL names for DPO)
};

struct TrainResult {
  int steps = 0;
  double final_loss = 0;  // mean loss over the last epoch
  // DPO: rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies, logps/chosen,
  // logps/rejected, loss — averaged over the last epoch. SFT: loss, nll/token.
  std::map<std::string, double> metrics;
  int64_t num_parameters = 0;
  double seconds = 0;
};

// Called after every optimizer step; returning false cancels the run (CancelledError, nothing
// written).
using ProgressCallback = std::function<bool(const TrainProgress&)>;

// DPO (sigmoid loss, optional NLL term) from init_checkpoint (pi_t, also the reference) into
// out_checkpoint (pi_{t+1}). Responses are scored as bytes(response) + EOS. InvalidArgument for a
// bad config, no pairs, or an empty prompt/response (naming pairs[i].field); NotFound /
// InvalidArgument from loading; CancelledError when on_progress returns false.
absl::StatusOr<TrainResult> TrainDpo(const std::string& init_checkpoint,
                                     const std::vector<PreferencePair>& pairs,
                                     const TrainConfig& config, const std::string& out_checkpoint,
                                     const ProgressCallback& on_progress = nullptr);

// SFT: loss -log pi(y)/|y| over response tokens (bytes(response) + EOS), prompt masked.
absl::StatusOr<TrainResult> TrainSft(const std::string& init_checkpoint,
                                     const std::vector<SftExample>& examples,
                                     const TrainConfig& config, const std::string& out_checkpoint,
                                     const ProgressCallback& on_progress = nullptr);

}  // namespace spar::trainer
