#include "orchestrator/internal/job_metrics.h"

#include <map>

#include "orchestrator/job_manager.h"
#include "orchestrator/run_dir.h"

namespace spar::orchestrator::internal {

JobMetrics::JobMetrics(metrics::Registry* r) {
  if (r == nullptr) return;
  jobs_ = &r->AddGauge("spar_orchestrator_jobs", "Jobs known to the orchestrator, by state.");
  for (v1::JobState s : kJobStates) jobs_->Add({{"state", JobStateName(s)}});
  stage_seconds_ = &r->AddHistogram("spar_orchestrator_stage_duration_seconds",
                                    "Wall time of round stages, by stage.",
                                    metrics::ExponentialBuckets(0.05, 2.5, 12));
  stage_failures_ = &r->AddCounter("spar_orchestrator_stage_failures_total",
                                   "Stages that ended in an error, by stage.");
  for (const char* s : kStages) {
    stage_seconds_->Add({{"stage", s}});
    stage_failures_->Add({{"stage", s}});
  }
  rounds_completed_ = &r->AddCounter("spar_orchestrator_rounds_completed_total",
                                     "Rounds completed across all jobs.")
                           .Add({});
  pairs_kept_ = &r->AddCounter("spar_orchestrator_pairs_kept_total",
                               "Preference pairs kept by the pair policy.")
                     .Add({});
  win_rate_ = &r->AddGauge("spar_orchestrator_win_rate_vs_base_ratio",
                           "Judged win rate of the latest round's policy vs pi_0.")
                   .Add({});
  accuracy_ = &r->AddGauge("spar_orchestrator_greedy_accuracy_ratio",
                           "Greedy accuracy of the latest round's policy on held-out prompts.")
                   .Add({});
  current_round_ =
      &r->AddGauge("spar_orchestrator_current_round", "Round the most recently updated job is in.")
           .Add({});
}

void JobMetrics::SetJobStates(const std::vector<v1::JobState>& states) {
  if (jobs_ == nullptr) return;
  std::map<v1::JobState, int> counts;
  for (v1::JobState s : states) counts[s]++;
  for (v1::JobState s : kJobStates) jobs_->Add({{"state", JobStateName(s)}}).Set(counts[s]);
}

void JobMetrics::StageFinished(const std::string& stage, double seconds) {
  if (stage_seconds_ != nullptr) stage_seconds_->Add({{"stage", stage}}).Observe(seconds);
}

void JobMetrics::StageFailed(const std::string& stage) {
  if (stage_failures_ != nullptr && StageIndex(stage) >= 0) {
    stage_failures_->Add({{"stage", stage}}).Increment();
  }
}

void JobMetrics::RoundFinished(int round, const v1::RoundSummary& summary) {
  if (rounds_completed_ == nullptr) return;
  rounds_completed_->Increment();
  pairs_kept_->Increment(summary.pairs_kept());
  win_rate_->Set(summary.win_rate_vs_base());
  accuracy_->Set(summary.greedy_accuracy());
  current_round_->Set(round);
}

}  // namespace spar::orchestrator::internal
