#include "orchestrator/internal/job_metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "common/metrics/registry.h"

namespace spar::orchestrator::internal {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(JobMetricsTest, CountsJobsByStateStagesAndRoundsInTheExposition) {
  metrics::Registry registry;
  JobMetrics m(&registry);
  m.SetJobStates({v1::JOB_STATE_RUNNING, v1::JOB_STATE_FAILED, v1::JOB_STATE_RUNNING});
  m.StageFinished("judge", 0.3);
  m.StageFailed("train");
  m.StageFailed("");         // a job that failed before its first stage
  m.StageFailed("warm-up");  // not a stage of kStages
  v1::RoundSummary r;
  r.set_pairs_kept(611);
  r.set_win_rate_vs_base(0.57);
  r.set_greedy_accuracy(0.628);
  m.RoundFinished(1, r);
  const std::string text = registry.Serialize();
  EXPECT_THAT(text, HasSubstr("spar_orchestrator_jobs{state=\"running\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("spar_orchestrator_jobs{state=\"failed\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("spar_orchestrator_jobs{state=\"paused\"} 0\n"));
  EXPECT_THAT(text,
              HasSubstr("spar_orchestrator_stage_duration_seconds_count{stage=\"judge\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("spar_orchestrator_stage_failures_total{stage=\"train\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("spar_orchestrator_stage_failures_total{stage=\"sample\"} 0\n"));
  EXPECT_THAT(text, Not(HasSubstr("warm-up")));
  EXPECT_THAT(text, HasSubstr("spar_orchestrator_rounds_completed_total 1\n"));
  EXPECT_THAT(text, HasSubstr("spar_orchestrator_pairs_kept_total 611\n"));
  EXPECT_THAT(text, HasSubstr("spar_orchestrator_win_rate_vs_base_ratio 0.57\n"));
  EXPECT_THAT(text, HasSubstr("spar_orchestrator_greedy_accuracy_ratio 0.628\n"));
  EXPECT_THAT(text, HasSubstr("spar_orchestrator_current_round 1\n"));
  // A state seen again is a count, not an increment.
  m.SetJobStates({v1::JOB_STATE_SUCCEEDED});
  EXPECT_THAT(registry.Serialize(), HasSubstr("spar_orchestrator_jobs{state=\"running\"} 0\n"));
}

TEST(JobMetricsTest, WithoutARegistryEveryCallIsANoOp) {
  JobMetrics m;
  m.SetJobStates({v1::JOB_STATE_RUNNING});
  m.StageFinished("judge", 1.0);
  m.StageFailed("train");
  m.RoundFinished(1, v1::RoundSummary());
}

}  // namespace
}  // namespace spar::orchestrator::internal
