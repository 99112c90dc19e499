// A job's training settings as the trainer sees them: the spec's TrainingConfig merged with a
// round's override (RoundTrainingConfig, what the train stage sends), and the one conversion of a
// TrainingConfig message to trainer::TrainConfig (used by ValidateJobSpec at CreateJob and by the
// Trainer service for every StartTraining), so both check it with trainer::Validate. Torch-free.
#pragma once

#include "absl/status/status.h"
#include "orchestrator/ports.h"
#include "spar/v1/orchestrator.pb.h"
#include "spar/v1/trainer.pb.h"
#include "trainer/train_config.h"

namespace spar::orchestrator {

// spec.training with the fields set in round `round`'s round_training entries merged over it
// (set fields win, in list order). No seed mixing and no magnet: the train stage adds those.
v1::TrainingConfig RoundTrainingConfig(const v1::JobSpec& spec, int round);

// Asks the trainer (TrainerPort::CheckConfig: its rules and devices, e.g. bf16 needs CUDA) about
// every training config the job's rounds will send: spec.training and each round_training
// override merged over it; and what training requires of the base model (`base_model`, the
// resolved directory: config and tokenizer, not the weights). InvalidArgument naming the spec
// field (spec.training..., spec.base_model) when the trainer refuses one.
absl::Status CheckTrainingOnTrainer(const v1::JobSpec& spec, const std::string& base_model,
                                    TrainerPort& trainer);

// The trainer's config for `c`: unset fields take trainer::TrainConfigDefaults(loss) (loss
// default "dpo"). Not validated: call trainer::Validate on the result.
trainer::TrainConfig ToTrainConfig(const v1::TrainingConfig& c);

}  // namespace spar::orchestrator
