// One training run of TrainDpo / TrainSft, in named steps: join the data-parallel group, load and
// tokenize the inputs (every rank agrees on the outcome), the per-pair targets and the frozen
// reference / magnet log-probs (or a resume from train_state), the optimizer steps (micro-batches,
// gradient all-reduce, update, train_state, progress and the agreed cancellation), and the write
// of the result (rank 0; every rank agrees on it). Private to trainer/.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "trainer/trainer.h"

namespace spar::trainer::internal {

// Trains `pairs` (SFT: `rejected` unused) with `config` from init_checkpoint into out_checkpoint,
// as TrainDpo documents; `what` ("TrainDpo", "TrainSft") prefixes errors from LibTorch. Called by
// TrainDpo and TrainSft after their input checks.
absl::StatusOr<TrainResult> RunTraining(const char* what, const std::string& init_checkpoint,
                                        const std::vector<PreferencePair>& pairs,
                                        const TrainConfig& config,
                                        const std::string& out_checkpoint,
                                        const ProgressCallback& on_progress);

}  // namespace spar::trainer::internal
