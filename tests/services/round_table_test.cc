// The round table `spar status` and `spar demo` print (services/cli/demo.h).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "services/cli/demo.h"

namespace spar::cli {
namespace {

std::string Table(const v1::Job& job) {
  char* buf = nullptr;
  size_t size = 0;
  std::FILE* f = open_memstream(&buf, &size);
  PrintRoundTable(job, f);
  std::fclose(f);
  std::string out(buf, size);
  std::free(buf);
  return out;
}

TEST(RoundTableTest, FooterNamesTheBestRoundOnceOneIsEvaluated) {
  v1::Job job;
  job.set_job_id("dno-1a2b");
  job.mutable_spec()->mutable_validation_prompts()->set_builtin("arith");
  for (int t = 1; t <= 2; ++t) {
    v1::RoundSummary* r = job.add_rounds();
    r->set_round(t);
    r->set_stage("train");
  }
  EXPECT_EQ(Table(job).find("best round"), std::string::npos);  // 0: nothing evaluated yet
  for (v1::RoundSummary& r : *job.mutable_rounds()) r.set_stage("eval");
  // Evaluated, and no round beat pi_0 (issue 24 item 4): said plainly.
  EXPECT_NE(Table(job).find("best round: 0, pi_0 itself: no round beat it by win_rate_vs_base on "
                            "the validation split (dno-1a2b/best -> the base model)"),
            std::string::npos)
      << Table(job);
  job.set_best_round(2);
  EXPECT_NE(Table(job).find("best round: 2 (by win_rate_vs_base on the validation split; "
                            "checkpoint dno-1a2b/best -> iter_002/checkpoint)"),
            std::string::npos)
      << Table(job);
  job.mutable_spec()->mutable_eval()->set_select_best("greedy_accuracy");
  EXPECT_NE(Table(job).find("best round: 2 (by greedy_accuracy on the validation split;"),
            std::string::npos)
      << Table(job);
  // Without a validation split the result is the last round, and the footer says so.
  job.mutable_spec()->clear_validation_prompts();
  EXPECT_NE(Table(job).find("best round: 2 (by last; checkpoint"), std::string::npos) << Table(job);
}

TEST(RoundTableTest, AccuracyAndWinRateCarryTheirIntervals) {
  v1::Job job;
  job.set_base_greedy_accuracy(0.45);
  job.mutable_base_greedy_accuracy_ci95()->set_lo(0.4226);
  job.mutable_base_greedy_accuracy_ci95()->set_hi(0.4776);
  v1::RoundSummary* r = job.add_rounds();
  r->set_round(1);
  r->set_stage("eval");
  r->set_greedy_accuracy(0.56);
  r->mutable_greedy_accuracy_ci95()->set_lo(0.5324);
  r->mutable_greedy_accuracy_ci95()->set_hi(0.5873);
  r->set_win_rate_vs_base(0.61);
  r->mutable_win_rate_vs_base_ci95()->set_lo(0.5901);
  r->mutable_win_rate_vs_base_ci95()->set_hi(0.6299);
  r->set_greedy_gained_vs_base(52);
  r->set_greedy_lost_vs_base(11);
  r->set_greedy_mcnemar_p_vs_base(1.234e-7);
  r->set_validation_win_rate_vs_base(0.64);
  r->set_validation_greedy_accuracy(0.58);
  job.mutable_spec()->mutable_validation_prompts()->set_builtin("arith");
  job.set_base_validation_greedy_accuracy(0.47);
  const std::string t = Table(job);
  EXPECT_NE(t.find("acc_95ci"), std::string::npos) << t;
  // The paired comparison with pi_0 and the validation numbers, after the reported columns.
  EXPECT_NE(t.find("[0.532,0.587]    +52/-11   1.2e-07    0.640    0.580"), std::string::npos) << t;
  EXPECT_NE(t.find("0.500    0.470"), std::string::npos) << t;  // pi_0's row
  EXPECT_NE(t.find("0.450   [0.423,0.478]"), std::string::npos) << t;
  EXPECT_NE(t.find("0.610   [0.590,0.630]"), std::string::npos) << t;
  EXPECT_NE(t.find("0.560   [0.532,0.587]"), std::string::npos) << t;
  r->set_stage("train");  // not evaluated yet: no numbers, no intervals
  EXPECT_EQ(Table(job).find("[0.532,0.587]"), std::string::npos) << Table(job);
}

}  // namespace
}  // namespace spar::cli
