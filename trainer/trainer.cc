#include "trainer/trainer.h"

#include <cmath>
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

// Listwise losses train on groups (TrainListwise), the others on pairs.
absl::Status CheckLossShape(const TrainConfig& config, bool listwise) {
  if (IsListwiseLoss(config.loss) == listwise) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "train.loss: \"", config.loss, "\" is ", listwise ? "not a listwise loss" : "listwise",
      listwise ? " (brain, brain_no_baseline, rrhf train on groups)"
               : ": it trains on groups (TrainListwise, StartTrainingRequest.groups_path)"));
}

// One listwise group: at least two responses, each a non-empty text with a finite reward and,
// when `needs_proposal`, a finite proposal log-prob <= 0.
absl::Status CheckGroup(const ListwiseGroup& group, size_t g, bool needs_proposal) {
  SPAR_RETURN_IF_ERROR(CheckText(group.prompt, "groups", g, "prompt"));
  if (group.responses.size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat("groups[", g, "].responses: has ",
                                                   group.responses.size(),
                                                   " response(s); a group needs at least 2"));
  }
  for (size_t k = 0; k < group.responses.size(); ++k) {
    const ListwiseResponse& r = group.responses[k];
    const std::string where = absl::StrCat("groups[", g, "].responses[", k, "]");
    if (r.text.empty()) return absl::InvalidArgumentError(absl::StrCat(where, ".text is empty"));
    if (!std::isfinite(r.reward)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".reward must be finite, got ", r.reward));
    }
    if (!needs_proposal) continue;
    if (!r.proposal_logprob.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".proposal_logprob is required by brain (the sampler's log q(y|x))"));
    }
    if (!std::isfinite(*r.proposal_logprob) || *r.proposal_logprob > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".proposal_logprob must be a finite log-probability (<= 0), got ",
                       *r.proposal_logprob));
    }
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
  SPAR_RETURN_IF_ERROR(CheckLossShape(config, /*listwise=*/false));
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
  return internal::RunTraining("TrainDpo", init_checkpoint, pairs, {}, config, out_checkpoint,
                               on_progress);
}

absl::StatusOr<TrainResult> TrainListwise(const std::string& init_checkpoint,
                                          const std::vector<ListwiseGroup>& groups,
                                          const TrainConfig& config,
                                          const std::string& out_checkpoint,
                                          const ProgressCallback& on_progress) {
  SPAR_RETURN_IF_ERROR(Validate(config));
  SPAR_RETURN_IF_ERROR(CheckLossShape(config, /*listwise=*/true));
  if (groups.empty()) return absl::InvalidArgumentError("groups: no groups to train on");
  for (size_t g = 0; g < groups.size(); ++g) {
    SPAR_RETURN_IF_ERROR(CheckGroup(groups[g], g, UsesPrior(config.loss)));
  }
  return internal::RunTraining("TrainListwise", init_checkpoint, {}, groups, config, out_checkpoint,
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
  return internal::RunTraining("TrainSft", init_checkpoint, rows, {}, config, out_checkpoint,
                               on_progress);
}

}  // namespace spar::trainer
