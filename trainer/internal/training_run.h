// One training run of TrainDpo / TrainSft / TrainListwise, in named steps: join the data-parallel
// group, load and tokenize the inputs (every rank agrees on the outcome), the per-pair targets and
// the frozen reference / magnet log-probs (or a resume from train_state), the optimizer steps
// (micro-batches, gradient all-reduce, update, train_state, progress and the agreed cancellation),
// and the write of the result (rank 0; every rank agrees on it). Private to trainer/.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "trainer/trainer.h"

namespace spar::trainer::internal {

// Trains `pairs` (SFT: `rejected` unused) or, for a listwise config.loss, `groups` with `config`
// from init_checkpoint into out_checkpoint, as TrainDpo / TrainListwise document; `what`
// ("TrainDpo", "TrainSft", "TrainListwise") prefixes errors from LibTorch. Called by those after
// their input checks.
absl::StatusOr<TrainResult> RunTraining(const char* what, const std::string& init_checkpoint,
                                        const std::vector<PreferencePair>& pairs,
                                        const std::vector<ListwiseGroup>& groups,
                                        const TrainConfig& config,
                                        const std::string& out_checkpoint,
                                        const ProgressCallback& on_progress);

}  // namespace spar::trainer::internal
