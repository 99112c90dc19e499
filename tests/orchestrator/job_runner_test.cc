// JobRunner against in-process fake ports: the round engine's files, and resume after a failure
// at a stage boundary without redoing (or re-paying for) finished stages.
#include "orchestrator/job_runner.h"

#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>
#include <new>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/stats.h"
#include "orchestrator/job_manager.h"
#include "orchestrator/job_spec.h"
#include "orchestrator/run_dir.h"
#include "orchestrator/start_guard.h"
#include "tasks/arith/problems.h"
#include "tests/testing/fake_ports.h"
#include "tests/testing/status_matchers.h"

namespace spar::orchestrator {
namespace {

using spar::testing::FakeOracle;
using spar::testing::FakeSampler;
using spar::testing::FakeTrainer;
using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;

class JobRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/spar_runner_XXXXXX";
    root_ = mkdtemp(tmpl);
    ASSERT_TRUE(MakeDirs(JoinPath(root_, "base")).ok());
    ASSERT_TRUE(WriteFileAtomic(JoinPath(root_, "base/config.json"), "{}").ok());
    v1::JobSpec s;
    s.set_base_model(JoinPath(root_, "base"));
    s.set_rounds(2);
    s.set_prompts_per_round(8);
    s.mutable_sampling()->set_num_samples(3);
    s.mutable_eval()->set_num_prompts(10);
    // DNO from the policy's samples alone: what most of these tests look at. The paper's
    // recipe (teacher, mixing) has its own test.
    s.set_preset("self_play");
    spec_ = WithDefaults(s);
    ASSERT_TRUE(ValidateJobSpec(spec_, "").ok());
  }
  void TearDown() override { RemoveAll(root_).IgnoreError(); }

  // The fixture's spec went through WithDefaults as dno: drop what only dno may set before
  // switching algorithms.
  void ClearDnoOnlyDefaults() {
    spec_.clear_preset();
    v1::PairPolicy* pp = spec_.mutable_pairs();
    pp->clear_use_teacher();
    pp->clear_teacher_min_gap();
    pp->clear_defect_ngram();
    pp->clear_scoring();
    pp->clear_defect_max_repeats();
  }

  // A fresh job directory under the test's root.
  std::string JobDir(const std::string& name) {
    std::string dir = JoinPath(root_, name);
    EXPECT_TRUE(MakeDirs(dir).ok());
    return dir;
  }

  absl::Status RunJob(const std::string& dir, FakeSampler& s, FakeOracle& o, FakeTrainer& t) {
    std::atomic<bool> cancel{false};
    JobRunnerCallbacks cb;
    cb.on_event = [this](const v1::JobEvent& ev) {
      std::lock_guard<std::mutex> lock(events_mu_);
      events_.push_back(ev.kind());
      full_events_.push_back(ev);
      events_cv_.notify_all();
    };
    cb.update_job = [this](const std::function<void(v1::Job&)>& fn) { fn(job_); };
    JobRunner runner("job-1", dir, spec_, {&s, &o, &t}, cb, &cancel);
    runner.set_stage_retry_backoff(absl::ZeroDuration());
    runner.set_pipeline_judging(pipeline_);
    runner.set_judge_chunking(judge_chunk_, judge_in_flight_);
    return runner.Run();
  }

  std::string root_;
  v1::JobSpec spec_;
  v1::Job job_;
  std::vector<std::string> events_;
  std::vector<v1::JobEvent> full_events_;
  std::mutex events_mu_;
  std::condition_variable events_cv_;
  bool pipeline_ = true;
  int judge_chunk_ = 64;
  int judge_in_flight_ = 4;
};

TEST_F(JobRunnerTest, WritesEveryRoundFileAndSummaries) {
  FakeSampler s;
  FakeOracle o;
  FakeTrainer t;
  std::string dir = JobDir("job");
  ASSERT_TRUE(RunJob(dir, s, o, t).ok());
  RunDir rd(dir);
  for (int r = 1; r <= 2; ++r) {
    for (const std::string& f : {rd.Samples(r), rd.Judgments(r), rd.Pairs(r), rd.Eval(r),
                                 rd.Train(r), JoinPath(rd.Checkpoint(r), "config.json")}) {
      EXPECT_TRUE(PathExists(f)) << f;
    }
    EXPECT_EQ(*ReadFile(rd.Stage(r)), "eval\n");
  }
  // 8 prompts x 3 distinct samples: 3 judged pairs each; dno_margin keeps 0>1, 0>2, 1>2? win
  // rates are 1.0, 0.5, 0.0 -> pairs (0,1), (0,2), (1,2): 3 per prompt.
  EXPECT_EQ(ReadJsonl(rd.Judgments(1))->size(), 24u);
  EXPECT_EQ(job_.rounds(0).pairs_kept(), 24);
  EXPECT_DOUBLE_EQ(job_.base_greedy_accuracy(), 0.0);
  EXPECT_DOUBLE_EQ(job_.rounds(1).greedy_accuracy(), 1.0);
  EXPECT_DOUBLE_EQ(job_.rounds(1).win_rate_vs_base(), 1.0);
  EXPECT_DOUBLE_EQ(job_.rounds(0).reward_accuracy(), 0.75);
  // 95% intervals beside the numbers, in eval.json and on the Job (plumbing; the interval
  // functions themselves are pinned against statsmodels in tests/common/stats_test.cc).
  auto eval2 = ReadJsonFile(rd.Eval(2));
  ASSERT_TRUE(eval2.ok());
  const int n = (*eval2)["num_verifiable"].get<int>();
  EXPECT_GT(n, 0);
  EXPECT_DOUBLE_EQ((*eval2)["greedy_accuracy_ci95"][0].get<double>(), WilsonInterval(n, n).lo);
  EXPECT_DOUBLE_EQ((*eval2)["greedy_accuracy_ci95"][1].get<double>(), 1.0);
  EXPECT_LT(WilsonInterval(n, n).lo, 1.0);
  EXPECT_DOUBLE_EQ(job_.rounds(1).greedy_accuracy_ci95().lo(), WilsonInterval(n, n).lo);
  EXPECT_DOUBLE_EQ(job_.base_greedy_accuracy_ci95().hi(), WilsonInterval(0, n).hi);
  EXPECT_GT(job_.base_greedy_accuracy_ci95().hi(), 0.0);
  EXPECT_DOUBLE_EQ((*eval2)["win_rate_vs_base_ci95"][0].get<double>(), 1.0);  // every p = 1
  EXPECT_DOUBLE_EQ(job_.rounds(1).win_rate_vs_base_ci95().hi(), 1.0);
  auto pairs = ReadJsonl(rd.Pairs(1));
  for (const auto& p : *pairs) {
    int64_t truth = *arith::ArithTruth(p["prompt"].get<std::string>());
    EXPECT_LT(std::llabs(*arith::ParseArithAnswer(p["chosen"].get<std::string>()) - truth),
              std::llabs(*arith::ParseArithAnswer(p["rejected"].get<std::string>()) - truth));
  }
}

TEST_F(JobRunnerTest, BestRoundLinkFollowsEveryEvalAndIsRecomputedOnResume) {
  FakeSampler s;
  FakeOracle o;
  FakeTrainer t;
  s.fail_key = "iter_002/sample";  // stop after round 1
  std::string dir = JobDir("job");
  ASSERT_THAT(RunJob(dir, s, o, t), StatusIs(absl::StatusCode::kInternal));
  RunDir rd(dir);
  EXPECT_EQ(job_.best_round(), 1);
  // Relative to the job directory.
  EXPECT_EQ(ReadSymlink(rd.Best()).value_or(""), "iter_001/checkpoint");
  EXPECT_TRUE(PathExists(JoinPath(rd.Best(), "config.json")));
  // Both trained policies answer every eval prompt right (win rate 1.0 vs pi_0): the tie goes to
  // the earlier round.
  s.fail_key.clear();
  ASSERT_TRUE(RunJob(dir, s, o, t).ok());
  EXPECT_DOUBLE_EQ(job_.rounds(0).win_rate_vs_base(), job_.rounds(1).win_rate_vs_base());
  EXPECT_EQ(job_.best_round(), 1);
  EXPECT_EQ(ReadSymlink(rd.Best()).value_or(""), "iter_001/checkpoint");
  // Recomputed from the files on resume: round 1's validation now reads worse, and a lost link
  // or job record comes back, without re-running anything.
  auto eval1 = ReadJsonFile(rd.Eval(1));
  (*eval1)["validation"]["win_rate_vs_base"] = 0.4;
  ASSERT_TRUE(WriteJsonFileAtomic(rd.Eval(1), *eval1).ok());
  ASSERT_TRUE(RemoveAll(rd.Best()).ok());
  job_.set_best_round(0);
  const size_t sampler_calls = s.keys.size(), oracle_calls = o.keys.size();
  ASSERT_TRUE(RunJob(dir, s, o, t).ok());
  EXPECT_EQ(s.keys.size(), sampler_calls);
  EXPECT_EQ(o.keys.size(), oracle_calls);
  EXPECT_EQ(job_.best_round(), 2);
  EXPECT_EQ(ReadSymlink(rd.Best()).value_or(""), "iter_002/checkpoint");
  ASSERT_TRUE(RunJob(dir, s, o, t).ok());  // idempotent
  EXPECT_EQ(job_.best_round(), 2);
  EXPECT_EQ(ReadSymlink(rd.Best()).value_or(""), "iter_002/checkpoint");
  EXPECT_FALSE(PathExists(rd.Best() + ".tmp-link"));
}

TEST_F(JobRunnerTest, BestRoundBySelectBestLastOrGreedyAccuracy) {
  for (const char* by : {"last", "greedy_accuracy"}) {
    spec_.mutable_eval()->set_select_best(by);
    ASSERT_TRUE(ValidateJobSpec(spec_, "").ok()) << ValidateJobSpec(spec_, "");
    FakeSampler s;
    FakeOracle o;
    FakeTrainer t;
    std::string dir = JobDir(by);
    ASSERT_TRUE(RunJob(dir, s, o, t).ok());
    // Greedy accuracy 1.0 in both rounds: the tie goes to round 1; "last" is round 2.
    const int want = std::string(by) == "last" ? 2 : 1;
    EXPECT_EQ(job_.best_round(), want) << by;
    EXPECT_EQ(ReadSymlink(RunDir(dir).Best()).value_or(""), RunDir::CheckpointInJobDir(want)) << by;
  }
}

TEST_F(JobRunnerTest, ResumesAtFirstUnfinishedStageWithoutPayingTwice) {
  // Uninterrupted reference run.
  FakeSampler s0;
  FakeOracle o0;
  FakeTrainer t0;
  std::string ref = JoinPath(root_, "ref");
  ASSERT_TRUE(MakeDirs(ref).ok());
  ASSERT_TRUE(RunJob(ref, s0, o0, t0).ok());

  // Interrupted run: the sampler is down when round 2 starts.
  FakeSampler s1;
  FakeOracle o1;
  FakeTrainer t1;
  s1.fail_key = "iter_002/sample";
  std::string dir = JoinPath(root_, "job");
  ASSERT_TRUE(MakeDirs(dir).ok());
  absl::Status st = RunJob(dir, s1, o1, t1);
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kInternal));
  RunDir rd(dir);
  EXPECT_EQ(*ReadFile(rd.Stage(1)), "eval\n");
  EXPECT_FALSE(PathExists(rd.Stage(2)));

  // Restart: round 1 is not redone; round 2 runs from its first stage.
  s1.fail_key.clear();
  s1.keys.clear();
  size_t judge_calls_before = o1.keys.size();
  ASSERT_TRUE(RunJob(dir, s1, o1, t1).ok());
  for (const std::string& k : s1.keys) EXPECT_FALSE(absl::StrContains(k, "iter_001")) << k;
  for (size_t i = judge_calls_before; i < o1.keys.size(); ++i) {
    EXPECT_FALSE(absl::StrContains(o1.keys[i], "iter_001")) << o1.keys[i];
  }
  for (const auto& [k, n] : o1.paid) EXPECT_EQ(n, o0.paid[k]) << k;
  // Same outputs as the uninterrupted run.
  for (int r = 1; r <= 2; ++r) {
    RunDir a(ref);
    for (auto f : {&RunDir::Samples, &RunDir::Judgments, &RunDir::Pairs, &RunDir::Eval}) {
      EXPECT_EQ(*ReadFile((a.*f)(r)), *ReadFile((rd.*f)(r))) << (rd.*f)(r);
    }
  }
}

TEST_F(JobRunnerTest, JudgeRequestsCarryJobRoundAndBudgetAndARefusedEvalPauses) {
  spec_.mutable_judge_budget()->set_round_max_calls(100);
  spec_.mutable_judge_budget()->set_max_cost_usd(2.5);
  FakeSampler s;
  FakeOracle o;
  FakeTrainer t;
  o.exhaust_key = "iter_002/eval";
  std::string dir = JobDir("job");
  absl::Status st = RunJob(dir, s, o, t);
  // A refused eval judgment pauses the job (never a win rate over fewer judgments).
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kResourceExhausted,
                           ::testing::HasSubstr("round 2 stage eval")));
  EXPECT_EQ(*ReadFile(RunDir(dir).Stage(2)), "train\n");
  ASSERT_FALSE(o.scopes.empty());
  for (const v1::CompareRequest& r : o.scopes) {
    EXPECT_EQ(r.job_id(), "job-1");
    EXPECT_EQ(absl::StrCat("job-1/iter_00", r.round()),
              r.idempotency_key().substr(0, r.idempotency_key().find('/', 6)));
    EXPECT_EQ(r.budget().round_max_calls(), 100);
    EXPECT_DOUBLE_EQ(r.budget().max_cost_usd(), 2.5);
    EXPECT_FALSE(r.budget().has_max_calls());
  }
}

TEST_F(JobRunnerTest, UnavailableServiceCostsAStageRetryNotTheJob) {
  FakeSampler s;
  FakeOracle o;
  FakeTrainer t;
  s.unavailable_times = 3;  // e.g. the sampler was killed and is restarting
  std::string dir = JobDir("job");
  ASSERT_TRUE(RunJob(dir, s, o, t).ok());
  EXPECT_EQ(*ReadFile(RunDir(dir).Stage(2)), "eval\n");
  EXPECT_EQ(s.unavailable_times, 0);
}

TEST_F(JobRunnerTest, EachDistinctTextPairIsJudgedOnce) {
  spec_.mutable_sampling()->set_num_samples(4);
  FakeSampler s;
  s.distinct = 2;  // samples: right, wrong, right, wrong
  FakeOracle o;
  FakeTrainer t;
  std::string dir = JobDir("job");
  ASSERT_TRUE(RunJob(dir, s, o, t).ok());
  // 4 samples, 2 distinct texts: 4 (i, j) pairs differ, one comparison is paid per prompt.
  auto judgments = ReadJsonl(RunDir(dir).Judgments(1));
  ASSERT_EQ(judgments->size(), 8u * 4u);
  // (Eval comparisons may repeat across rounds -- the same answers vs pi_0 -- which the real
  // oracle's cache serves; the judge stage itself must not repeat.)
  std::set<std::string> train_prompts;
  for (int r = 1; r <= 2; ++r) {
    auto rows = ReadJsonl(RunDir(dir).Samples(r));
    ASSERT_TRUE(rows.ok());
    for (const auto& row : *rows) train_prompts.insert(row["prompt"].get<std::string>());
  }
  int judged = 0;
  for (const auto& [k, n] : o.paid) {
    if (train_prompts.count(k.substr(0, k.find('|'))) == 0) continue;
    EXPECT_EQ(n, 1) << k;
    ++judged;
  }
  EXPECT_EQ(judged, 16);
  for (const auto& j : *judgments) {
    // P(y_i > y_j) in the (i, j) orientation: the right answer (even i) wins.
    EXPECT_DOUBLE_EQ(j["p_a_wins"].get<double>(), j["i"].get<int>() % 2 == 0 ? 1.0 : 0.0) << j;
  }
  // Win rates: the right sample beats both wrong ones and ties its duplicate.
  EXPECT_EQ(job_.rounds(0).pairs_kept(), 8);
}

TEST_F(JobRunnerTest, CancelStopsBeforeTheNextStage) {
  FakeSampler s;
  FakeOracle o;
  FakeTrainer t;
  std::string dir = JoinPath(root_, "job");
  ASSERT_TRUE(MakeDirs(dir).ok());
  std::atomic<bool> cancel{true};
  JobRunnerCallbacks cb;
  cb.update_job = [this](const std::function<void(v1::Job&)>& fn) { fn(job_); };
  JobRunner runner("job-1", dir, spec_, {&s, &o, &t}, cb, &cancel);
  EXPECT_THAT(runner.Run(), StatusIs(absl::StatusCode::kCancelled));
  EXPECT_TRUE(s.keys.empty());
}

TEST_F(JobRunnerTest, SpinNeedsNoJudgeAndReusesThePreviousRoundsPairs) {
  spec_.set_algorithm("spin");
  ClearDnoOnlyDefaults();
  spec_.mutable_pairs()->clear_policy();
  spec_ = WithDefaults(spec_);
  ASSERT_TRUE(ValidateJobSpec(spec_, "").ok());
  FakeSampler s;
  FakeOracle o;
  FakeTrainer t;
  std::string dir = JobDir("job");
  ASSERT_TRUE(RunJob(dir, s, o, t).ok());
  RunDir rd(dir);
  // Only eval comparisons reach the oracle: no ".../judge" key.
  for (const std::string& k : o.keys) EXPECT_FALSE(absl::StrContains(k, "/judge")) << k;
  auto r1 = ReadJsonl(rd.Pairs(1));
  auto r2 = ReadJsonl(rd.Pairs(2));
  // Sample 0 answers the gold; gold vs the first different sample: one pair per prompt.
  ASSERT_EQ(r1->size(), 8u);
  for (const auto& p : *r1) {
    EXPECT_EQ(p["chosen"], std::to_string(*arith::ArithTruth(p["prompt"].get<std::string>())));
  }
  size_t reused = 0;
  for (const auto& p : *r2) reused += p["source_round"].get<int>() == 1 ? 1 : 0;
  EXPECT_EQ(reused, 8u);
  EXPECT_EQ(r2->size(), 16u);
  EXPECT_EQ(job_.rounds(1).pairs_mixed(), 8);
}

// The paper's DNO (preset "paper", DNO-Prct): the teacher's answer joins the samples as a
// candidate, and 30% of round 1's pairs are mixed into round 2.
TEST_F(JobRunnerTest, DnoPaperRecipeJudgesTheTeacherAndMixesEarlierPairsBack) {
  spec_.clear_preset();
  spec_.mutable_pairs()->clear_use_teacher();
  spec_ = WithDefaults(spec_);
  ASSERT_EQ(spec_.preset(), "paper");
  ASSERT_TRUE(spec_.pairs().use_teacher());
  ASSERT_TRUE(ValidateJobSpec(spec_, "").ok()) << ValidateJobSpec(spec_, "");
  FakeSampler s;
  s.offset = 1;  // every sample wrong (truth+1, +2, +3): only the teacher is right
  FakeOracle o;
  FakeTrainer t;
  std::string dir = JobDir("job");
  ASSERT_TRUE(RunJob(dir, s, o, t).ok());
  RunDir rd(dir);
  auto r1 = ReadJsonl(rd.Pairs(1));
  ASSERT_TRUE(r1.ok());
  std::set<std::string> taught;
  for (const auto& p : *r1) {
    if (p["chosen"] == std::to_string(*arith::ArithTruth(p["prompt"].get<std::string>()))) {
      taught.insert(p["prompt"].get<std::string>());
    }
  }
  EXPECT_EQ(taught.size(), 8u);  // every prompt has a teacher-chosen pair
  const int mixed = static_cast<int>(std::lround(0.3 * static_cast<double>(r1->size())));
  EXPECT_EQ(job_.rounds(1).pairs_mixed(), mixed);
  auto r2 = ReadJsonl(rd.Pairs(2));
  size_t from_round1 = 0;
  for (const auto& p : *r2) from_round1 += p["source_round"].get<int>() == 1 ? 1 : 0;
  EXPECT_EQ(from_round1, static_cast<size_t>(mixed));
}

TEST_F(JobRunnerTest, SpinWithOneSamplePerPromptProducesPairs) {
  // SPIN's default K = 1: winner = gold, loser = the one sample (ALGORITHMS.md §3).
  spec_.set_algorithm("spin");
  ClearDnoOnlyDefaults();
  spec_.mutable_pairs()->clear_policy();
  spec_.mutable_sampling()->clear_num_samples();
  spec_ = WithDefaults(spec_);
  ASSERT_EQ(spec_.sampling().num_samples(), 1);
  ASSERT_TRUE(ValidateJobSpec(spec_, "").ok()) << ValidateJobSpec(spec_, "");
  for (bool pipelined : {true, false}) {
    pipeline_ = pipelined;
    job_.Clear();
    FakeSampler s;
    s.offset = 1;  // the one sample answers truth + 1: never the gold
    FakeOracle o;
    FakeTrainer t;
    std::string dir = JobDir(pipelined ? "pipelined" : "unpipelined");
    ASSERT_TRUE(RunJob(dir, s, o, t).ok());
    RunDir rd(dir);
    for (const std::string& k : o.keys) EXPECT_FALSE(absl::StrContains(k, "/judge")) << k;
    auto samples = ReadJsonl(rd.Samples(1));
    ASSERT_EQ(samples->size(), 8u);
    for (const auto& row : *samples) EXPECT_EQ(row["samples"].size(), 1u);
    EXPECT_TRUE(ReadJsonl(rd.Judgments(1))->empty());
    auto r1 = ReadJsonl(rd.Pairs(1));
    ASSERT_EQ(r1->size(), 8u);
    for (const auto& p : *r1) {
      int64_t truth = *arith::ArithTruth(p["prompt"].get<std::string>());
      EXPECT_EQ(p["chosen"], std::to_string(truth));
      EXPECT_EQ(p["rejected"], std::to_string(truth + 1));
    }
    EXPECT_EQ(ReadJsonl(rd.Pairs(2))->size(), 16u);  // + round 1's pairs (mix_previous [1.0])
    ASSERT_EQ(t.configs.size(), 2u);
    ASSERT_EQ(job_.rounds_size(), 2);
    EXPECT_EQ(job_.rounds(0).num_samples(), 8);
    EXPECT_EQ(job_.rounds(0).pairs_kept(), 8);
    EXPECT_EQ(job_.rounds(1).pairs_kept(), 16);
  }
}

TEST_F(JobRunnerTest, EarlyStopWhenNoLongerBeatingThePreviousPolicy) {
  spec_.set_rounds(3);
  spec_.mutable_eval()->set_early_stop_win_rate(0.6);
  FakeSampler s;
  FakeOracle o;
  FakeTrainer t;
  std::string dir = JobDir("job");
  ASSERT_TRUE(RunJob(dir, s, o, t).ok());
  RunDir rd(dir);
  // Round 2's greedy answers equal round 1's (win rate 0.5 < 0.6): stop before round 3.
  EXPECT_TRUE(PathExists(rd.Eval(2)));
  EXPECT_FALSE(PathExists(rd.Round(3)));
  EXPECT_DOUBLE_EQ(job_.rounds(1).win_rate_vs_prev(), 0.5);
  EXPECT_DOUBLE_EQ(job_.rounds(0).win_rate_vs_prev(), 1.0);
}

TEST_F(JobRunnerTest, SppoOneArgmaxArgminPairWithSelfInclusiveWinRates) {
  spec_.set_algorithm("sppo");
  ClearDnoOnlyDefaults();
  spec_.mutable_pairs()->clear_policy();
  spec_.mutable_training()->clear_loss();
  spec_.mutable_training()->clear_beta();
  spec_ = WithDefaults(spec_);
  ASSERT_TRUE(ValidateJobSpec(spec_, "").ok());
  EXPECT_EQ(spec_.pairs().policy(), "sppo_argmax_argmin");
  EXPECT_EQ(spec_.training().loss(), "sppo");
  EXPECT_DOUBLE_EQ(spec_.training().beta(), 0.001);
  FakeSampler s;
  FakeOracle o;
  FakeTrainer t;
  std::string dir = JobDir("job");
  ASSERT_TRUE(RunJob(dir, s, o, t).ok());
  RunDir rd(dir);
  // K = 3 answers truth, truth+1, truth+2; all 3 pairs judged. P̂ includes the sample itself:
  // (1 + 1 + 0.5)/3, (0 + 1 + 0.5)/3, (0 + 0 + 0.5)/3. One pair: truth (5/6) vs truth+2 (1/6).
  EXPECT_EQ(ReadJsonl(rd.Judgments(1))->size(), 24u);
  auto pairs = ReadJsonl(rd.Pairs(1));
  ASSERT_EQ(pairs->size(), 8u);
  for (const auto& p : *pairs) {
    int64_t truth = *arith::ArithTruth(p["prompt"].get<std::string>());
    EXPECT_EQ(p["chosen"], std::to_string(truth));
    EXPECT_EQ(p["rejected"], std::to_string(truth + 2));
    EXPECT_NEAR(p["chosen_win_rate"].get<double>(), 5.0 / 6, 1e-12);
    EXPECT_NEAR(p["rejected_win_rate"].get<double>(), 1.0 / 6, 1e-12);
  }
  ASSERT_EQ(t.configs.size(), 2u);
  for (const auto& c : t.configs) {
    EXPECT_EQ(c.loss(), "sppo");
    EXPECT_FALSE(c.has_magnet_checkpoint());
  }
}

TEST_F(JobRunnerTest, MpoPairsCarryWinRatesAndTheMagnetIsRefreshedEveryMRounds) {
  spec_.set_algorithm("mpo");
  ClearDnoOnlyDefaults();
  spec_.set_rounds(5);
  spec_.mutable_pairs()->clear_policy();
  spec_.mutable_training()->clear_loss();
  spec_ = WithDefaults(spec_);
  ASSERT_TRUE(ValidateJobSpec(spec_, "").ok());
  EXPECT_EQ(spec_.pairs().policy(), "mpo_pairs");
  EXPECT_EQ(spec_.training().loss(), "mpo");
  EXPECT_EQ(spec_.mpo_magnet_refresh(), 2);
  FakeSampler s;
  FakeOracle o;
  FakeTrainer t;
  std::string dir = JobDir("job");
  ASSERT_TRUE(RunJob(dir, s, o, t).ok());
  RunDir rd(dir);
  // q̂ = 5/6, 1/2, 1/6; every gap >= min_gap 0.25: pairs (0,1), (0,2), (1,2) per prompt.
  auto pairs = ReadJsonl(rd.Pairs(1));
  ASSERT_EQ(pairs->size(), 24u);
  for (const auto& p : *pairs) {
    int64_t truth = *arith::ArithTruth(p["prompt"].get<std::string>());
    int64_t c = *arith::ParseArithAnswer(p["chosen"].get<std::string>()) - truth;
    int64_t r = *arith::ParseArithAnswer(p["rejected"].get<std::string>()) - truth;
    EXPECT_LT(c, r);
    const double q[] = {5.0 / 6, 0.5, 1.0 / 6};
    EXPECT_NEAR(p["chosen_win_rate"].get<double>(), q[c], 1e-12);
    EXPECT_NEAR(p["rejected_win_rate"].get<double>(), q[r], 1e-12);
  }
  // M = 2: magnet pi_0 for rounds 1-2, round 2's checkpoint for 3-4, round 4's for round 5.
  std::string base = *ResolveDataPath(JoinPath(root_, "base"), "", "base_model");
  const std::vector<std::string> want = {base, base, rd.Checkpoint(2), rd.Checkpoint(2),
                                         rd.Checkpoint(4)};
  ASSERT_EQ(t.configs.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(t.configs[i].loss(), "mpo");
    EXPECT_EQ(t.configs[i].magnet_checkpoint(), want[i]) << "round " << i + 1;
    EXPECT_DOUBLE_EQ(t.configs[i].mpo_alpha(), 0.5);  // the defaults that converge
    EXPECT_DOUBLE_EQ(t.configs[i].mpo_eta(), 11);
  }
}

TEST_F(JobRunnerTest, MpoMagnetRefreshEveryRound) {
  spec_.set_algorithm("mpo");
  ClearDnoOnlyDefaults();
  spec_.set_rounds(3);
  spec_.set_mpo_magnet_refresh(1);
  spec_.mutable_pairs()->clear_policy();
  spec_.mutable_training()->clear_loss();
  spec_ = WithDefaults(spec_);
  ASSERT_TRUE(ValidateJobSpec(spec_, "").ok());
  FakeSampler s;
  FakeOracle o;
  FakeTrainer t;
  std::string dir = JobDir("job");
  ASSERT_TRUE(RunJob(dir, s, o, t).ok());
  RunDir rd(dir);
  // M = 1: the magnet is always pi_t itself (the init checkpoint of the round).
  ASSERT_EQ(t.configs.size(), 3u);
  EXPECT_EQ(t.configs[0].magnet_checkpoint(),
            *ResolveDataPath(JoinPath(root_, "base"), "", "base_model"));
  EXPECT_EQ(t.configs[1].magnet_checkpoint(), rd.Checkpoint(1));
  EXPECT_EQ(t.configs[2].magnet_checkpoint(), rd.Checkpoint(2));
}

TEST_F(JobRunnerTest, JudgingStartsWhileSamplingIsStillRunning) {
  FakeOracle o;
  FakeSampler s;
  // The stream stays open after prompt 0 until the oracle got a comparison and the runner
  // reported judge progress (a latch with a timeout as failure, never a sleep).
  s.hold_after_first = [&] {
    if (!o.WaitForFirstComparison(std::chrono::seconds(60))) return false;
    std::unique_lock<std::mutex> lock(events_mu_);
    return events_cv_.wait_for(lock, std::chrono::seconds(60), [&] {
      for (const v1::JobEvent& ev : full_events_) {
        if (ev.stage() == "judge" && ev.kind() == "progress") return true;
      }
      return false;
    });
  };
  FakeTrainer t;
  std::string dir = JobDir("job");
  ASSERT_TRUE(RunJob(dir, s, o, t).ok());
  EXPECT_FALSE(s.blocked_timed_out);
  // The events show the overlap: round 1's judge started and made progress before sampling
  // finished.
  int judge_progress = -1, judge_started = -1, sample_finished = -1;
  for (size_t i = 0; i < full_events_.size(); ++i) {
    const v1::JobEvent& ev = full_events_[i];
    if (ev.round() != 1) continue;
    if (ev.stage() == "judge" && ev.kind() == "stage_started" && judge_started < 0)
      judge_started = i;
    if (ev.stage() == "judge" && ev.kind() == "progress" && judge_progress < 0) judge_progress = i;
    if (ev.stage() == "sample" && ev.kind() == "stage_finished") sample_finished = i;
  }
  ASSERT_GE(judge_started, 0);
  ASSERT_GE(judge_progress, 0);
  ASSERT_GE(sample_finished, 0);
  EXPECT_LT(judge_started, sample_finished);
  EXPECT_LT(judge_progress, sample_finished);
  EXPECT_TRUE(absl::StrContains(full_events_[judge_progress].message(), "of 8 prompts sampled"))
      << full_events_[judge_progress].message();
  EXPECT_EQ(*ReadFile(RunDir(dir).Stage(2)), "eval\n");
  EXPECT_EQ(ReadJsonl(RunDir(dir).Judgments(1))->size(), 24u);
}

TEST_F(JobRunnerTest, PipelinedRunWritesTheSameBytesAsAnUnpipelinedOne) {
  spec_.mutable_sampling()->set_num_samples(4);
  FakeSampler s0;
  s0.distinct = 3;  // repeated texts: shared comparisons, flipped orientations
  FakeOracle o0;
  FakeTrainer t0;
  std::string ref = JobDir("unpipelined");
  pipeline_ = false;
  ASSERT_TRUE(RunJob(ref, s0, o0, t0).ok());

  FakeSampler s1;
  s1.distinct = 3;
  s1.reverse = true;  // results arrive out of prompt order
  FakeOracle o1;
  FakeTrainer t1;
  std::string dir = JobDir("pipelined");
  pipeline_ = true;
  judge_chunk_ = 2;  // many small concurrent chunks
  judge_in_flight_ = 3;
  ASSERT_TRUE(RunJob(dir, s1, o1, t1).ok());
  int chunks = 0;
  for (const std::string& k : o1.keys) chunks += absl::StrContains(k, "iter_001/judge/") ? 1 : 0;
  EXPECT_GT(chunks, 1);
  RunDir a(ref), b(dir);
  for (int r = 1; r <= 2; ++r) {
    for (auto f :
         {&RunDir::Samples, &RunDir::Judgments, &RunDir::Pairs, &RunDir::Eval, &RunDir::Stage}) {
      auto x = ReadFile((a.*f)(r));
      auto y = ReadFile((b.*f)(r));
      ASSERT_TRUE(x.ok() && y.ok()) << (b.*f)(r);
      EXPECT_EQ(*x, *y) << (b.*f)(r);
    }
  }
  // Nothing judged twice, nothing more than unpipelined.
  EXPECT_EQ(o1.paid, o0.paid);
}

TEST_F(JobRunnerTest, OracleUnavailableWhilePipelinedRetriesOnlyTheJudging) {
  FakeSampler s;
  FakeOracle o;
  o.unavailable_times = 1;
  FakeTrainer t;
  std::string dir = JobDir("job");
  ASSERT_TRUE(RunJob(dir, s, o, t).ok());
  EXPECT_EQ(o.unavailable_times, 0);
  int round1_sampling = 0;
  for (const std::string& k : s.keys) round1_sampling += k == "job-1/iter_001/sample" ? 1 : 0;
  EXPECT_EQ(round1_sampling, 1);  // samples were whole and kept; only judging was re-run
  EXPECT_EQ(ReadJsonl(RunDir(dir).Judgments(1))->size(), 24u);
}

TEST_F(JobRunnerTest, DnoPrctTeacherJoinsTheCandidates) {
  spec_.mutable_pairs()->set_use_teacher(true);
  ASSERT_TRUE(ValidateJobSpec(spec_, "").ok());
  EXPECT_DOUBLE_EQ(spec_.pairs().teacher_min_gap(), 0.5);  // 2 x min_gap
  FakeSampler s;
  s.offset = 1;  // samples answer truth+1, truth+2, truth+3: only the teacher (gold) is right
  FakeOracle o;
  FakeTrainer t;
  std::string dir = JobDir("job");
  ASSERT_TRUE(RunJob(dir, s, o, t).ok());
  RunDir rd(dir);
  // K = 3 samples + the teacher: 6 comparisons per prompt, the teacher is candidate 3.
  auto judgments = ReadJsonl(rd.Judgments(1));
  ASSERT_EQ(judgments->size(), 8u * 6u);
  int with_teacher = 0;
  for (const auto& j : *judgments) {
    if (j["j"].get<int>() == 3) {
      ++with_teacher;
      EXPECT_DOUBLE_EQ(j["p_a_wins"].get<double>(), 0.0) << j;  // the sample loses to the teacher
    }
  }
  EXPECT_EQ(with_teacher, 8 * 3);
  // Win rates over the 3 others: teacher 1, truth+1 2/3, truth+2 1/3, truth+3 0. The teacher
  // (margin 0.5) beats truth+2 and truth+3, not truth+1 (gap 1/3); the samples (margin 0.25):
  // truth+1 beats truth+2 and truth+3; truth+2 (1/3) is below the gate.
  auto pairs = ReadJsonl(rd.Pairs(1));
  ASSERT_EQ(pairs->size(), 8u * 4u);
  int teacher_chosen = 0;
  for (const auto& p : *pairs) {
    int64_t truth = *arith::ArithTruth(p["prompt"].get<std::string>());
    int64_t c = *arith::ParseArithAnswer(p["chosen"].get<std::string>()) - truth;
    int64_t r = *arith::ParseArithAnswer(p["rejected"].get<std::string>()) - truth;
    EXPECT_LT(c, r);
    if (c == 0) {
      ++teacher_chosen;
      EXPECT_GE(r, 2);
    }
  }
  EXPECT_EQ(teacher_chosen, 8 * 2);
}

TEST_F(JobRunnerTest, DnoPrctDefectsAreNeitherJudgedNorChosen) {
  ASSERT_EQ(spec_.pairs().defect_ngram(), 4);  // dno defaults
  ASSERT_EQ(spec_.pairs().defect_max_repeats(), 2);
  FakeSampler s;
  s.defect_last = true;  // samples: truth, truth+1, "7 7 7 ..." (a 4-gram 9 times)
  FakeOracle o;          // would fail to parse the defect: it must never be sent
  FakeTrainer t;
  std::string dir = JobDir("job");
  ASSERT_TRUE(RunJob(dir, s, o, t).ok());
  RunDir rd(dir);
  auto judgments = ReadJsonl(rd.Judgments(1));
  ASSERT_EQ(judgments->size(), 8u);  // only (truth, truth+1) per prompt
  auto pairs = ReadJsonl(rd.Pairs(1));
  ASSERT_EQ(pairs->size(), 8u * 3u);
  int against_defect = 0;
  for (const auto& p : *pairs) {
    EXPECT_FALSE(absl::StrContains(p["chosen"].get<std::string>(), " ")) << p;
    if (absl::StrContains(p["rejected"].get<std::string>(), " ")) {
      ++against_defect;
      EXPECT_DOUBLE_EQ(p["rejected_win_rate"].get<double>(), 0.0);
    }
  }
  // Both sound samples (win rates 1 and 0.5, both >= the gate) are preferred over the defect.
  EXPECT_EQ(against_defect, 16);
}

// Sample 0 (the right answer) was cut at max_new_tokens: by default an automatic negative, like a
// defect — not judged, never chosen, rejected by every sound candidate — and its pairs say so, so
// that the trainer adds no EOS to it.
TEST_F(JobRunnerTest, UnfinishedSamplesAreAutomaticNegativesAndMarkedInPairs) {
  ASSERT_TRUE(spec_.pairs().unfinished_negative());  // the default
  FakeSampler s;
  s.unfinished_index = 0;  // truth (cut), truth+1, truth+2
  FakeOracle o;
  FakeTrainer t;
  std::string dir = JobDir("job");
  ASSERT_TRUE(RunJob(dir, s, o, t).ok());
  RunDir rd(dir);
  auto samples = ReadJsonl(rd.Samples(1));
  EXPECT_FALSE((*samples)[0]["samples"][0]["finished"].get<bool>());
  EXPECT_EQ(ReadJsonl(rd.Judgments(1))->size(), 8u);  // only (truth+1, truth+2) per prompt
  // Win rates 1 (truth+1), 0.5 (truth+2), 0 (cut): truth+1 > truth+2, both > the cut answer.
  auto pairs = ReadJsonl(rd.Pairs(1));
  ASSERT_EQ(pairs->size(), 8u * 3u);
  int against_cut = 0;
  for (const auto& p : *pairs) {
    const int64_t truth = *arith::ArithTruth(p["prompt"].get<std::string>());
    EXPECT_NE(p["chosen"], std::to_string(truth)) << p;
    EXPECT_TRUE(p["chosen_finished"].get<bool>()) << p;
    const bool cut = p["rejected"] == std::to_string(truth);
    EXPECT_EQ(p["rejected_finished"].get<bool>(), !cut) << p;
    against_cut += cut ? 1 : 0;
  }
  EXPECT_EQ(against_cut, 16);
}

// pairs.unfinished_negative = false: the cut sample competes on its judged merit (here it wins),
// and is still marked unfinished in its pairs.
TEST_F(JobRunnerTest, UnfinishedNegativeOffJudgesTheCutSampleAndStillMarksIt) {
  spec_.mutable_pairs()->set_unfinished_negative(false);
  FakeSampler s;
  s.unfinished_index = 0;
  FakeOracle o;
  FakeTrainer t;
  std::string dir = JobDir("job");
  ASSERT_TRUE(RunJob(dir, s, o, t).ok());
  RunDir rd(dir);
  EXPECT_EQ(ReadJsonl(rd.Judgments(1))->size(), 24u);
  auto pairs = ReadJsonl(rd.Pairs(1));
  ASSERT_EQ(pairs->size(), 24u);
  int cut_chosen = 0;
  for (const auto& p : *pairs) {
    const bool cut =
        p["chosen"] == std::to_string(*arith::ArithTruth(p["prompt"].get<std::string>()));
    EXPECT_EQ(p["chosen_finished"].get<bool>(), !cut) << p;
    EXPECT_TRUE(p["rejected_finished"].get<bool>()) << p;
    cut_chosen += cut ? 1 : 0;
  }
  EXPECT_EQ(cut_chosen, 16);
}

// Iterative DPO, SPPO and MPO treat a cut sample the same way: never chosen, the rejected side
// when there is one.
TEST_F(JobRunnerTest, UnfinishedSamplesAreNegativesForEveryJudgedRecipe) {
  for (const char* algo : {"dpo", "sppo", "mpo"}) {
    SCOPED_TRACE(algo);
    spec_.set_algorithm(algo);
    ClearDnoOnlyDefaults();
    spec_.mutable_pairs()->clear_policy();
    spec_.mutable_training()->clear_loss();
    spec_.mutable_training()->clear_beta();
    spec_ = WithDefaults(spec_);
    ASSERT_TRUE(ValidateJobSpec(spec_, "").ok());
    FakeSampler s;
    s.unfinished_index = 0;
    FakeOracle o;
    FakeTrainer t;
    std::string dir = JobDir(std::string("job-") + algo);
    ASSERT_TRUE(RunJob(dir, s, o, t).ok());
    RunDir rd(dir);
    EXPECT_EQ(ReadJsonl(rd.Judgments(1))->size(), 8u);
    auto pairs = ReadJsonl(rd.Pairs(1));
    ASSERT_FALSE(pairs->empty());
    for (const auto& p : *pairs) {
      const std::string truth = std::to_string(*arith::ArithTruth(p["prompt"].get<std::string>()));
      EXPECT_NE(p["chosen"], truth) << p;
      if (std::string(algo) != "mpo") EXPECT_EQ(p["rejected"], truth) << p;  // one pair each
      EXPECT_EQ(p["rejected_finished"].get<bool>(), p["rejected"] != truth) << p;
    }
  }
}

// DNO Algorithm 1 (pairs.policy "dno_soft_all", loss dno): every pair of distinct candidates,
// carrying its soft label p = σ(R(chosen) - R(rejected)), not the judge's verdict (1 here).
TEST_F(JobRunnerTest, DnoSoftAllKeepsEveryDistinctPairWithItsSoftLabel) {
  spec_.mutable_pairs()->set_policy("dno_soft_all");
  spec_.mutable_training()->clear_loss();
  spec_ = WithDefaults(spec_);
  ASSERT_TRUE(ValidateJobSpec(spec_, "").ok());
  EXPECT_EQ(spec_.training().loss(), "dno");
  FakeSampler s;
  s.distinct = 2;  // truth, truth+1, truth: one distinct pair per prompt
  FakeOracle o;
  FakeTrainer t;
  std::string dir = JobDir("job");
  ASSERT_TRUE(RunJob(dir, s, o, t).ok());
  RunDir rd(dir);
  auto pairs = ReadJsonl(rd.Pairs(1));
  ASSERT_EQ(pairs->size(), 8u);
  for (const auto& p : *pairs) {
    const int64_t truth = *arith::ArithTruth(p["prompt"].get<std::string>());
    EXPECT_EQ(p["chosen"], std::to_string(truth)) << p;
    EXPECT_EQ(p["rejected"], std::to_string(truth + 1)) << p;
    EXPECT_NEAR(p["p"].get<double>(), 1.0 / (1.0 + std::exp(-0.75)), 1e-12) << p;
    // R = mean over the two others: truth (0.5 vs its twin, 1 vs truth+1), truth+1 (0, 0).
    EXPECT_DOUBLE_EQ(p["chosen_win_rate"].get<double>(), 0.75) << p;
    EXPECT_DOUBLE_EQ(p["rejected_win_rate"].get<double>(), 0.0) << p;
  }
  ASSERT_FALSE(t.configs.empty());
  EXPECT_EQ(t.configs[0].loss(), "dno");
}

}  // namespace
}  // namespace spar::orchestrator

namespace spar::orchestrator {
namespace {

TEST_F(JobRunnerTest, SideBySideScoresBuildPairsWithDnoPrctThresholds) {
  spec_.mutable_pairs()->set_use_teacher(true);
  spec_.mutable_pairs()->set_scoring("side_by_side");
  ASSERT_TRUE(ValidateJobSpec(spec_, "").ok());
  FakeSampler s;
  s.offset = 1;  // samples truth+1, truth+2, truth+3 (scores 5, 3, 1); the teacher is right (6)
  FakeOracle o;
  FakeTrainer t;
  std::string dir = JobDir("job");
  ASSERT_TRUE(RunJob(dir, s, o, t).ok());
  // Round 1's judging is side-by-side only: no pairwise comparison went out for it.
  EXPECT_EQ(o.score_items.size(), 8u * 2u);  // both rounds' 8 prompts
  for (const v1::CompareRequest& r : o.scopes) {
    EXPECT_FALSE(absl::StrContains(r.idempotency_key(), "/judge")) << r.idempotency_key();
  }
  RunDir rd(dir);
  auto judgments = ReadJsonl(rd.Judgments(1));
  ASSERT_TRUE(judgments.ok());
  ASSERT_EQ(judgments->size(), 8u);  // one row per prompt
  for (const auto& j : *judgments) {
    EXPECT_EQ(j["scoring"], "side_by_side");
    EXPECT_TRUE(j["ok"].get<bool>());
    EXPECT_EQ(j["scores"], nlohmann::json::parse("[5, 3, 1, 6]")) << j;
    EXPECT_EQ(j["shown"], nlohmann::json::parse("[0, 1, 2, 3]")) << j;
  }
  // Gate 5: the teacher (6) needs a gap of 2 (beats truth+2 and truth+3, not truth+1); truth+1
  // (5) needs 1 (beats truth+2 and truth+3); truth+2 (3) is below the gate.
  auto pairs = ReadJsonl(rd.Pairs(1));
  ASSERT_EQ(pairs->size(), 8u * 4u);
  int teacher_chosen = 0;
  for (const auto& p : *pairs) {
    int64_t truth = *arith::ArithTruth(p["prompt"].get<std::string>());
    int64_t c = *arith::ParseArithAnswer(p["chosen"].get<std::string>()) - truth;
    int64_t r = *arith::ParseArithAnswer(p["rejected"].get<std::string>()) - truth;
    EXPECT_LT(c, r);
    EXPECT_GE(p["chosen_score"].get<int>(), 5);
    // The trainer's scale: score / 6.
    EXPECT_DOUBLE_EQ(p["chosen_win_rate"].get<double>(), p["chosen_score"].get<int>() / 6.0);
    EXPECT_DOUBLE_EQ(p["rejected_win_rate"].get<double>(), p["rejected_score"].get<int>() / 6.0);
    if (c == 0) {
      ++teacher_chosen;
      EXPECT_GE(r, 2);
    }
  }
  EXPECT_EQ(teacher_chosen, 8 * 2);
  EXPECT_EQ(job_.rounds(0).pairs_kept(), 32);
}

TEST_F(JobRunnerTest, SideBySidePipelinedMatchesUnpipelinedAndSkipsDefectsAndDuplicates) {
  spec_.mutable_pairs()->set_scoring("side_by_side");
  spec_.mutable_sampling()->set_num_samples(4);
  FakeSampler s0;
  s0.distinct = 2;        // truth, truth+1, truth, then
  s0.defect_last = true;  // a repetition defect
  FakeOracle o0;
  FakeTrainer t0;
  std::string ref = JobDir("unpipelined");
  pipeline_ = false;
  ASSERT_TRUE(RunJob(ref, s0, o0, t0).ok());

  FakeSampler s1;
  s1.distinct = 2;
  s1.defect_last = true;
  s1.reverse = true;
  FakeOracle o1;
  FakeTrainer t1;
  std::string dir = JobDir("pipelined");
  pipeline_ = true;
  judge_chunk_ = 2;
  judge_in_flight_ = 3;
  ASSERT_TRUE(RunJob(dir, s1, o1, t1).ok());
  int chunks = 0;
  for (const std::string& k : o1.keys) chunks += absl::StrContains(k, "iter_001/judge/") ? 1 : 0;
  EXPECT_GT(chunks, 1);
  RunDir a(ref), b(dir);
  for (int r = 1; r <= 2; ++r) {
    for (auto f : {&RunDir::Samples, &RunDir::Judgments, &RunDir::Pairs, &RunDir::Stage}) {
      auto x = ReadFile((a.*f)(r));
      auto y = ReadFile((b.*f)(r));
      ASSERT_TRUE(x.ok() && y.ok()) << (b.*f)(r);
      EXPECT_EQ(*x, *y) << (b.*f)(r);
    }
  }
  EXPECT_EQ(o1.paid, o0.paid);  // nothing scored twice, nothing more than unpipelined
  EXPECT_EQ(o1.score_items.size(), o0.score_items.size());
  // Each prompt shows its two distinct sound texts once; the duplicate takes the same score,
  // the defect none.
  for (const v1::ScoreItem& item : o1.score_items) {
    ASSERT_EQ(item.responses_size(), 2) << item.prompt();
  }
  auto judgments = ReadJsonl(b.Judgments(1));
  ASSERT_EQ(judgments->size(), 8u);
  for (const auto& j : *judgments) {
    EXPECT_EQ(j["scores"], nlohmann::json::parse("[6, 5, 6, null]")) << j;
  }
  // 6 beats 5 (gap 1) and the defect; 5 (>= the gate) beats the defect.
  EXPECT_EQ(ReadJsonl(b.Pairs(1))->size(), 8u * 3u);
}

TEST_F(JobRunnerTest, SideBySideFailedScoreLeavesThatPromptWithoutPairs) {
  spec_.mutable_pairs()->set_scoring("side_by_side");
  FakeSampler s;
  FakeOracle o;
  FakeTrainer t;
  std::string dir = JobDir("job");
  // Learn round 1's prompts from a first run, then fail one of them.
  ASSERT_TRUE(RunJob(dir, s, o, t).ok());
  ASSERT_FALSE(o.score_items.empty());
  const std::string failing = o.score_items[0].prompt();
  FakeSampler s2;
  FakeOracle o2;
  o2.fail_prompts.insert(failing);
  FakeTrainer t2;
  std::string dir2 = JobDir("job2");
  ASSERT_TRUE(RunJob(dir2, s2, o2, t2).ok());
  RunDir rd(dir2);
  auto judgments = ReadJsonl(rd.Judgments(1));
  int failed = 0;
  for (const auto& j : *judgments) {
    if (j["ok"].get<bool>()) continue;
    ++failed;
    EXPECT_TRUE(absl::StrContains(j["error"].get<std::string>(), "not guessing")) << j;
    EXPECT_EQ(j["scores"], nlohmann::json::parse("[null, null, null]")) << j;
  }
  EXPECT_EQ(failed, 1);
  auto pairs = ReadJsonl(rd.Pairs(1));
  auto all_pairs = ReadJsonl(RunDir(dir).Pairs(1));
  ASSERT_TRUE(pairs.ok() && all_pairs.ok());
  for (const auto& p : *pairs) EXPECT_NE(p["prompt"], failing);
  EXPECT_EQ(pairs->size(), all_pairs->size() - 3u);
}

// #12 item 4: an allocation failure (or any exception) on the runner's thread or on a worker
// thread fails the job with the reason; the process lives and the crash-loop count is cleared.
TEST_F(JobRunnerTest, BadAllocFailsTheJobInsteadOfTheProcess) {
  for (const char* key : {"iter_000/eval", "iter_001/sample"}) {
    SCOPED_TRACE(key);
    FakeSampler s;
    s.bad_alloc_key = key;
    FakeOracle o;
    FakeTrainer t;
    std::string dir = JobDir(absl::StrCat("job-", key[7] == '0' ? "eval" : "sample"));
    absl::Status st = RunJob(dir, s, o, t);
    EXPECT_THAT(st, StatusIs(absl::StatusCode::kInternal));
    EXPECT_TRUE(absl::StrContains(st.message(), "out of memory (std::bad_alloc)")) << st;
    EXPECT_EQ(UnfinishedStarts(dir), 0);
    EXPECT_TRUE(t.keys.empty());
  }
}

// Waits until `job_id` ends (job_finished); its final record.
absl::StatusOr<v1::Job> WaitForEnd(JobManager& m, const std::string& job_id) {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  auto h = m.Subscribe(job_id, [&](const v1::JobEvent& ev) {
    if (ev.kind() != "job_finished") return true;
    std::lock_guard<std::mutex> lock(mu);
    done = true;
    cv.notify_all();
    return false;
  });
  if (!h.ok()) return h.status();
  std::unique_lock<std::mutex> lock(mu);
  if (!cv.wait_for(lock, std::chrono::seconds(60), [&] { return done; })) {
    return absl::DeadlineExceededError("job did not end within 60 s");
  }
  return m.GetJob(job_id);
}

// #12 item 4: a job left RUNNING by two server crashes in a row (no stage completed in between)
// is not resumed a third time on start: FAILED with the reason; ResumeJob runs it again. One
// crash is resumed as before.
TEST_F(JobRunnerTest, JobThatCrashedTheServerTwiceIsNotResumedBlindly) {
  const std::string runs = JoinPath(root_, "runs");
  for (const auto& [id, starts] : {std::pair<std::string, int>{"twice", 2}, {"once", 1}}) {
    const std::string dir = JoinPath(runs, id);
    ASSERT_TRUE(MakeDirs(dir).ok());
    v1::Job job;
    job.set_job_id(id);
    *job.mutable_spec() = spec_;
    job.set_state(v1::JOB_STATE_RUNNING);
    std::string text;
    ASSERT_TRUE(google::protobuf::util::MessageToJsonString(job, &text).ok());
    ASSERT_TRUE(WriteFileAtomic(RunDir(dir).JobJson(), text).ok());
    for (int i = 0; i < starts; ++i) ASSERT_TRUE(RecordRunnerStart(dir).ok());
  }
  FakeSampler s;
  FakeOracle o;
  FakeTrainer t;
  JobManagerConfig config;
  config.runs_dir = runs;
  auto m = JobManager::Create(config, {&s, &o, &t}, nullptr);
  ASSERT_THAT(m, IsOk());
  absl::StatusOr<v1::Job> once = WaitForEnd(**m, "once");
  ASSERT_THAT(once, IsOk());
  EXPECT_EQ(once->state(), v1::JOB_STATE_SUCCEEDED) << once->error();
  absl::StatusOr<v1::Job> twice = (*m)->GetJob("twice");
  ASSERT_TRUE(twice.ok());
  EXPECT_EQ(twice->state(), v1::JOB_STATE_FAILED);
  EXPECT_TRUE(absl::StrContains(twice->error(), "stopped abnormally")) << twice->error();
  EXPECT_TRUE(absl::StrContains(twice->error(), "ResumeJob")) << twice->error();
  EXPECT_FALSE(PathExists(RunDir(JoinPath(runs, "twice")).Round(1)));  // nothing ran
  // An explicit ResumeJob is not blind: it runs the job (and the count starts over).
  ASSERT_TRUE((*m)->ResumeJob("twice").ok());
  absl::StatusOr<v1::Job> resumed = WaitForEnd(**m, "twice");
  ASSERT_THAT(resumed, IsOk());
  EXPECT_EQ(resumed->state(), v1::JOB_STATE_SUCCEEDED) << resumed->error();
  EXPECT_EQ(UnfinishedStarts(JoinPath(runs, "twice")), 0);
}

// #12 item 8: judge failures above judge.max_failure_rate fail the round (nothing trained); a
// refused key (UNAUTHENTICATED) fails it whatever the rate; a resumed round asks only what failed.
TEST_F(JobRunnerTest, JudgeFailuresAboveTheRateOrARefusedKeyFailTheRound) {
  for (const auto& [code, rate] :
       {std::pair<absl::StatusCode, double>{absl::StatusCode::kUnavailable, 0.2},
        {absl::StatusCode::kUnauthenticated, 1.0}}) {
    SCOPED_TRACE(absl::StatusCodeToString(code));
    spec_.mutable_judge()->set_max_failure_rate(rate);
    FakeSampler s;
    FakeOracle o;
    o.fail_every = 2;
    o.fail_code = code;
    FakeTrainer t;
    std::string dir = JobDir(absl::StrCat("job-", static_cast<int>(code)));
    absl::Status st = RunJob(dir, s, o, t);
    ASSERT_FALSE(st.ok());
    EXPECT_TRUE(t.keys.empty());  // nothing trained on a partial set
    EXPECT_FALSE(PathExists(RunDir(dir).Pairs(1)));
    if (code == absl::StatusCode::kUnauthenticated) {
      EXPECT_THAT(st, StatusIs(code));
      EXPECT_TRUE(absl::StrContains(st.message(), "refused the API key")) << st;
    } else {
      EXPECT_THAT(st, StatusIs(absl::StatusCode::kFailedPrecondition));
      EXPECT_TRUE(absl::StrContains(st.message(), "above judge.max_failure_rate 20.0%")) << st;
      EXPECT_TRUE(absl::StrContains(st.message(), "first error: UNAVAILABLE")) << st;
    }
    // Fixed: only the failed comparisons are asked again.
    std::map<std::string, int> paid_before = o.paid;
    o.fail_every = 0;
    ASSERT_TRUE(RunJob(dir, s, o, t).ok());
    ASSERT_FALSE(o.failed.empty());
    for (const auto& [key, n] : paid_before) {
      EXPECT_EQ(o.paid[key], o.failed.count(key) > 0 ? 2 : 1) << key;
    }
    EXPECT_FALSE(PathExists(JoinPath(RunDir(dir).Round(1), "judgments.partial.jsonl")));
  }
}

}  // namespace
}  // namespace spar::orchestrator
