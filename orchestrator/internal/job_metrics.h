// Internal to orchestrator: JobManager's metric families (spar_orchestrator_*, docs/operations.md),
// registered once in JobManager::Create. Built without a registry, every method does nothing.
// Not thread-safe by itself: JobManager calls it under its mutex.
#pragma once

#include <string>
#include <vector>

#include "common/metrics/registry.h"
#include "spar/v1/orchestrator.pb.h"

namespace spar::orchestrator::internal {

class JobMetrics {
 public:
  explicit JobMetrics(metrics::Registry* registry = nullptr);

  // spar_orchestrator_jobs{state}: how many of `states` are in each state (absent ones are 0).
  void SetJobStates(const std::vector<v1::JobState>& states);
  // spar_orchestrator_stage_duration_seconds{stage}.
  void StageFinished(const std::string& stage, double seconds);
  // spar_orchestrator_stage_failures_total{stage}; names outside kStages are not counted.
  void StageFailed(const std::string& stage);
  // The round counters and the latest round's gauges (win rate vs π₀, accuracy, round).
  void RoundFinished(int round, const v1::RoundSummary& summary);

 private:
  metrics::Family<metrics::Gauge>* jobs_ = nullptr;
  metrics::Family<metrics::Histogram>* stage_seconds_ = nullptr;
  metrics::Family<metrics::Counter>* stage_failures_ = nullptr;
  metrics::Counter* rounds_completed_ = nullptr;
  metrics::Counter* pairs_kept_ = nullptr;
  metrics::Gauge* win_rate_ = nullptr;
  metrics::Gauge* accuracy_ = nullptr;
  metrics::Gauge* current_round_ = nullptr;
};

}  // namespace spar::orchestrator::internal
