#include "trainer/trainer.h"

#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/byte_tokenizer.h"
#include "model/policy.h"
#include "trainer/arith_base.h"

namespace spar::trainer {
namespace {

using ::testing::HasSubstr;

std::string TempDir(const std::string& name) {
  static int counter = 0;
  std::string dir = JoinPath(::testing::TempDir(), absl::StrCat("spar_trainer_test_", ::getpid(),
                                                                "_", counter++, "_", name));
  EXPECT_TRUE(RemoveAll(dir).ok());
  return dir;
}

std::string SaveTinyPolicy(uint64_t seed) {
  model::LlamaConfig c;
  c.vocab_size = model::ByteTokenizer::kVocabSize;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  absl::StatusOr<std::unique_ptr<model::Policy>> p = model::Policy::CreateRandom(c, seed);
  EXPECT_TRUE(p.ok()) << p.status();
  const std::string dir = TempDir(absl::StrCat("init", seed));
  EXPECT_TRUE((*p)->Save(dir).ok());
  return dir;
}

std::vector<double> Scores(const std::string& dir,
                           const std::vector<std::pair<std::string, std::string>>& pr) {
  absl::StatusOr<std::unique_ptr<model::Policy>> p = model::Policy::Load(dir);
  EXPECT_TRUE(p.ok()) << p.status();
  absl::StatusOr<std::vector<double>> s = (*p)->ScoreResponses(pr);
  EXPECT_TRUE(s.ok());
  return *s;
}

TEST(TrainConfigTest, ValidateNamesTheField) {
  TrainConfig c;
  c.loss = "x";
  EXPECT_EQ(Validate(c).message(), "train.loss: unknown loss \"x\"");
  c = TrainConfig();
  c.beta = 0;
  EXPECT_THAT(std::string(Validate(c).message()), HasSubstr("train.beta"));
  c = TrainConfig();
  c.learning_rate = -1;
  EXPECT_THAT(std::string(Validate(c).message()), HasSubstr("train.learning_rate"));
  c = TrainConfig();
  c.batch_size = 0;
  EXPECT_THAT(std::string(Validate(c).message()), HasSubstr("train.batch_size"));
  c = TrainConfig();
  c.epochs = 0;
  EXPECT_THAT(std::string(Validate(c).message()), HasSubstr("train.epochs"));
  c = TrainConfig();
  c.max_grad_norm = -1;
  EXPECT_THAT(std::string(Validate(c).message()), HasSubstr("train.max_grad_norm"));
  c = TrainConfig();
  c.nll_weight = -1;
  EXPECT_THAT(std::string(Validate(c).message()), HasSubstr("train.nll_weight"));
  EXPECT_TRUE(Validate(TrainConfig()).ok());
}

TEST(TrainDpoTest, RejectsBadInput) {
  const std::string init = SaveTinyPolicy(1);
  const std::string out = TempDir("out");
  absl::StatusOr<TrainResult> r = TrainDpo(init, {}, TrainConfig(), out);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  r = TrainDpo(init, {{"1+1=", "2", "3"}, {"2+2=", "4", ""}}, TrainConfig(), out);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("pairs[1].rejected is empty"));
  r = TrainDpo("/nonexistent/init", {{"1+1=", "2", "3"}}, TrainConfig(), out);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(PathExists(out));
}

TEST(TrainDpoTest, RaisesChosenOverRejectedAndReportsMetrics) {
  const std::string init = SaveTinyPolicy(2);
  const std::string out = TempDir("dpo");
  const std::vector<PreferencePair> pairs = {
      {"1+2=", "3", "4"}, {"10+5=", "15", "16"}, {"7+7=", "14", "41"}, {"2+2=", "4", "22"}};
  std::vector<std::pair<std::string, std::string>> chosen, rejected;
  for (const auto& p : pairs) {
    chosen.push_back({p.prompt, p.chosen});
    rejected.push_back({p.prompt, p.rejected});
  }
  const std::vector<double> c0 = Scores(init, chosen), r0 = Scores(init, rejected);

  TrainConfig config;
  config.learning_rate = 1e-3;
  config.batch_size = 4;
  config.epochs = 3;
  config.beta = 0.1;
  std::vector<TrainProgress> progress;
  absl::StatusOr<TrainResult> result =
      TrainDpo(init, pairs, config, out, [&](const TrainProgress& p) {
        progress.push_back(p);
        return true;
      });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->steps, 3);
  ASSERT_EQ(progress.size(), 3u);
  // First step: policy == reference, so h = 0 and the loss is log 2.
  EXPECT_NEAR(progress[0].loss, std::log(2.0), 1e-4);
  EXPECT_NEAR(progress[0].metrics.at("rewards/margins"), 0.0, 1e-4);
  EXPECT_NEAR(progress[0].metrics.at("logps/chosen"),
              (c0[0] + c0[1] + c0[2] + c0[3]) / 4, 1e-3);
  EXPECT_EQ(progress[2].total_steps, 3);
  EXPECT_GT(progress[2].tokens_per_second, 0.0);
  for (const char* key : {"rewards/chosen", "rewards/rejected", "rewards/margins",
                          "rewards/accuracies", "logps/chosen", "logps/rejected"}) {
    EXPECT_EQ(result->metrics.count(key), 1u) << key;
  }
  EXPECT_GT(result->metrics.at("rewards/margins"), 0.0);
  EXPECT_LT(result->final_loss, std::log(2.0));
  EXPECT_GT(result->num_parameters, 0);

  const std::vector<double> c1 = Scores(out, chosen), r1 = Scores(out, rejected);
  for (size_t i = 0; i < pairs.size(); ++i) {
    EXPECT_GT(c1[i] - r1[i], c0[i] - r0[i]) << i;
  }
}

TEST(TrainDpoTest, DeterministicGivenSeedAndCancellable) {
  const std::string init = SaveTinyPolicy(3);
  const std::vector<PreferencePair> pairs = {
      {"1+2=", "3", "4"}, {"10+5=", "15", "16"}, {"7+7=", "14", "41"}};
  TrainConfig config;
  config.learning_rate = 1e-3;
  config.batch_size = 2;
  config.nll_weight = 0.5;
  config.seed = 5;
  const std::string a = TempDir("a"), b = TempDir("b");
  ASSERT_TRUE(TrainDpo(init, pairs, config, a).ok());
  ASSERT_TRUE(TrainDpo(init, pairs, config, b).ok());
  const std::vector<std::pair<std::string, std::string>> probe = {{"1+2=", "3"}, {"9+9=", "18"}};
  EXPECT_EQ(Scores(a, probe), Scores(b, probe));

  const std::string c = TempDir("cancelled");
  absl::StatusOr<TrainResult> r =
      TrainDpo(init, pairs, config, c, [](const TrainProgress&) { return false; });
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled);
  EXPECT_FALSE(PathExists(c));
}

TEST(TrainSftTest, LowersNll) {
  const std::string init = SaveTinyPolicy(4);
  const std::string out = TempDir("sft");
  const std::vector<SftExample> data = {{"1+2=", "3"}, {"4+4=", "8"}, {"5+6=", "11"}};
  TrainConfig config;
  config.loss = "sft";
  config.learning_rate = 3e-3;
  config.batch_size = 3;
  config.epochs = 10;
  absl::StatusOr<TrainResult> r = TrainSft(init, data, config, out);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->steps, 10);
  const std::vector<std::pair<std::string, std::string>> pr = {
      {"1+2=", "3"}, {"4+4=", "8"}, {"5+6=", "11"}};
  const std::vector<double> before = Scores(init, pr), after = Scores(out, pr);
  for (size_t i = 0; i < pr.size(); ++i) EXPECT_GT(after[i], before[i] + 1.0) << i;
  config.loss = "dpo";
  EXPECT_EQ(TrainSft(init, data, config, out).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ArithBaseTest, BuildsAndSavesAShortRun) {
  ArithBaseOptions o;
  o.out_dir = TempDir("arith");
  o.max_steps = 3;
  o.eval_every = 2;
  o.eval_problems = 10;
  o.batch_size = 8;
  o.target_accuracy = 1.0;
  std::vector<int> steps;
  absl::StatusOr<ArithBaseReport> r =
      BuildArithBaseModel(o, [&](const ArithBaseProgress& p) { steps.push_back(p.step); });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->steps, 3);
  EXPECT_EQ(steps, std::vector<int>({1, 2, 3}));
  ASSERT_EQ(r->accuracy_curve.size(), 2u);  // steps 2 and 3 (the last)
  EXPECT_GT(r->num_parameters, 500000);
  EXPECT_LT(r->num_parameters, 1500000);
  absl::StatusOr<std::unique_ptr<model::Policy>> p = model::Policy::Load(o.out_dir);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)->config().hidden_size, 128);
  o.out_dir = "";
  EXPECT_EQ(BuildArithBaseModel(o).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace spar::trainer
