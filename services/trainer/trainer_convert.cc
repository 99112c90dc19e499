#include "services/trainer/trainer_convert.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "orchestrator/training_config.h"
#include "trainer/groups_file.h"
#include "trainer/pairs_file.h"
#include "trainer/trainer.h"

namespace spar::services {

absl::StatusOr<trainer::TrainConfig> ToTrainConfig(const v1::TrainingConfig& c) {
  trainer::TrainConfig out = orchestrator::ToTrainConfig(c);  // the conversion CreateJob checks
  absl::Status st = trainer::Validate(out);
  if (st.ok()) st = trainer::CheckDevice(out);
  if (!st.ok()) return absl::InvalidArgumentError(absl::StrCat("config: ", st.message()));
  return out;
}

absl::Status ToTrainJob(const v1::StartTrainingRequest& request, trainer::TrainJob* job) {
  job->key = request.idempotency_key();
  job->init_checkpoint = request.init_checkpoint();
  job->output_checkpoint = request.output_checkpoint();
  SPAR_ASSIGN_OR_RETURN(job->config, ToTrainConfig(request.config()));
  job->config.chat_template = request.chat_template();
  if (trainer::IsListwiseLoss(job->config.loss)) {
    SPAR_ASSIGN_OR_RETURN(job->groups,
                          trainer::ReadGroupsFile(request.groups_path(), "groups_path"));
  } else {
    SPAR_ASSIGN_OR_RETURN(job->pairs, trainer::ReadPairsFile(request.pairs_path(), "pairs_path"));
  }
  return absl::OkStatus();
}

namespace {

v1::TrainingState ToProto(trainer::RunState state) {
  switch (state) {
    case trainer::RunState::kRunning:
      return v1::TRAINING_STATE_RUNNING;
    case trainer::RunState::kSucceeded:
      return v1::TRAINING_STATE_SUCCEEDED;
    case trainer::RunState::kFailed:
      return v1::TRAINING_STATE_FAILED;
    case trainer::RunState::kCancelled:
      return v1::TRAINING_STATE_CANCELLED;
  }
  return v1::TRAINING_STATE_UNSPECIFIED;
}

}  // namespace

v1::TrainingEvent ToProto(const trainer::RunEvent& e) {
  v1::TrainingEvent ev;
  ev.set_run_id(e.run_id);
  ev.set_state(ToProto(e.state));
  ev.set_step(e.step);
  ev.set_total_steps(e.total_steps);
  ev.set_loss(e.loss);
  ev.set_tokens_per_second(e.tokens_per_second);
  ev.set_resumed_from_step(e.resumed_from_step);
  for (const auto& [k, v] : e.metrics) (*ev.mutable_metrics())[k] = v;
  ev.set_error(e.error);
  ev.set_error_code(e.error_code);
  return ev;
}

}  // namespace spar::services
