// The inputs of a training run, loaded and checked: π_t (and the mpo magnet) with their
// tokenizer checks, and every example through π_t's own tokenizer, as the sampler feeds prompts
// (Policy::EncodePrompt) and ScoreResponses scores responses (Policy::EncodeResponse).
// Private to trainer/.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/policy.h"
#include "trainer/internal/train_util.h"
#include "trainer/trainer.h"

namespace spar::trainer::internal {

inline constexpr char kBf16NeedsCuda[] =
    "train.mixed_precision: \"bf16\" uses CUDA autocast and this trainer runs on CPU (no CUDA "
    "device); use \"no\"";

struct TrainInputs {
  std::unique_ptr<model::Policy> policy;  // π_t: trained, and the reference
  // The frozen second model: the mpo magnet (magnet_checkpoint) or brain's prior
  // (prior_checkpoint) when one is named; else null.
  std::unique_ptr<model::Policy> magnet;
  std::vector<TokenizedExample> chosen;    // one per pair; listwise: every response, group by group
  std::vector<TokenizedExample> rejected;  // one per pair when `pairwise`; else empty
  std::vector<size_t> group_starts;        // listwise: group g is chosen[starts[g], starts[g+1])
};

// A checkpoint that has no tokenizer.json is read with the byte tokenizer: its config's
// special ids (bos/eos/pad) and vocab_size must be the byte tokenizer's. InvalidArgument naming
// `field` and `dir` otherwise.
absl::Status CheckByteTokenizerIds(const std::string& dir, const model::LlamaConfig& config,
                                   const char* field);

// What LoadTrainInputs checks of a checkpoint before its weights: tokenizer files, config.json,
// and the byte tokenizer's special ids. Cheap (no weights, no tokenizer parsing): CreateJob asks
// it of the base model, so a mismatch is refused before sampling and judging are paid for.
absl::Status CheckCheckpointWithoutWeights(const std::string& dir, const char* field);

// InvalidArgument naming the field for a checkpoint the trainer cannot use (a tokenizer.model
// without tokenizer.json, a byte-tokenizer checkpoint with other special ids, bf16 without CUDA,
// a magnet with another tokenizer), a bad chat template, or an example that does not encode
// (pairs[i].field); Policy::Load's errors prefixed by the field.
absl::StatusOr<TrainInputs> LoadTrainInputs(const std::string& init_checkpoint,
                                            const std::vector<PreferencePair>& pairs,
                                            const TrainConfig& config, bool pairwise,
                                            bool uses_magnet);

// The listwise inputs: π_t, brain's prior (`uses_prior` with a prior_checkpoint) and every
// response of every group (errors name groups[g].prompt / groups[g].responses[k].text).
absl::StatusOr<TrainInputs> LoadListwiseInputs(const std::string& init_checkpoint,
                                               const std::vector<ListwiseGroup>& groups,
                                               const TrainConfig& config, bool uses_prior);

}  // namespace spar::trainer::internal
