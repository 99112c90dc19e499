// gRPC Trainer service: StartTraining is idempotent by key (a repeated call attaches to the
// running or finished run); training runs on its own thread; WatchTraining streams progress
// until the run ends; CancelTraining stops it between steps (nothing is written then).
// Thread-safe.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/metrics/registry.h"
#include "services/common/rpc_metrics.h"
#include "services/common/worker_threads.h"
#include "spar/v1/trainer.grpc.pb.h"

namespace spar::services {

class TrainerService final : public v1::Trainer::CallbackService {
 public:
  explicit TrainerService(metrics::Registry& registry);
  ~TrainerService() override;

  grpc::ServerUnaryReactor* StartTraining(grpc::CallbackServerContext* ctx,
                                          const v1::StartTrainingRequest* request,
                                          v1::StartTrainingResponse* response) override;
  grpc::ServerWriteReactor<v1::TrainingEvent>* WatchTraining(
      grpc::CallbackServerContext* ctx, const v1::WatchTrainingRequest* request) override;
  grpc::ServerUnaryReactor* CancelTraining(grpc::CallbackServerContext* ctx,
                                           const v1::CancelTrainingRequest* request,
                                           v1::CancelTrainingResponse* response) override;

  // Stops running trainings (they end CANCELLED) and joins the threads.
  void Shutdown();

 private:
  struct Run;
  void Execute(std::shared_ptr<Run> run, v1::StartTrainingRequest request);

  RpcMetrics rpc_metrics_;
  metrics::Counter& steps_;
  metrics::Counter& tokens_;
  metrics::Gauge& loss_;
  metrics::Gauge& reward_accuracy_;
  metrics::Gauge& reward_margin_;
  metrics::Gauge& tokens_per_second_;
  metrics::Gauge& running_;
  metrics::Family<metrics::Counter>& runs_;

  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Run>> runs_by_key_;
  std::map<std::string, std::shared_ptr<Run>> runs_by_id_;
  bool shutting_down_ = false;
  WorkerThreads workers_;  // last: joined before the members above go away
};

}  // namespace spar::services
