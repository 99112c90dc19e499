#include "trainer/train_config.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "model/chat_template.h"

namespace spar::trainer {
namespace {

// Builds "<prefix>.<field> <what>" errors.
class Rules {
 public:
  explicit Rules(const std::string& prefix) : prefix_(prefix) {}
  absl::Status Bad(const std::string& field, const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(prefix_, ".", field, " ", what));
  }
  // "<prefix>.<field>: <what>", for unknown names.
  absl::Status Unknown(const std::string& field, const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(prefix_, ".", field, ": ", what));
  }
  // A finite number in [lo, hi] (hi_open: [lo, hi)).
  absl::Status InRange(const std::string& field, double v, double lo, double hi,
                       bool hi_open = false) const {
    if (std::isfinite(v) && v >= lo && (hi_open ? v < hi : v <= hi)) return absl::OkStatus();
    return Bad(field, absl::StrCat("must be finite and in [", lo, ", ", hi, hi_open ? ")" : "]",
                                   ", got ", v));
  }
  // A finite number > 0 (positive) or >= 0.
  absl::Status Finite(const std::string& field, double v, bool positive) const {
    if (std::isfinite(v) && (positive ? v > 0 : v >= 0)) return absl::OkStatus();
    return Bad(field, absl::StrCat("must be finite and ", positive ? "> 0" : ">= 0", ", got ", v));
  }
  absl::Status Count(const std::string& field, int64_t v, int64_t lo, int64_t hi,
                     const char* note = "") const {
    if (v >= lo && v <= hi) return absl::OkStatus();
    return Bad(field, absl::StrCat("must be in [", lo, ", ", hi, "]", note, ", got ", v));
  }

 private:
  std::string prefix_;
};

absl::Status ValidateNumbers(const TrainConfig& c, const Rules& r) {
  SPAR_RETURN_IF_ERROR(r.Finite("beta", c.beta, true));
  SPAR_RETURN_IF_ERROR(r.InRange("learning_rate", c.learning_rate, 0, 1));
  if (!(c.learning_rate > 0)) {
    return r.Bad("learning_rate", absl::StrCat("must be > 0, got ", c.learning_rate));
  }
  SPAR_RETURN_IF_ERROR(r.InRange("weight_decay", c.weight_decay, 0, kMaxWeightDecay));
  SPAR_RETURN_IF_ERROR(r.Finite("max_grad_norm", c.max_grad_norm, false));
  SPAR_RETURN_IF_ERROR(r.Finite("nll_weight", c.nll_weight, false));
  SPAR_RETURN_IF_ERROR(r.InRange("label_smoothing", c.label_smoothing, 0, 0.5, true));
  SPAR_RETURN_IF_ERROR(r.Finite("simpo_gamma", c.simpo_gamma, false));
  SPAR_RETURN_IF_ERROR(r.Finite("mpo_alpha", c.mpo_alpha, false));
  SPAR_RETURN_IF_ERROR(r.Finite("mpo_eta", c.mpo_eta, true));
  return r.InRange("warmup_ratio", c.warmup_ratio, 0, 1, true);
}

absl::Status ValidateCounts(const TrainConfig& c, const Rules& r) {
  SPAR_RETURN_IF_ERROR(r.Count("epochs", c.epochs, 1, kMaxEpochs));
  SPAR_RETURN_IF_ERROR(r.Count("batch_size", c.batch_size, 1, kMaxBatchSize));
  SPAR_RETURN_IF_ERROR(r.Count("warmup_steps", c.warmup_steps, 0, kMaxWarmupSteps));
  SPAR_RETURN_IF_ERROR(r.Count("gradient_accumulation_steps", c.gradient_accumulation_steps, 1,
                               kMaxGradientAccumulationSteps));
  SPAR_RETURN_IF_ERROR(
      r.Count("max_prompt_length", c.max_prompt_length, 0, kMaxSequenceLength, " (0 = no limit)"));
  if (c.max_length == 1) {
    return r.Bad("max_length", absl::StrCat("must be 0 (no limit) or >= 2, got ", c.max_length));
  }
  SPAR_RETURN_IF_ERROR(
      r.Count("max_length", c.max_length, 0, kMaxSequenceLength, " (0 = no limit, else >= 2)"));
  if (c.max_length > 0 && c.max_prompt_length >= c.max_length) {
    return r.Bad("max_prompt_length", absl::StrCat("(", c.max_prompt_length, ") must be < ",
                                                   "max_length (", c.max_length, ")"));
  }
  return r.Count("save_every_steps", c.save_every_steps, 0, 1 << 30, " (0 = never)");
}

absl::Status ValidateChoices(const TrainConfig& c, const Rules& r) {
  if (!IsKnownLoss(c.loss)) {
    return r.Unknown("loss", absl::StrCat("unknown loss \"", c.loss,
                                          "\" (known: ", absl::StrJoin(KnownLosses(), ", "), ")"));
  }
  if (!c.magnet_checkpoint.empty() && !UsesMagnet(c.loss)) {
    return r.Bad("magnet_checkpoint",
                 absl::StrCat("is only used by mpo / mpo_pg, got loss \"", c.loss, "\""));
  }
  if (!c.prior_checkpoint.empty() && !UsesPrior(c.loss)) {
    return r.Bad(
        "prior_checkpoint",
        absl::StrCat("is only used by brain / brain_no_baseline, got loss \"", c.loss, "\""));
  }
  if (IsListwiseLoss(c.loss) && c.nll_weight != 0) {
    return r.Bad("nll_weight", absl::StrCat("must be 0 for the listwise loss \"", c.loss,
                                            "\" (rrhf has its own SFT term), got ", c.nll_weight));
  }
  if (c.optimizer != "adamw" && c.optimizer != "rmsprop") {
    return r.Unknown("optimizer",
                     absl::StrCat("unknown optimizer \"", c.optimizer, "\" (adamw | rmsprop)"));
  }
  if (c.lr_scheduler != "constant" && c.lr_scheduler != "linear" && c.lr_scheduler != "cosine") {
    return r.Unknown("lr_scheduler", absl::StrCat("unknown schedule \"", c.lr_scheduler,
                                                  "\" (constant | linear | cosine)"));
  }
  if (c.mixed_precision != "no" && c.mixed_precision != "bf16") {
    return r.Bad("mixed_precision",
                 absl::StrCat("must be \"no\" or \"bf16\", got \"", c.mixed_precision, "\""));
  }
  if (absl::Status st = model::ValidateChatTemplateSetting(c.chat_template); !st.ok()) {
    return r.Unknown("chat_template", std::string(st.message()));
  }
  return absl::OkStatus();
}

absl::Status ValidateDistributed(const DistributedConfig& d, const Rules& r) {
  SPAR_RETURN_IF_ERROR(r.Count("distributed.world_size", d.world_size, 1, 1 << 16));
  SPAR_RETURN_IF_ERROR(r.Count("distributed.rank", d.rank, 0, d.world_size - 1));
  if (d.world_size > 1) {
    SPAR_RETURN_IF_ERROR(r.Count("distributed.master_port", d.master_port, 1, 65535));
  }
  return r.Count("distributed.timeout_seconds", d.timeout_seconds, 1, 1 << 30);
}

}  // namespace

const std::vector<std::string>& KnownLosses() {
  static const std::vector<std::string> kLosses = {
      "dpo",   "cdpo", "robust", "dno", "ipo",   "ipo_sum",           "hinge", "sppo", "sppo_hard",
      "simpo", "mpo",  "mpo_pg", "sft", "brain", "brain_no_baseline", "rrhf"};
  return kLosses;
}

bool IsKnownLoss(const std::string& name) {
  for (const std::string& l : KnownLosses()) {
    if (l == name) return true;
  }
  return false;
}

bool UsesMagnet(const std::string& loss) { return loss == "mpo" || loss == "mpo_pg"; }

bool IsListwiseLoss(const std::string& loss) { return UsesPrior(loss) || loss == "rrhf"; }

bool UsesPrior(const std::string& loss) { return loss == "brain" || loss == "brain_no_baseline"; }

absl::Status Validate(const TrainConfig& c, const std::string& prefix) {
  const Rules r(prefix);
  SPAR_RETURN_IF_ERROR(ValidateChoices(c, r));
  SPAR_RETURN_IF_ERROR(ValidateNumbers(c, r));
  SPAR_RETURN_IF_ERROR(ValidateCounts(c, r));
  return ValidateDistributed(c.distributed, r);
}

TrainConfig TrainConfigDefaults(const std::string& loss) {
  TrainConfig c;
  c.loss = loss;
  if (loss == "simpo") c.beta = 2.0;
  if (loss == "sppo" || loss == "sppo_hard") c.beta = 0.001;  // η = 1/β = 1000
  return c;
}

}  // namespace spar::trainer
