// A training run's resumable state (train_state/state.pt) and the request fingerprint that ties a
// state to the request that wrote it. Private to trainer/.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/internal/llama.h"
#include "trainer/trainer.h"

namespace spar::trainer::internal {

// A stable hash (FNV-1a, the same in every process) of everything that determines a run's
// result: init checkpoint, config and pairs (or groups). A train_state is only resumed by the
// same request.
std::string RequestFingerprint(const std::string& init, const std::vector<PreferencePair>& pairs,
                               const std::vector<ListwiseGroup>& groups, const TrainConfig& c);

// Log-probs of every example under a frozen model: sequence sums [n] and, when `tokens`,
// per-token values of each response concatenated (row i at offsets[i]).
struct FrozenLogps {
  torch::Tensor chosen, rejected;              // [n] float32 CPU
  torch::Tensor token_chosen, token_rejected;  // flat float32 CPU; undefined unless needed
};

// Everything a run needs to continue after a kill: written to <dir>/state.pt via a temporary
// file and an atomic rename.
struct TrainState {
  int64_t step = 0;         // optimizer steps done
  std::string epoch_rng;    // the shuffle RNG at the start of the current epoch
  torch::Tensor torch_rng;  // torch's CPU generator
  FrozenLogps ref, magnet;
};

// Writes `s`, the module's weights and the optimizer to <dir>/state.pt (atomically; the last good
// state.pt stays when a write fails; ResourceExhausted on ENOSPC).
absl::Status SaveTrainState(const std::string& dir, const std::string& fingerprint,
                            const TrainState& s, model::internal::LlamaForCausalLM& module,
                            torch::optim::Optimizer& opt);

// Loads <dir>/state.pt when present and written for the same request; false otherwise.
absl::StatusOr<bool> LoadTrainState(const std::string& dir, const std::string& fingerprint,
                                    TrainState& s, model::internal::LlamaForCausalLM& module,
                                    torch::optim::Optimizer& opt);

// torch's default CPU generator state.
torch::Tensor GetTorchRng();
void SetTorchRng(const torch::Tensor& state);

}  // namespace spar::trainer::internal
