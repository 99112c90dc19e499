// TrainListwise (brain, brain_no_baseline, rrhf) end to end on a tiny checkpoint: the first step's
// loss equals the papers' equations evaluated in double precision, response by response, on the
// sequence log-probs Policy::ScoreResponses gives (a different code path from the trainer's padded
// [groups, K] batch); training moves probability to the higher-reward responses; a cancelled run
// resumes to the same weights; bad groups are refused naming the field; groups.jsonl is read.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/policy.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/tiny_model.h"
#include "tests/trainer/toy_data.h"
#include "trainer/groups_file.h"
#include "trainer/trainer.h"

namespace spar::trainer {
namespace {

using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;
using ::testing::HasSubstr;

std::string TempDir(const std::string& name) {
  static int counter = 0;
  std::string dir = JoinPath(::testing::TempDir(), absl::StrCat("spar_listwise_test_", ::getpid(),
                                                                "_", counter++, "_", name));
  EXPECT_TRUE(RemoveAll(dir).ok());
  return dir;
}

std::string SaveTinyPolicy(uint64_t seed) {
  absl::StatusOr<std::unique_ptr<model::Policy>> p =
      model::Policy::CreateRandom(spar::testing::TinyByteLlamaConfig(), seed);
  EXPECT_THAT(p, IsOk());
  const std::string dir = TempDir(absl::StrCat("policy", seed));
  EXPECT_TRUE((*p)->Save(dir).ok());
  return dir;
}

// log π(y|x) of every response of `groups` under checkpoint `dir`, group by group.
std::vector<std::vector<double>> GroupScores(const std::string& dir,
                                             const std::vector<ListwiseGroup>& groups) {
  absl::StatusOr<std::unique_ptr<model::Policy>> p = model::Policy::Load(dir);
  EXPECT_THAT(p, IsOk());
  std::vector<std::vector<double>> out;
  for (const ListwiseGroup& g : groups) {
    std::vector<std::pair<std::string, std::string>> pr;
    for (const ListwiseResponse& r : g.responses) pr.push_back({g.prompt, r.text});
    absl::StatusOr<std::vector<double>> s = (*p)->ScoreResponses(pr);
    EXPECT_THAT(s, IsOk());
    out.push_back(*s);
  }
  return out;
}

using testing::ToyGroups;

// The proposal's log-probs: π_t's own, shifted per response so that q differs from π_t.
void SetProposals(std::vector<ListwiseGroup>& groups,
                  const std::vector<std::vector<double>>& policy) {
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t k = 0; k < groups[g].responses.size(); ++k) {
      groups[g].responses[k].proposal_logprob = policy[g][k] - 0.4 * static_cast<double>(k);
    }
  }
}

double LogSumExp(const std::vector<double>& x) {
  const double m = *std::max_element(x.begin(), x.end());
  double s = 0;
  for (double v : x) s += std::exp(v - m);
  return m + std::log(s);
}

// ALGORITHMS.md §9, one group, loop by loop: α_i = softmax_i(r_i/β + log π_SFT - log q); with the
// baseline -Σ α_i log softmax_i(ℓ_θ - log q), without it -Σ α_i ℓ_θ. Sets *ess = 1/Σ α_i².
double BrainReference(const ListwiseGroup& g, const std::vector<double>& policy,
                      const std::vector<double>& sft, double beta, bool baseline, double* ess) {
  const size_t k = g.responses.size();
  std::vector<double> a(k), b(k);
  for (size_t i = 0; i < k; ++i) {
    a[i] = g.responses[i].reward / beta + sft[i] - *g.responses[i].proposal_logprob;
    b[i] = policy[i] - *g.responses[i].proposal_logprob;
  }
  const double za = LogSumExp(a), zb = LogSumExp(b);
  double loss = 0, sq = 0;
  for (size_t i = 0; i < k; ++i) {
    const double alpha = std::exp(a[i] - za);
    sq += alpha * alpha;
    loss -= alpha * (baseline ? b[i] - zb : policy[i]);
  }
  *ess = 1 / sq;
  return loss;
}

// ALGORITHMS.md §10, one group: Σ_{r_i < r_j} max(0, p_i - p_j) with p = ℓ/|y| (|y| = bytes + EOS
// for the byte tokenizer), and -ℓ of the first highest reward.
void RrhfReference(const ListwiseGroup& g, const std::vector<double>& policy, double* rank,
                   double* ft) {
  const size_t k = g.responses.size();
  *rank = 0;
  size_t best = 0;
  for (size_t i = 0; i < k; ++i) {
    if (g.responses[i].reward > g.responses[best].reward) best = i;
    for (size_t j = 0; j < k; ++j) {
      if (!(g.responses[i].reward < g.responses[j].reward)) continue;
      const double pi = policy[i] / static_cast<double>(g.responses[i].text.size() + 1);
      const double pj = policy[j] / static_cast<double>(g.responses[j].text.size() + 1);
      *rank += std::max(0.0, pi - pj);
    }
  }
  *ft = -policy[best];
}

TrainConfig OneStep(const std::string& loss, double beta) {
  TrainConfig c;
  c.loss = loss;
  c.beta = beta;
  c.learning_rate = 1e-3;
  c.batch_size = 3;  // every group in one step
  c.epochs = 1;
  return c;
}

// The first step's loss is computed before its update: at π_t.
TrainProgress FirstStep(const std::string& init, const std::vector<ListwiseGroup>& groups,
                        const TrainConfig& config) {
  std::vector<TrainProgress> progress;
  absl::StatusOr<TrainResult> r =
      TrainListwise(init, groups, config, TempDir("out"), [&](const TrainProgress& p) {
        progress.push_back(p);
        return true;
      });
  EXPECT_THAT(r, IsOk());
  EXPECT_EQ(progress.size(), 1u);
  return progress.empty() ? TrainProgress{} : progress[0];
}

TEST(TrainListwiseTest, BrainFirstStepIsThePapersLossWithThePrior) {
  const std::string init = SaveTinyPolicy(3), prior = SaveTinyPolicy(4);
  std::vector<ListwiseGroup> groups = ToyGroups();
  const std::vector<std::vector<double>> policy = GroupScores(init, groups);
  const std::vector<std::vector<double>> sft = GroupScores(prior, groups);
  SetProposals(groups, policy);
  for (bool baseline : {true, false}) {
    TrainConfig config = OneStep(baseline ? "brain" : "brain_no_baseline", 0.5);
    config.prior_checkpoint = prior;
    double want = 0, want_ess = 0;
    for (size_t g = 0; g < groups.size(); ++g) {
      double ess = 0;
      want += BrainReference(groups[g], policy[g], sft[g], 0.5, baseline, &ess) / 3;
      want_ess += ess / 3;
    }
    const TrainProgress p = FirstStep(init, groups, config);
    EXPECT_NEAR(p.loss, want, 2e-4 * std::max(1.0, std::abs(want))) << config.loss;
    EXPECT_NEAR(p.metrics.at("brain/effective_sample_size"), want_ess, 1e-4) << config.loss;
    EXPECT_NEAR(p.metrics.at("group/responses"), 3.0, 1e-9);
  }
}

TEST(TrainListwiseTest, BrainWithoutAPriorUsesThePolicyItself) {
  const std::string init = SaveTinyPolicy(5);
  std::vector<ListwiseGroup> groups = ToyGroups();
  const std::vector<std::vector<double>> policy = GroupScores(init, groups);
  SetProposals(groups, policy);
  double want = 0, ess = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    want += BrainReference(groups[g], policy[g], policy[g], 0.25, true, &ess) / 3;
  }
  EXPECT_NEAR(FirstStep(init, groups, OneStep("brain", 0.25)).loss, want, 2e-4);
}

TEST(TrainListwiseTest, RrhfFirstStepIsThePapersLoss) {
  const std::string init = SaveTinyPolicy(6);
  const std::vector<ListwiseGroup> groups = ToyGroups();  // rrhf needs no proposal
  const std::vector<std::vector<double>> policy = GroupScores(init, groups);
  double rank = 0, ft = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    double r = 0, f = 0;
    RrhfReference(groups[g], policy[g], &r, &f);
    rank += r / 3;
    ft += f / 3;
  }
  const TrainProgress p = FirstStep(init, groups, OneStep("rrhf", 0.1));
  EXPECT_NEAR(p.metrics.at("rrhf/rank_loss"), rank, 1e-4 * std::max(1.0, rank));
  EXPECT_NEAR(p.metrics.at("rrhf/ft_loss"), ft, 1e-4 * ft);
  EXPECT_NEAR(p.loss, rank + ft, 1e-4 * (rank + ft));
}

// Trains `epochs` of one group a step; the scores of every response before and after.
void TrainToy(const std::string& loss, int epochs, std::vector<ListwiseGroup>* groups,
              std::vector<std::vector<double>>* before, std::vector<std::vector<double>>* after) {
  const std::string init = SaveTinyPolicy(7), out = TempDir(loss);
  *groups = ToyGroups();
  *before = GroupScores(init, *groups);
  for (size_t g = 0; g < groups->size(); ++g) {
    for (size_t k = 0; k < (*groups)[g].responses.size(); ++k) {
      (*groups)[g].responses[k].proposal_logprob = (*before)[g][k];  // sampled from π_t
    }
  }
  TrainConfig config = OneStep(loss, 0.2);
  config.batch_size = 1;
  config.epochs = epochs;
  ASSERT_THAT(TrainListwise(init, *groups, config, out), IsOk());
  *after = GroupScores(out, *groups);
}

// brain: each group's best response (highest reward) gains log-probability over the others.
TEST(TrainListwiseTest, BrainMovesProbabilityToTheHigherReward) {
  std::vector<ListwiseGroup> groups;
  std::vector<std::vector<double>> before, after;
  TrainToy("brain", 8, &groups, &before, &after);
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t k = 1; k < groups[g].responses.size(); ++k) {
      EXPECT_GT(after[g][0] - after[g][k], before[g][0] - before[g][k]) << g << " " << k;
    }
  }
}

// rrhf: its ranking loss (the hinge on length-normalized log-probabilities out of reward order)
// falls more than tenfold and the best response's log-probability rises.
TEST(TrainListwiseTest, RrhfLearnsTheRanking) {
  std::vector<ListwiseGroup> groups;
  std::vector<std::vector<double>> before, after;
  TrainToy("rrhf", 40, &groups, &before, &after);
  double rank_before = 0, rank_after = 0, ft = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    double r = 0;
    RrhfReference(groups[g], before[g], &r, &ft);
    rank_before += r;
    RrhfReference(groups[g], after[g], &r, &ft);
    rank_after += r;
    EXPECT_GT(after[g][0], before[g][0]) << g;
  }
  EXPECT_GT(rank_before, 0.1);
  EXPECT_LT(rank_after, 0.1 * rank_before) << rank_before;
}

TEST(TrainListwiseTest, ACancelledRunResumesToTheSameWeights) {
  const std::string init = SaveTinyPolicy(8), prior = SaveTinyPolicy(9);
  std::vector<ListwiseGroup> groups = ToyGroups();
  SetProposals(groups, GroupScores(init, groups));
  TrainConfig config = OneStep("brain", 0.5);
  config.prior_checkpoint = prior;
  config.batch_size = 1;
  config.epochs = 2;  // 6 steps
  config.save_every_steps = 1;
  const std::string whole = TempDir("whole"), resumed = TempDir("resumed");
  ASSERT_THAT(TrainListwise(init, groups, config, whole), IsOk());
  EXPECT_THAT(TrainListwise(init, groups, config, resumed,
                            [](const TrainProgress& p) { return p.step < 4; }),
              StatusIs(absl::StatusCode::kCancelled));
  absl::StatusOr<TrainResult> r = TrainListwise(init, groups, config, resumed);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->resumed_from_step, 4);
  const std::vector<std::vector<double>> a = GroupScores(whole, groups);
  const std::vector<std::vector<double>> b = GroupScores(resumed, groups);
  EXPECT_EQ(a, b);
}

TEST(TrainListwiseTest, BadGroupsAreRefusedNamingTheField) {
  const std::string init = SaveTinyPolicy(10), out = TempDir("bad");
  std::vector<ListwiseGroup> groups = ToyGroups();
  SetProposals(groups, GroupScores(init, groups));
  auto refused = [&](std::vector<ListwiseGroup> g, const TrainConfig& c, const std::string& what) {
    EXPECT_THAT(TrainListwise(init, g, c, out),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(what)))
        << what;
  };
  const TrainConfig brain = OneStep("brain", 0.5);
  refused({}, brain, "groups: no groups");
  auto one = groups;
  one[1].responses.resize(1);
  refused(one, brain, "groups[1].responses: has 1 response(s)");
  auto missing = groups;
  missing[2].responses[3].proposal_logprob.reset();
  refused(missing, brain, "groups[2].responses[3].proposal_logprob is required");
  EXPECT_THAT(TrainListwise(init, missing, OneStep("rrhf", 0.5), TempDir("rrhf")), IsOk());
  auto positive = groups;
  positive[0].responses[1].proposal_logprob = 0.5;
  refused(positive, brain, "groups[0].responses[1].proposal_logprob must be");
  auto nan = groups;
  nan[0].responses[0].reward = std::nan("");
  refused(nan, brain, "groups[0].responses[0].reward must be finite");
  auto empty = groups;
  empty[2].responses[1].text.clear();
  refused(empty, brain, "groups[2].responses[1].text is empty");
  refused(groups, OneStep("dpo", 0.1), "train.loss: \"dpo\" is not a listwise loss");
  TrainConfig prior = OneStep("rrhf", 0.1);
  prior.prior_checkpoint = init;
  refused(groups, prior, "train.prior_checkpoint");
  TrainConfig nll = brain;
  nll.nll_weight = 1;
  refused(groups, nll, "train.nll_weight");
  EXPECT_THAT(TrainDpo(init, {{"1+2=", "3", "4"}}, brain, out),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"brain\" is listwise")));
  EXPECT_FALSE(PathExists(out));
}

TEST(GroupsFileTest, ReadsRowsAndNamesBadFields) {
  const std::string dir = TempDir("groups");
  ASSERT_THAT(MakeDirs(dir), IsOk());
  const std::string path = JoinPath(dir, "groups.jsonl");
  ASSERT_THAT(
      WriteFileAtomic(path, R"({"prompt":"1+2=","responses":[{"text":"3","reward":1,)"
                            R"("proposal_logprob":-2.5},{"text":"4","reward":0.25,)"
                            R"("proposal_logprob":null,"finished":false}],"source_round":1})"
                            "\n"),
      IsOk());
  absl::StatusOr<std::vector<ListwiseGroup>> g = ReadGroupsFile(path, "groups_path");
  ASSERT_THAT(g, IsOk());
  ASSERT_EQ(g->size(), 1u);
  ASSERT_EQ((*g)[0].responses.size(), 2u);
  EXPECT_EQ((*g)[0].prompt, "1+2=");
  EXPECT_EQ((*g)[0].responses[0].proposal_logprob, -2.5);
  EXPECT_TRUE((*g)[0].responses[0].finished);
  EXPECT_EQ((*g)[0].responses[1].reward, 0.25);
  EXPECT_FALSE((*g)[0].responses[1].proposal_logprob.has_value());
  EXPECT_FALSE((*g)[0].responses[1].finished);

  for (const auto& [row, what] : std::vector<std::pair<std::string, std::string>>{
           {R"({"responses":[]})", "line 1: field \"prompt\" missing"},
           {R"({"prompt":"x","responses":{}})", "field \"responses\" missing or not an array"},
           {R"({"prompt":"x","responses":[{"text":"a"}]})", "field \"responses[0].reward\""},
           {R"({"prompt":"x","responses":[{"text":"a","reward":1},{"reward":1}]})",
            "field \"responses[1].text\""},
           {R"({"prompt":"x","responses":[{"text":"a","reward":1,"finished":1}]})",
            "field \"responses[0].finished\" is not a boolean"}}) {
    ASSERT_THAT(WriteFileAtomic(path, row + "\n"), IsOk());
    EXPECT_THAT(ReadGroupsFile(path, "groups_path"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(what)))
        << row;
  }
}

}  // namespace
}  // namespace spar::trainer
