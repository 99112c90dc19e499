// gRPC Trainer service: StartTraining is idempotent by key (a repeated call attaches to the
// running or finished run); training runs on its own thread; WatchTraining streams progress
// until the run ends; CancelTraining stops it between steps (nothing is written then).
//
// The runs live in a trainer::RunRegistry; this layer converts and validates requests
// (trainer_convert.h), calls the library and reports metrics.
//
// Data parallel (WORLD_SIZE > 1): the service runs on rank 0 with a trainer::ProcessGroup and
// drives the group with trainer/group_control.h's protocol (the request travels as the
// serialized StartTrainingRequest). Runs are serialized on it. Cancellation reaches the other
// ranks through the per-step all-reduce in TrainDpo. Ranks > 0 run RunTrainerWorker instead of
// a server. Only rank 0 writes checkpoints and train_state, and only it reports events and
// metrics.
// Thread-safe.
#pragma once

#include <memory>
#include <mutex>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/metrics/registry.h"
#include "services/common/access.h"
#include "services/common/rpc_metrics.h"
#include "services/common/worker_threads.h"
#include "spar/v1/trainer.grpc.pb.h"
#include "trainer/fault_hook.h"
#include "trainer/group_control.h"
#include "trainer/run_registry.h"
#include "trainer/trainer.h"

namespace spar::services {

class TrainerService final : public v1::Trainer::CallbackService {
 public:
  // `group`: rank 0 of a data-parallel group to drive (not owned; outlives the service), or null
  // for a single process. Every RPC checks `access`'s token; every path of StartTraining must lie
  // inside its roots, and an existing output_checkpoint must be a checkpoint Spar wrote.
  explicit TrainerService(metrics::Registry& registry, trainer::ProcessGroup* group = nullptr,
                          AccessPolicy access = {});
  ~TrainerService() override;

  grpc::ServerUnaryReactor* StartTraining(grpc::CallbackServerContext* ctx,
                                          const v1::StartTrainingRequest* request,
                                          v1::StartTrainingResponse* response) override;
  grpc::ServerWriteReactor<v1::TrainingEvent>* WatchTraining(
      grpc::CallbackServerContext* ctx, const v1::WatchTrainingRequest* request) override;
  grpc::ServerUnaryReactor* CancelTraining(grpc::CallbackServerContext* ctx,
                                           const v1::CancelTrainingRequest* request,
                                           v1::CancelTrainingResponse* response) override;

  // Stops running trainings (they end CANCELLED), joins the threads and, with a group, tells
  // the other ranks to exit. Idempotent.
  void Shutdown();

 private:
  using RunPtr = std::shared_ptr<trainer::TrainingRunEntry>;
  // Runs one training on a worker thread. `request` has its paths confined and resolved;
  // `as_sent` is what the client sent (broadcast to the other ranks of a group).
  void Execute(RunPtr run, v1::StartTrainingRequest request,
               const v1::StartTrainingRequest& as_sent);
  // The training itself (with a group: the other ranks learn the request first).
  absl::StatusOr<trainer::TrainResult> Train(const RunPtr& run,
                                             const v1::StartTrainingRequest& request,
                                             const v1::StartTrainingRequest& as_sent);
  // Publishes a step's event and metrics; false when the run was cancelled.
  bool OnProgress(const RunPtr& run, const trainer::TrainProgress& p, bool* counted_resume);
  // Counts (and logs a failure of) the run's final event `ev`, which `status` ended.
  void CountFinal(const trainer::TrainingRunEntry& run, const trainer::RunEvent& ev,
                  const absl::Status& status);

  const AccessPolicy access_;
  RpcMetrics rpc_metrics_;
  metrics::Counter& steps_;
  metrics::Counter& tokens_;
  metrics::Gauge& loss_;
  metrics::Gauge& reward_accuracy_;
  metrics::Gauge& reward_margin_;
  metrics::Gauge& tokens_per_second_;
  metrics::Gauge& running_;
  metrics::Family<metrics::Counter>& runs_;
  metrics::Counter& resumed_runs_;
  metrics::Gauge& world_size_;
  metrics::Gauge& group_healthy_;

  const trainer::FaultHook fault_hook_;  // tests only (SPAR_TRAINER_FAULT_KILL_AFTER_STEP)

  trainer::ProcessGroup* const group_;
  std::mutex group_mu_;        // one run at a time on the group (collectives must not interleave)
  bool group_closed_ = false;  // guarded by group_mu_: the shutdown message was sent

  std::mutex mu_;  // orders StartTraining's registration and spawn against Shutdown
  trainer::RunRegistry registry_;
  bool shutting_down_ = false;  // guarded by mu_
  WorkerThreads workers_;       // last: joined before the members above go away
};

// The loop of a rank > 0 of a data-parallel trainer: waits for rank 0's control messages and
// trains each broadcast request on its share (writing nothing). OK when rank 0 sends shutdown;
// an error when the group fails (rank 0 died, a collective failed): the process should exit and
// be restarted together with the other ranks.
absl::Status RunTrainerWorker(trainer::ProcessGroup& group);

}  // namespace spar::services
