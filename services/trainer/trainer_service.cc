#include "services/trainer/trainer_service.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <optional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "model/policy.h"
#include "model/chat_template.h"
#include "orchestrator/training_config.h"
#include "services/common/status_util.h"
#include "services/common/stream_sink.h"
#include "trainer/process_group.h"
#include "trainer/trainer.h"

namespace spar::services {

struct TrainerService::Run {
  std::string run_id;
  std::string key;
  std::atomic<bool> cancel{false};
  std::mutex mu;
  std::condition_variable cv;
  v1::TrainingEvent last;  // guarded by mu
  int64_t version = 0;     // bumped on every new event
  bool done = false;
};

namespace {

absl::StatusOr<trainer::TrainConfig> ToTrainConfig(const v1::TrainingConfig& c) {
  trainer::TrainConfig out = orchestrator::ToTrainConfig(c);  // the conversion CreateJob checks
  absl::Status st = trainer::Validate(out);
  if (st.ok()) st = trainer::CheckDevice(out);
  if (!st.ok()) return absl::InvalidArgumentError(absl::StrCat("config: ", st.message()));
  return out;
}

// Resolves every path of the request inside the service's roots (INVALID_ARGUMENT naming the
// field otherwise) and refuses an output that exists and is not a checkpoint Spar wrote.
absl::Status ConfinePaths(const AccessPolicy& access, v1::StartTrainingRequest& r) {
  SPAR_ASSIGN_OR_RETURN(std::string init, access.Confine(r.init_checkpoint(), "init_checkpoint"));
  SPAR_ASSIGN_OR_RETURN(std::string pairs, access.Confine(r.pairs_path(), "pairs_path"));
  SPAR_ASSIGN_OR_RETURN(std::string out, access.Confine(r.output_checkpoint(), "output_checkpoint"));
  r.set_init_checkpoint(init);
  r.set_pairs_path(pairs);
  r.set_output_checkpoint(out);
  if (r.config().has_magnet_checkpoint() && !r.config().magnet_checkpoint().empty()) {
    SPAR_ASSIGN_OR_RETURN(std::string magnet, access.Confine(r.config().magnet_checkpoint(),
                                                             "config.magnet_checkpoint"));
    r.mutable_config()->set_magnet_checkpoint(magnet);
  }
  if (PathExists(out) && !model::IsSparCheckpoint(out)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "output_checkpoint: \"", r.output_checkpoint(),
        "\" exists and is not a checkpoint written by Spar; refusing to replace it"));
  }
  const std::string state_dir = absl::StrCat(out, ".train_state");
  // Spar's train_state holds state.pt (or, after a crash mid-write, state.pt.tmp), or nothing
  // (a first save that failed, e.g. on a full disk, removes its temp file).
  auto listed = ListDir(state_dir);
  const bool empty = listed.ok() && listed->empty();
  if (PathExists(state_dir) && !empty && !PathExists(JoinPath(state_dir, "state.pt")) &&
      !PathExists(JoinPath(state_dir, "state.pt.tmp"))) {
    return absl::FailedPreconditionError(absl::StrCat(
        "output_checkpoint: \"", state_dir, "\" exists and is not Spar's train_state"));
  }
  return absl::OkStatus();
}

// StartTrainingRequest.validate_only: the config and chat template, on this trainer's devices.
absl::Status ValidateConfigOnly(const v1::StartTrainingRequest& r) {
  if (absl::Status st = model::ValidateChatTemplateSetting(r.chat_template()); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("chat_template: ", st.message()));
  }
  return ToTrainConfig(r.config()).status();
}

absl::Status ValidateRequest(const v1::StartTrainingRequest& r) {
  if (r.idempotency_key().empty()) return absl::InvalidArgumentError("idempotency_key is required");
  if (r.init_checkpoint().empty()) return absl::InvalidArgumentError("init_checkpoint is required");
  if (!PathExists(JoinPath(r.init_checkpoint(), "config.json"))) {
    return absl::InvalidArgumentError(absl::StrCat("init_checkpoint: no checkpoint at \"",
                                                   r.init_checkpoint(), "\" (config.json missing)"));
  }
  if (r.pairs_path().empty()) return absl::InvalidArgumentError("pairs_path is required");
  if (!PathExists(r.pairs_path())) {
    return absl::InvalidArgumentError(absl::StrCat("pairs_path: not found: \"", r.pairs_path(), "\""));
  }
  if (r.output_checkpoint().empty()) {
    return absl::InvalidArgumentError("output_checkpoint is required");
  }
  if (absl::Status st = model::ValidateChatTemplateSetting(r.chat_template()); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("chat_template: ", st.message()));
  }
  return ToTrainConfig(r.config()).status();
}

absl::StatusOr<std::vector<trainer::PreferencePair>> ReadPairs(const std::string& path) {
  auto rows = ReadJsonl(path);
  if (!rows.ok()) return rows.status();
  std::vector<trainer::PreferencePair> pairs;
  for (size_t i = 0; i < rows->size(); ++i) {
    const nlohmann::json& r = (*rows)[i];
    for (const char* f : {"prompt", "chosen", "rejected"}) {
      if (!r.contains(f) || !r[f].is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat("pairs_path: line ", i + 1, ": field \"", f, "\" missing or not a string"));
      }
    }
    trainer::PreferencePair pair;
    pair.prompt = r["prompt"].get<std::string>();
    pair.chosen = r["chosen"].get<std::string>();
    pair.rejected = r["rejected"].get<std::string>();
    // Optional judge data (dno / sppo / mpo): soft label and win rates vs pi_t.
    for (auto [field, slot] : {std::pair<const char*, std::optional<double>*>{"p", &pair.p},
                               {"chosen_win_rate", &pair.chosen_win_rate},
                               {"rejected_win_rate", &pair.rejected_win_rate}}) {
      if (!r.contains(field) || r[field].is_null()) continue;
      if (!r[field].is_number()) {
        return absl::InvalidArgumentError(
            absl::StrCat("pairs_path: line ", i + 1, ": field \"", field, "\" is not a number"));
      }
      *slot = r[field].get<double>();
    }
    // Truncated responses (absent = finished, as in files written before the field existed).
    for (auto [field, slot] :
         {std::pair<const char*, bool*>{"chosen_finished", &pair.chosen_finished},
          {"rejected_finished", &pair.rejected_finished}}) {
      if (!r.contains(field) || r[field].is_null()) continue;
      if (!r[field].is_boolean()) {
        return absl::InvalidArgumentError(
            absl::StrCat("pairs_path: line ", i + 1, ": field \"", field, "\" is not a boolean"));
      }
      *slot = r[field].get<bool>();
    }
    pairs.push_back(std::move(pair));
  }
  return pairs;
}

// Control messages from rank 0 to the other ranks (ProcessGroup::BroadcastFromRank0).
constexpr char kCommandTrain = 'T';     // followed by a serialized StartTrainingRequest
constexpr char kCommandShutdown = 'S';  // the service is stopping: workers exit
constexpr absl::Duration kControlTimeout = absl::Seconds(120);

// What every rank needs to train one request.
struct Prepared {
  trainer::TrainConfig config;
  std::vector<trainer::PreferencePair> pairs;
};

absl::StatusOr<Prepared> Prepare(const v1::StartTrainingRequest& request) {
  Prepared p;
  auto config = ToTrainConfig(request.config());
  if (!config.ok()) return config.status();
  p.config = *std::move(config);
  p.config.chat_template = request.chat_template();
  auto pairs = ReadPairs(request.pairs_path());
  if (!pairs.ok()) return pairs.status();
  p.pairs = *std::move(pairs);
  return p;
}

}  // namespace

absl::Status RunTrainerWorker(trainer::ProcessGroup& group) {
  const std::string who = absl::StrCat("trainer rank ", group.rank(), "/", group.world_size());
  SPAR_LOG(Info) << who << ": waiting for rank 0's requests";
  while (true) {
    std::string message;
    absl::Status st = group.BroadcastFromRank0(&message, absl::InfiniteDuration());
    if (!st.ok()) return absl::UnavailableError(absl::StrCat(who, ": lost the group: ", st.message()));
    if (message.size() == 1 && message[0] == kCommandShutdown) {
      SPAR_LOG(Info) << who << ": rank 0 is shutting down";
      return absl::OkStatus();
    }
    v1::StartTrainingRequest request;
    absl::StatusOr<Prepared> prepared = absl::InternalError("malformed control message");
    if (!message.empty() && message[0] == kCommandTrain &&
        request.ParseFromArray(message.data() + 1, static_cast<int>(message.size() - 1))) {
      prepared = Prepare(request);
    }
    if (!prepared.ok()) {
      SPAR_LOG(Error) << who << ": cannot train " << request.idempotency_key() << ": "
                      << prepared.status();
    }
    // Every rank says whether it can train this request; all skip it if one cannot.
    absl::StatusOr<int64_t> failed = group.AllReduceSum(prepared.ok() ? 0 : 1);
    if (!failed.ok()) {
      return absl::UnavailableError(absl::StrCat(who, ": lost the group: ", failed.status().message()));
    }
    if (*failed > 0) continue;
    prepared->config.distributed.group = &group;
    SPAR_LOG(Info) << who << ": training " << request.idempotency_key();
    absl::StatusOr<trainer::TrainResult> result =
        trainer::TrainDpo(request.init_checkpoint(), prepared->pairs, prepared->config,
                          request.output_checkpoint());
    if (result.ok()) {
      SPAR_LOG(Info) << who << ": " << request.idempotency_key() << " done, " << result->steps
                     << " steps";
    } else {
      SPAR_LOG(Warning) << who << ": " << request.idempotency_key() << ": " << result.status();
    }
    if (!group.healthy()) {
      return absl::UnavailableError(
          absl::StrCat(who, ": the group broke during training: ", result.status().message()));
    }
  }
}

TrainerService::TrainerService(metrics::Registry& registry, trainer::ProcessGroup* group,
                               AccessPolicy access)
    : access_(std::move(access)),
      rpc_metrics_(registry, "trainer"),
      steps_(registry.AddCounter("spar_trainer_steps_total", "Optimizer steps taken.").Add({})),
      tokens_(registry.AddCounter("spar_trainer_tokens_total", "Tokens trained on (approximate).")
                  .Add({})),
      loss_(registry.AddGauge("spar_trainer_loss", "Loss of the latest optimizer step.").Add({})),
      reward_accuracy_(registry.AddGauge("spar_trainer_reward_accuracy_ratio",
                                         "rewards/accuracies of the latest step.")
                           .Add({})),
      reward_margin_(registry.AddGauge("spar_trainer_reward_margin",
                                       "rewards/margins of the latest step.")
                         .Add({})),
      tokens_per_second_(registry.AddGauge("spar_trainer_tokens_per_second",
                                           "Training throughput of the latest step.")
                             .Add({})),
      running_(registry.AddGauge("spar_trainer_runs_running", "Training runs in progress.").Add({})),
      runs_(registry.AddCounter("spar_trainer_runs_total", "Training runs ended, by final state.")),
      resumed_runs_(registry
                        .AddCounter("spar_trainer_resumed_runs_total",
                                    "Runs that continued from a train_state left by an earlier "
                                    "(killed) trainer instead of starting at step 0.")
                        .Add({})),
      world_size_(registry.AddGauge("spar_trainer_world_size",
                                    "Processes in the trainer's data-parallel group (1 = single).")
                      .Add({})),
      group_healthy_(registry.AddGauge("spar_trainer_group_healthy",
                                       "1 while the data-parallel group is usable; 0 after a "
                                       "collective failed (restart every rank).")
                         .Add({})),
      fault_kill_after_step_([] {
        const char* v = std::getenv("SPAR_TRAINER_FAULT_KILL_AFTER_STEP");
        int n = 0;
        return v != nullptr && absl::SimpleAtoi(v, &n) ? n : 0;
      }()),
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
    for (auto& [id, run] : runs_by_id_) run->cancel.store(true);
  }
  workers_.JoinAll();
  if (group_ != nullptr) {
    std::lock_guard<std::mutex> lock(group_mu_);
    if (!group_closed_ && group_->healthy()) {
      std::string message(1, kCommandShutdown);
      absl::Status st = group_->BroadcastFromRank0(&message, kControlTimeout);
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
  absl::Status st = request->validate_only() ? ValidateConfigOnly(*request)
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
  auto it = runs_by_key_.find(request->idempotency_key());
  if (it != runs_by_key_.end()) {
    response->set_run_id(it->second->run_id);
    response->set_attached(true);
  } else {
    auto run = std::make_shared<Run>();
    run->key = request->idempotency_key();
    run->run_id = absl::StrCat("run-", runs_by_id_.size() + 1, "-",
                               absl::ToUnixMillis(absl::Now()) % 100000);
    run->last.set_run_id(run->run_id);
    run->last.set_state(v1::TRAINING_STATE_RUNNING);
    runs_by_key_[run->key] = run;
    runs_by_id_[run->run_id] = run;
    response->set_run_id(run->run_id);
    response->set_attached(false);
    running_.Increment();
    workers_.Spawn([this, run, req = std::move(confined), original = *request] {
      Execute(run, req, original);
    });
  }
  rpc_metrics_.Record("StartTraining", "OK", started);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

void TrainerService::Execute(std::shared_ptr<Run> run, v1::StartTrainingRequest request,
                             const v1::StartTrainingRequest& as_sent) {
  auto publish = [&](const v1::TrainingEvent& ev, bool done) {
    std::lock_guard<std::mutex> lock(run->mu);
    run->last = ev;
    run->version++;
    run->done = done;
    run->cv.notify_all();
  };
  bool counted_resume = false;
  // With a group: one run at a time, and the other ranks learn the request first.
  std::unique_lock<std::mutex> group_lock(group_mu_, std::defer_lock);
  if (group_ != nullptr) group_lock.lock();
  absl::StatusOr<trainer::TrainResult> result = [&]() -> absl::StatusOr<trainer::TrainResult> {
    if (run->cancel.load()) return absl::CancelledError("training cancelled before it started");
    absl::StatusOr<Prepared> prepared = Prepare(request);
    if (!prepared.ok()) return prepared.status();
    if (group_ != nullptr) {
      if (group_closed_ || !group_->healthy()) {
        return absl::UnavailableError(
            "trainer: the data-parallel group is broken or closed; restart every rank");
      }
      // The paths as the client sent them: each rank resolves them on its own host.
      std::string message = std::string(1, kCommandTrain) + as_sent.SerializeAsString();
      absl::Status st = group_->BroadcastFromRank0(&message, kControlTimeout);
      absl::StatusOr<int64_t> failed =
          st.ok() ? group_->AllReduceSum(0) : absl::StatusOr<int64_t>(st);
      if (!failed.ok()) {
        return absl::UnavailableError(
            absl::StrCat("trainer: sending the request to the other ranks: ",
                         failed.status().message()));
      }
      if (*failed > 0) {
        return absl::FailedPreconditionError(absl::StrCat(
            *failed, " other rank(s) cannot read the request's inputs (see their logs)"));
      }
      prepared->config.distributed.group = group_;
    }
    return trainer::TrainDpo(
        request.init_checkpoint(), prepared->pairs, prepared->config, request.output_checkpoint(),
        [&](const trainer::TrainProgress& p) {
          v1::TrainingEvent ev;
          ev.set_run_id(run->run_id);
          ev.set_state(v1::TRAINING_STATE_RUNNING);
          ev.set_step(p.step);
          ev.set_total_steps(p.total_steps);
          ev.set_loss(p.loss);
          ev.set_tokens_per_second(p.tokens_per_second);
          ev.set_resumed_from_step(p.resumed_from_step);
          for (const auto& [k, v] : p.metrics) (*ev.mutable_metrics())[k] = v;
          if (p.resumed_from_step > 0 && !counted_resume) {
            counted_resume = true;
            resumed_runs_.Increment();
            SPAR_LOG(Info) << "training " << run->key << " resumed from train_state at step "
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
          publish(ev, false);
          if (fault_kill_after_step_ > 0 && p.step == fault_kill_after_step_) {
            SPAR_LOG(Warning) << "fault injection: SIGKILL after step " << p.step;
            ::kill(::getpid(), SIGKILL);
          }
          return !run->cancel.load();
        });
  }();
  v1::TrainingEvent ev;
  ev.set_run_id(run->run_id);
  if (result.ok()) {
    ev.set_state(v1::TRAINING_STATE_SUCCEEDED);
    ev.set_step(result->steps);
    ev.set_total_steps(result->steps);
    ev.set_loss(result->final_loss);
    ev.set_resumed_from_step(result->resumed_from_step);
    for (const auto& [k, v] : result->metrics) (*ev.mutable_metrics())[k] = v;
    runs_.Add({{"state", "succeeded"}}).Increment();
  } else if (absl::IsCancelled(result.status())) {
    ev.set_state(v1::TRAINING_STATE_CANCELLED);
    ev.set_error(result.status().ToString());
    runs_.Add({{"state", "cancelled"}}).Increment();
  } else {
    ev.set_state(v1::TRAINING_STATE_FAILED);
    ev.set_error(result.status().ToString());
    ev.set_error_code(static_cast<int32_t>(result.status().code()));
    runs_.Add({{"state", "failed"}}).Increment();
    SPAR_LOG(Error) << "training " << run->key << " failed: " << result.status();
  }
  if (group_ != nullptr) {
    group_healthy_.Set(group_->healthy() ? 1 : 0);
    group_lock.unlock();
  }
  running_.Decrement();
  if (!result.ok()) {
    // A failed or cancelled run can be started again with the same key.
    std::lock_guard<std::mutex> lock(mu_);
    runs_by_key_.erase(run->key);
  }
  publish(ev, true);
}

grpc::ServerWriteReactor<v1::TrainingEvent>* TrainerService::WatchTraining(
    grpc::CallbackServerContext* ctx, const v1::WatchTrainingRequest* request) {
  absl::Time started = absl::Now();
  auto [reactor, sink] = StreamSink<v1::TrainingEvent>::Create();
  if (RejectUnauthorizedStream(ctx, access_, rpc_metrics_, "WatchTraining", started, *sink)) {
    return reactor;
  }
  std::shared_ptr<Run> run;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = runs_by_id_.find(request->run_id());
    if (it != runs_by_id_.end()) run = it->second;
  }
  if (run == nullptr) {
    rpc_metrics_.Record("WatchTraining", "NOT_FOUND", started);
    sink->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND,
                              absl::StrCat("run_id: no training run \"", request->run_id(), "\"")));
    return reactor;
  }
  workers_.Spawn([this, run, sink = sink, started] {
    int64_t seen = -1;
    while (true) {
      v1::TrainingEvent ev;
      bool done;
      {
        std::unique_lock<std::mutex> lock(run->mu);
        run->cv.wait_for(lock, std::chrono::milliseconds(200),
                         [&] { return run->version != seen; });
        if (run->version == seen) {
          if (sink->cancelled()) break;
          continue;
        }
        seen = run->version;
        ev = run->last;
        done = run->done;
      }
      if (!sink->Write(ev)) break;
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
  std::lock_guard<std::mutex> lock(mu_);
  auto it = runs_by_id_.find(request->run_id());
  if (it == runs_by_id_.end()) {
    rpc_metrics_.Record("CancelTraining", "NOT_FOUND", started);
    reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                 absl::StrCat("run_id: no training run \"", request->run_id(), "\"")));
    return reactor;
  }
  it->second->cancel.store(true);
  rpc_metrics_.Record("CancelTraining", "OK", started);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace spar::services
