// Proto <-> trainer/ plain structs for the Trainer service: the validated TrainConfig of a
// request, the TrainJob it describes, and RunEvent as TrainingEvent.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "spar/v1/trainer.pb.h"
#include "trainer/group_control.h"
#include "trainer/run_registry.h"
#include "trainer/train_config.h"

namespace spar::services {

// orchestrator::ToTrainConfig (the conversion CreateJob checks) checked by trainer::Validate and
// trainer::CheckDevice; InvalidArgument "config: <the trainer's message>" otherwise.
absl::StatusOr<trainer::TrainConfig> ToTrainConfig(const v1::TrainingConfig& c);

// What every rank needs to train `request`: its config (with the chat template) and the pairs
// read from pairs_path (or, for a listwise loss, the groups read from groups_path). job->key is set
// first, so it names the request even on failure.
absl::Status ToTrainJob(const v1::StartTrainingRequest& request, trainer::TrainJob* job);

v1::TrainingEvent ToProto(const trainer::RunEvent& event);

}  // namespace spar::services
