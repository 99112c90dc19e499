#include "orchestrator/training_config.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace spar::orchestrator {

v1::TrainingConfig RoundTrainingConfig(const v1::JobSpec& spec, int round) {
  v1::TrainingConfig out = spec.training();
  for (const v1::RoundTraining& rt : spec.round_training()) {
    if (rt.round() == round) out.MergeFrom(rt.training());  // set fields win
  }
  return out;
}

namespace {

// "config: train.<field> ..." from the trainer becomes "<prefix>.<field> ...".
absl::Status Refused(const absl::Status& st, const std::string& prefix) {
  absl::string_view msg = st.message();
  if (absl::ConsumePrefix(&msg, "init_checkpoint: ")) {  // the base model, as the trainer sees it
    return absl::InvalidArgumentError(absl::StrCat("spec.base_model: ", msg));
  }
  absl::ConsumePrefix(&msg, "config: ");
  if (absl::ConsumePrefix(&msg, "train.")) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, ".", msg));
  }
  return absl::InvalidArgumentError(absl::StrCat(prefix, ": refused by the trainer: ", msg));
}

}  // namespace

absl::Status CheckTrainingOnTrainer(const v1::JobSpec& spec, const std::string& base_model,
                                    TrainerPort& trainer) {
  absl::Status st = trainer.CheckConfig(spec.training(), spec.chat_template(), base_model);
  if (!st.ok()) return Refused(st, "spec.training");
  for (int i = 0; i < spec.round_training_size(); ++i) {
    v1::TrainingConfig merged = spec.training();
    merged.MergeFrom(spec.round_training(i).training());
    st = trainer.CheckConfig(merged, spec.chat_template(), /*init_checkpoint=*/"");
    if (!st.ok()) return Refused(st, absl::StrCat("spec.round_training[", i, "].training"));
  }
  return absl::OkStatus();
}

trainer::TrainConfig ToTrainConfig(const v1::TrainingConfig& c) {
  trainer::TrainConfig out = trainer::TrainConfigDefaults(c.has_loss() ? c.loss() : "dpo");
  if (c.has_beta()) out.beta = c.beta();
  if (c.has_learning_rate()) out.learning_rate = c.learning_rate();
  if (c.has_weight_decay()) out.weight_decay = c.weight_decay();
  if (c.has_epochs()) out.epochs = c.epochs();
  if (c.has_batch_size()) out.batch_size = c.batch_size();
  if (c.has_max_grad_norm()) out.max_grad_norm = c.max_grad_norm();
  if (c.has_nll_weight()) out.nll_weight = c.nll_weight();
  if (c.has_seed()) out.seed = c.seed();
  if (c.has_label_smoothing()) out.label_smoothing = c.label_smoothing();
  if (c.has_simpo_gamma()) out.simpo_gamma = c.simpo_gamma();
  if (c.has_mpo_alpha()) out.mpo_alpha = c.mpo_alpha();
  if (c.has_mpo_eta()) out.mpo_eta = c.mpo_eta();
  if (c.has_magnet_checkpoint()) out.magnet_checkpoint = c.magnet_checkpoint();
  if (c.has_prior_checkpoint()) out.prior_checkpoint = c.prior_checkpoint();
  if (c.has_optimizer()) out.optimizer = c.optimizer();
  if (c.has_lr_scheduler()) out.lr_scheduler = c.lr_scheduler();
  if (c.has_warmup_ratio()) out.warmup_ratio = c.warmup_ratio();
  if (c.has_warmup_steps()) out.warmup_steps = c.warmup_steps();
  if (c.has_gradient_accumulation_steps()) {
    out.gradient_accumulation_steps = c.gradient_accumulation_steps();
  }
  if (c.has_max_prompt_length()) out.max_prompt_length = c.max_prompt_length();
  if (c.has_max_length()) out.max_length = c.max_length();
  if (c.has_length_bucketing()) out.length_bucketing = c.length_bucketing();
  if (c.has_save_every_steps()) out.save_every_steps = c.save_every_steps();
  if (c.has_gradient_checkpointing()) out.gradient_checkpointing = c.gradient_checkpointing();
  if (c.has_mixed_precision() && !c.mixed_precision().empty()) {
    out.mixed_precision = c.mixed_precision();
  }
  return out;
}

}  // namespace spar::orchestrator
