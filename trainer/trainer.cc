#include "trainer/trainer.h"

#include <cstdlib>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/internal/torch_compat.h"
#include "trainer/internal/train_inputs.h"
#include "trainer/internal/training_run.h"

namespace spar::trainer {
namespace {

absl::Status CheckText(const std::string& text, const char* list, size_t i, const char* field) {
  if (text.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(list, "[", i, "].", field, " is empty"));
  }
  return absl::OkStatus();
}

absl::Status CheckProbability(const std::optional<double>& v, size_t i, const char* field) {
  if (v.has_value() && !(*v >= 0 && *v <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("pairs[", i, "].", field, " must be in [0, 1], got ", *v));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckDevice(const TrainConfig& c) {
  if (c.mixed_precision == "bf16" && !model::internal::DefaultDevice().is_cuda()) {
    return absl::InvalidArgumentError(internal::kBf16NeedsCuda);
  }
  return absl::OkStatus();
}

absl::Status CheckInitCheckpoint(const std::string& dir) {
  return internal::CheckCheckpointWithoutWeights(dir, "init_checkpoint");
}

absl::StatusOr<DistributedConfig> DistributedFromEnv() {
  DistributedConfig d;
  auto read_int = [](const char* name, int* out) -> absl::Status {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') return absl::OkStatus();
    if (!absl::SimpleAtoi(v, out)) {
      return absl::InvalidArgumentError(
          absl::StrCat("env ", name, ": not an integer: \"", v, "\""));
    }
    return absl::OkStatus();
  };
  SPAR_RETURN_IF_ERROR(read_int("RANK", &d.rank));
  SPAR_RETURN_IF_ERROR(read_int("WORLD_SIZE", &d.world_size));
  SPAR_RETURN_IF_ERROR(read_int("MASTER_PORT", &d.master_port));
  if (const char* a = std::getenv("MASTER_ADDR"); a != nullptr && *a != '\0') d.master_addr = a;
  if (d.world_size < 1 || d.rank < 0 || d.rank >= d.world_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "env RANK=", d.rank, " WORLD_SIZE=", d.world_size, ": want 0 <= RANK < WORLD_SIZE"));
  }
  return d;
}

absl::StatusOr<TrainResult> TrainDpo(const std::string& init_checkpoint,
                                     const std::vector<PreferencePair>& pairs,
                                     const TrainConfig& config, const std::string& out_checkpoint,
                                     const ProgressCallback& on_progress) {
  SPAR_RETURN_IF_ERROR(Validate(config));
  if (pairs.empty()) return absl::InvalidArgumentError("pairs: no preference pairs to train on");
  const bool pairwise = config.loss != "sft";
  for (size_t i = 0; i < pairs.size(); ++i) {
    SPAR_RETURN_IF_ERROR(CheckText(pairs[i].prompt, "pairs", i, "prompt"));
    SPAR_RETURN_IF_ERROR(CheckText(pairs[i].chosen, "pairs", i, "chosen"));
    if (pairwise) SPAR_RETURN_IF_ERROR(CheckText(pairs[i].rejected, "pairs", i, "rejected"));
    SPAR_RETURN_IF_ERROR(CheckProbability(pairs[i].p, i, "p"));
    SPAR_RETURN_IF_ERROR(CheckProbability(pairs[i].chosen_win_rate, i, "chosen_win_rate"));
    SPAR_RETURN_IF_ERROR(CheckProbability(pairs[i].rejected_win_rate, i, "rejected_win_rate"));
  }
  return internal::RunTraining("TrainDpo", init_checkpoint, pairs, config, out_checkpoint,
                               on_progress);
}

absl::StatusOr<TrainResult> TrainSft(const std::string& init_checkpoint,
                                     const std::vector<SftExample>& examples,
                                     const TrainConfig& config, const std::string& out_checkpoint,
                                     const ProgressCallback& on_progress) {
  SPAR_RETURN_IF_ERROR(Validate(config));
  if (config.loss != "sft") {
    return absl::InvalidArgumentError(
        absl::StrCat("train.loss: TrainSft needs \"sft\", got \"", config.loss, "\""));
  }
  if (examples.empty()) return absl::InvalidArgumentError("examples: no SFT examples to train on");
  std::vector<PreferencePair> rows(examples.size());
  for (size_t i = 0; i < examples.size(); ++i) {
    SPAR_RETURN_IF_ERROR(CheckText(examples[i].prompt, "examples", i, "prompt"));
    SPAR_RETURN_IF_ERROR(CheckText(examples[i].response, "examples", i, "response"));
    rows[i].prompt = examples[i].prompt;
    rows[i].chosen = examples[i].response;
  }
  return internal::RunTraining("TrainSft", init_checkpoint, rows, config, out_checkpoint,
                               on_progress);
}

}  // namespace spar::trainer
