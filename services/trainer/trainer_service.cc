#include "services/trainer/trainer_service.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "model/chat_template.h"
#include "model/policy.h"
#include "services/common/status_util.h"
#include "services/common/stream_sink.h"
#include "services/trainer/trainer_convert.h"
#include "trainer/process_group.h"
#include "trainer/trainer.h"

namespace spar::services {
namespace {

// Resolves every path of the request inside the service's roots (INVALID_ARGUMENT naming the
// field otherwise) and refuses an output that exists and is not a checkpoint Spar wrote.
absl::Status ConfinePaths(const AccessPolicy& access, v1::StartTrainingRequest& r) {
  SPAR_ASSIGN_OR_RETURN(std::string init, access.Confine(r.init_checkpoint(), "init_checkpoint"));
  SPAR_ASSIGN_OR_RETURN(std::string out,
                        access.Confine(r.output_checkpoint(), "output_checkpoint"));
  r.set_init_checkpoint(init);
  r.set_output_checkpoint(out);
  if (!r.pairs_path().empty()) {
    SPAR_ASSIGN_OR_RETURN(std::string pairs, access.Confine(r.pairs_path(), "pairs_path"));
    r.set_pairs_path(pairs);
  }
  if (!r.groups_path().empty()) {
    SPAR_ASSIGN_OR_RETURN(std::string groups, access.Confine(r.groups_path(), "groups_path"));
    r.set_groups_path(groups);
  }
  if (r.config().has_magnet_checkpoint() && !r.config().magnet_checkpoint().empty()) {
    SPAR_ASSIGN_OR_RETURN(std::string magnet, access.Confine(r.config().magnet_checkpoint(),
                                                             "config.magnet_checkpoint"));
    r.mutable_config()->set_magnet_checkpoint(magnet);
  }
  if (r.config().has_prior_checkpoint() && !r.config().prior_checkpoint().empty()) {
    SPAR_ASSIGN_OR_RETURN(std::string prior,
                          access.Confine(r.config().prior_checkpoint(), "config.prior_checkpoint"));
    r.mutable_config()->set_prior_checkpoint(prior);
  }
  if (PathExists(out) && !model::IsSparCheckpoint(out)) {
    return absl::FailedPreconditionError(
        absl::StrCat("output_checkpoint: \"", r.output_checkpoint(),
                     "\" exists and is not a checkpoint written by Spar; refusing to replace it"));
  }
  const std::string state_dir = absl::StrCat(out, ".train_state");
  // Spar's train_state holds state.pt (or, after a crash mid-write, state.pt.tmp), or nothing
  // (a first save that failed, e.g. on a full disk, removes its temp file).
  auto listed = ListDir(state_dir);
  const bool empty = listed.ok() && listed->empty();
  if (PathExists(state_dir) && !empty && !PathExists(JoinPath(state_dir, "state.pt")) &&
      !PathExists(JoinPath(state_dir, "state.pt.tmp"))) {
    return absl::FailedPreconditionError(absl::StrCat("output_checkpoint: \"", state_dir,
                                                      "\" exists and is not Spar's train_state"));
  }
  return absl::OkStatus();
}

// StartTrainingRequest.validate_only: the config and chat template, on this trainer's devices;
// and, when init_checkpoint is set, what training will require of that checkpoint (without its
// weights).
absl::Status ValidateConfigOnly(const AccessPolicy& access, const v1::StartTrainingRequest& r) {
  if (absl::Status st = model::ValidateChatTemplateSetting(r.chat_template()); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("chat_template: ", st.message()));
  }
  SPAR_RETURN_IF_ERROR(ToTrainConfig(r.config()).status());
  if (r.init_checkpoint().empty()) return absl::OkStatus();
  SPAR_ASSIGN_OR_RETURN(std::string init, access.Confine(r.init_checkpoint(), "init_checkpoint"));
  return trainer::CheckInitCheckpoint(init);
}

absl::Status ValidateRequest(const v1::StartTrainingRequest& r) {
  if (r.idempotency_key().empty()) return absl::InvalidArgumentError("idempotency_key is required");
  if (r.init_checkpoint().empty()) return absl::InvalidArgumentError("init_checkpoint is required");
  if (!PathExists(JoinPath(r.init_checkpoint(), "config.json"))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "init_checkpoint: no checkpoint at \"", r.init_checkpoint(), "\" (config.json missing)"));
  }
  // A listwise loss trains on groups_path, every other loss on pairs_path.
  const bool listwise = trainer::IsListwiseLoss(r.config().has_loss() ? r.config().loss() : "dpo");
  const char* field = listwise ? "groups_path" : "pairs_path";
  const char* other = listwise ? "pairs_path" : "groups_path";
  const std::string& path = listwise ? r.groups_path() : r.pairs_path();
  if (!(listwise ? r.pairs_path() : r.groups_path()).empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        other, ": must be empty for loss \"", r.config().loss(), "\" (it trains on ", field, ")"));
  }
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat(field, " is required"));
  if (!PathExists(path)) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": not found: \"", path, "\""));
  }
  if (r.output_checkpoint().empty()) {
    return absl::InvalidArgumentError("output_checkpoint is required");
  }
  if (absl::Status st = model::ValidateChatTemplateSetting(r.chat_template()); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("chat_template: ", st.message()));
  }
  return ToTrainConfig(r.config()).status();
}

}  // namespace

absl::Status RunTrainerWorker(trainer::ProcessGroup& group) {
  return trainer::RunGroupWorker(group, [](const std::string& bytes, trainer::TrainJob* job) {
    v1::StartTrainingRequest request;
    const bool parsed = request.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
    job->key = request.idempotency_key();
    if (!parsed) return absl::InternalError("malformed control message");
    return ToTrainJob(request, job);
  });
}

TrainerService::TrainerService(metrics::Registry& registry, trainer::ProcessGroup* group,
                               AccessPolicy access)
    : access_(std::move(access)),
      rpc_metrics_(registry, "trainer"),
      steps_(registry.AddCounter("spar_trainer_steps_total", "Optimizer steps taken.").Add({})),
      tokens_(registry.AddCounter("spar_trainer_tokens_total", "Tokens trained on (approximate).")
                  .Add({})),
      loss_(registry.AddGauge("spar_trainer_loss", "Loss of the latest optimizer step.").Add({})),
      reward_accuracy_(registry
                           .AddGauge("spar_trainer_reward_accuracy_ratio",
                                     "rewards/accuracies of the latest step.")
                           .Add({})),
      reward_margin_(
          registry.AddGauge("spar_trainer_reward_margin", "rewards/margins of the latest step.")
              .Add({})),
      tokens_per_second_(
          registry
              .AddGauge("spar_trainer_tokens_per_second", "Training throughput of the latest step.")
              .Add({})),
      running_(
          registry.AddGauge("spar_trainer_runs_running", "Training runs in progress.").Add({})),
      runs_(registry.AddCounter("spar_trainer_runs_total", "Training runs ended, by final state.")),
      resumed_runs_(registry
                        .AddCounter("spar_trainer_resumed_runs_total",
                                    "Runs that continued from a train_state left by an earlier "
                                    "(killed) trainer instead of starting at step 0.")
                        .Add({})),
      world_size_(registry
                      .AddGauge("spar_trainer_world_size",
                                "Processes in the trainer's data-parallel group (1 = single).")
                      .Add({})),
      group_healthy_(registry
                         .AddGauge("spar_trainer_group_healthy",
                                   "1 while the data-parallel group is usable; 0 after a "
                                   "collective failed (restart every rank).")
                         .Add({})),
      fault_hook_(trainer::FaultHook::FromEnv()),
      group_(group) {
  for (const char* s : {"succeeded", "failed", "cancelled"}) runs_.Add({{"state", s}});
  world_size_.Set(group_ ? group_->world_size() : 1);
  group_healthy_.Set(1);
}

TrainerService::~TrainerService() { Shutdown(); }

void TrainerService::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutting_down_ = true;
    registry_.CancelAll();
  }
  workers_.JoinAll();
  if (group_ != nullptr) {
    std::lock_guard<std::mutex> lock(group_mu_);
    if (!group_closed_ && group_->healthy()) {
      absl::Status st = trainer::SendShutdownCommand(*group_);
      if (!st.ok()) SPAR_LOG(Warning) << "trainer: telling the other ranks to stop: " << st;
    }
    group_closed_ = true;
  }
}

grpc::ServerUnaryReactor* TrainerService::StartTraining(grpc::CallbackServerContext* ctx,
                                                        const v1::StartTrainingRequest* request,
                                                        v1::StartTrainingResponse* response) {
  absl::Time started = absl::Now();
  if (auto* denied = RejectUnauthorized(ctx, access_, rpc_metrics_, "StartTraining", started)) {
    return denied;
  }
  auto* reactor = ctx->DefaultReactor();
  v1::StartTrainingRequest confined = *request;
  // Confined first: a path outside the roots is refused before anything looks at it.
  absl::Status st = request->validate_only() ? ValidateConfigOnly(access_, *request)
                                             : ConfinePaths(access_, confined);
  if (st.ok() && request->validate_only()) {
    rpc_metrics_.Record("StartTraining", "OK", started);
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  if (st.ok()) st = ValidateRequest(confined);
  if (!st.ok()) {
    grpc::Status g = ToGrpcStatus(st);
    rpc_metrics_.Record("StartTraining", GrpcCodeName(g.error_code()), started);
    reactor->Finish(g);
    return reactor;
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (shutting_down_) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "trainer is shutting down"));
    return reactor;
  }
  if (group_ != nullptr && !group_->healthy()) {
    rpc_metrics_.Record("StartTraining", "UNAVAILABLE", started);
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                 "trainer: the data-parallel group is broken; restart every rank"));
    return reactor;
  }
  trainer::RunRegistry::Started started_run = registry_.StartOrAttach(request->idempotency_key());
  response->set_run_id(started_run.run->run_id());
  response->set_attached(started_run.attached);
  if (!started_run.attached) {
    running_.Increment();
    workers_.Spawn([this, run = started_run.run, req = std::move(confined), original = *request] {
      Execute(run, req, original);
    });
  }
  rpc_metrics_.Record("StartTraining", "OK", started);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

void TrainerService::Execute(RunPtr run, v1::StartTrainingRequest request,
                             const v1::StartTrainingRequest& as_sent) {
  // With a group: one run at a time, and the other ranks learn the request first.
  std::unique_lock<std::mutex> group_lock(group_mu_, std::defer_lock);
  if (group_ != nullptr) group_lock.lock();
  absl::StatusOr<trainer::TrainResult> result = Train(run, request, as_sent);
  const trainer::RunEvent ev = trainer::FinalEvent(run->run_id(), result);
  CountFinal(*run, ev, result.status());
  if (group_ != nullptr) {
    group_healthy_.Set(group_->healthy() ? 1 : 0);
    group_lock.unlock();
  }
  running_.Decrement();
  // A failed or cancelled run can be started again with the same key.
  if (!result.ok()) registry_.ReleaseKey(run->key());
  run->Publish(ev, true);
}

absl::StatusOr<trainer::TrainResult> TrainerService::Train(
    const RunPtr& run, const v1::StartTrainingRequest& request,
    const v1::StartTrainingRequest& as_sent) {
  if (run->cancelled()) return absl::CancelledError("training cancelled before it started");
  trainer::TrainJob job;
  SPAR_RETURN_IF_ERROR(ToTrainJob(request, &job));
  if (group_ != nullptr) {
    if (group_closed_ || !group_->healthy()) {
      return absl::UnavailableError(
          "trainer: the data-parallel group is broken or closed; restart every rank");
    }
    // The paths as the client sent them: each rank resolves them on its own host.
    SPAR_RETURN_IF_ERROR(trainer::SendTrainCommand(*group_, as_sent.SerializeAsString()));
    job.config.distributed.group = group_;
  }
  bool counted_resume = false;
  return trainer::RunTrainJob(
      job, [&](const trainer::TrainProgress& p) { return OnProgress(run, p, &counted_resume); });
}

bool TrainerService::OnProgress(const RunPtr& run, const trainer::TrainProgress& p,
                                bool* counted_resume) {
  if (p.resumed_from_step > 0 && !*counted_resume) {
    *counted_resume = true;
    resumed_runs_.Increment();
    SPAR_LOG(Info) << "training " << run->key() << " resumed from train_state at step "
                   << p.resumed_from_step;
  }
  steps_.Increment();
  loss_.Set(p.loss);
  tokens_per_second_.Set(p.tokens_per_second);
  if (p.metrics.count("rewards/accuracies")) {
    reward_accuracy_.Set(p.metrics.at("rewards/accuracies"));
  }
  if (p.metrics.count("rewards/margins")) reward_margin_.Set(p.metrics.at("rewards/margins"));
  if (p.metrics.count("tokens")) tokens_.Increment(p.metrics.at("tokens"));
  run->Publish(trainer::ProgressEvent(run->run_id(), p), false);
  fault_hook_.AfterStep(p.step);
  return !run->cancelled();
}

void TrainerService::CountFinal(const trainer::TrainingRunEntry& run, const trainer::RunEvent& ev,
                                const absl::Status& status) {
  switch (ev.state) {
    case trainer::RunState::kSucceeded:
      runs_.Add({{"state", "succeeded"}}).Increment();
      break;
    case trainer::RunState::kCancelled:
      runs_.Add({{"state", "cancelled"}}).Increment();
      break;
    default:
      runs_.Add({{"state", "failed"}}).Increment();
      SPAR_LOG(Error) << "training " << run.key() << " failed: " << status;
  }
}

grpc::ServerWriteReactor<v1::TrainingEvent>* TrainerService::WatchTraining(
    grpc::CallbackServerContext* ctx, const v1::WatchTrainingRequest* request) {
  absl::Time started = absl::Now();
  auto [reactor, sink] = StreamSink<v1::TrainingEvent>::Create();
  if (RejectUnauthorizedStream(ctx, access_, rpc_metrics_, "WatchTraining", started, *sink)) {
    return reactor;
  }
  RunPtr run = registry_.Find(request->run_id());
  if (run == nullptr) {
    rpc_metrics_.Record("WatchTraining", "NOT_FOUND", started);
    sink->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND,
                              absl::StrCat("run_id: no training run \"", request->run_id(), "\"")));
    return reactor;
  }
  workers_.Spawn([this, run, sink = sink, started] {
    int64_t seen = -1;
    while (true) {
      trainer::RunEvent ev;
      bool done;
      if (!run->WaitNewer(&seen, std::chrono::milliseconds(200), &ev, &done)) {
        if (sink->cancelled()) break;
        continue;
      }
      if (!sink->Write(ToProto(ev))) break;
      if (done) break;
    }
    bool cancelled = sink->cancelled();
    rpc_metrics_.Record("WatchTraining", cancelled ? "CANCELLED" : "OK", started);
    sink->Finish(cancelled ? grpc::Status::CANCELLED : grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* TrainerService::CancelTraining(grpc::CallbackServerContext* ctx,
                                                         const v1::CancelTrainingRequest* request,
                                                         v1::CancelTrainingResponse*) {
  absl::Time started = absl::Now();
  if (auto* denied = RejectUnauthorized(ctx, access_, rpc_metrics_, "CancelTraining", started)) {
    return denied;
  }
  auto* reactor = ctx->DefaultReactor();
  RunPtr run = registry_.Find(request->run_id());
  if (run == nullptr) {
    rpc_metrics_.Record("CancelTraining", "NOT_FOUND", started);
    reactor->Finish(
        grpc::Status(grpc::StatusCode::NOT_FOUND,
                     absl::StrCat("run_id: no training run \"", request->run_id(), "\"")));
    return reactor;
  }
  run->Cancel();
  rpc_metrics_.Record("CancelTraining", "OK", started);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace spar::services
