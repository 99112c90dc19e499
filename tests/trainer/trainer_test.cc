#include "trainer/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/byte_tokenizer.h"
#include "model/internal/llama.h"
#include "model/policy.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/tiny_model.h"
#include "tests/trainer/toy_data.h"
#include "trainer/internal/train_util.h"

namespace spar::trainer {
namespace {

using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;
using ::testing::HasSubstr;

std::string TempDir(const std::string& name) {
  static int counter = 0;
  std::string dir = JoinPath(::testing::TempDir(), absl::StrCat("spar_trainer_test_", ::getpid(),
                                                                "_", counter++, "_", name));
  EXPECT_TRUE(RemoveAll(dir).ok());
  return dir;
}

std::string SaveTinyPolicy(uint64_t seed) {
  const model::LlamaConfig c = spar::testing::TinyByteLlamaConfig();
  absl::StatusOr<std::unique_ptr<model::Policy>> p = model::Policy::CreateRandom(c, seed);
  EXPECT_THAT(p, IsOk());
  const std::string dir = TempDir(absl::StrCat("init", seed));
  EXPECT_TRUE((*p)->Save(dir).ok());
  return dir;
}

// A tiny llama with the SentencePiece tokenizer of tests/data (32000 ids, BOS 1, EOS 2).
std::string SaveTinyHfPolicy(uint64_t seed) {
  model::LlamaConfig c = testing::TinyConfig();
  c.vocab_size = 32000;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  c.pad_token_id = 0;
  absl::StatusOr<std::unique_ptr<model::Policy>> p = model::Policy::CreateRandom(c, seed);
  EXPECT_THAT(p, IsOk());
  const std::string dir = TempDir(absl::StrCat("hf", seed));
  EXPECT_TRUE((*p)->Save(dir).ok());
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
    absl::StatusOr<std::string> contents =
        ReadFile(JoinPath("tests/data/tokenizers/spm-bpe-32k", f));
    EXPECT_TRUE(contents.ok()) << f;
    EXPECT_TRUE(WriteFileAtomic(JoinPath(dir, f), *contents).ok());
  }
  return dir;
}

std::vector<double> Scores(const std::string& dir,
                           const std::vector<std::pair<std::string, std::string>>& pr) {
  absl::StatusOr<std::unique_ptr<model::Policy>> p = model::Policy::Load(dir);
  EXPECT_THAT(p, IsOk());
  absl::StatusOr<std::vector<double>> s = (*p)->ScoreResponses(pr);
  EXPECT_TRUE(s.ok());
  return *s;
}

TEST(TrainConfigTest, ValidateNamesTheField) {
  TrainConfig c;
  c.loss = "x";
  EXPECT_THAT(std::string(Validate(c).message()), HasSubstr("train.loss: unknown loss \"x\""));
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
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument));
  r = TrainDpo(init, {{"1+1=", "2", "3"}, {"2+2=", "4", ""}}, TrainConfig(), out);
  EXPECT_THAT(
      r, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("pairs[1].rejected is empty")));
  r = TrainDpo("/nonexistent/init", {{"1+1=", "2", "3"}}, TrainConfig(), out);
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_FALSE(PathExists(out));
}

// #12 item 5: infinite settings are refused by Validate (finite numbers only), and a run that
// diverges anyway (finite settings whose product overflows float32) fails at the step instead of
// saving NaN weights.
TEST(TrainDpoTest, NonFiniteSettingsAreRefusedAndANonFiniteLossFailsTheStep) {
  TrainConfig c;
  c.weight_decay = std::numeric_limits<double>::infinity();
  EXPECT_EQ(std::string(Validate(c).message()),
            "train.weight_decay must be finite and in [0, 1], got inf");
  c = TrainConfig();
  c.nll_weight = std::numeric_limits<double>::infinity();
  EXPECT_THAT(std::string(Validate(c).message()), HasSubstr("train.nll_weight must be finite"));
  c = TrainConfig();
  c.max_grad_norm = std::nan("");
  EXPECT_THAT(std::string(Validate(c).message()), HasSubstr("train.max_grad_norm must be finite"));

  const std::string init = SaveTinyPolicy(3);
  const std::string out = TempDir("nonfinite");
  c = TrainConfig();
  c.nll_weight = 1e39;  // finite as a double, infinite as the float32 loss
  absl::StatusOr<TrainResult> r = TrainDpo(init, {{"1+2=", "3", "4"}, {"2+2=", "4", "5"}}, c, out);
  EXPECT_THAT(
      r, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("non-finite loss at step 1")));
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
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(result->steps, 3);
  ASSERT_EQ(progress.size(), 3u);
  // First step: policy == reference, so h = 0 and the loss is log 2.
  EXPECT_NEAR(progress[0].loss, std::log(2.0), 1e-4);
  EXPECT_NEAR(progress[0].metrics.at("rewards/margins"), 0.0, 1e-4);
  EXPECT_NEAR(progress[0].metrics.at("logps/chosen"), (c0[0] + c0[1] + c0[2] + c0[3]) / 4, 1e-3);
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
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kCancelled));
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
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->steps, 10);
  const std::vector<std::pair<std::string, std::string>> pr = {
      {"1+2=", "3"}, {"4+4=", "8"}, {"5+6=", "11"}};
  const std::vector<double> before = Scores(init, pr), after = Scores(out, pr);
  for (size_t i = 0; i < pr.size(); ++i) EXPECT_GT(after[i], before[i] + 1.0) << i;
  config.loss = "dpo";
  EXPECT_THAT(TrainSft(init, data, config, out), StatusIs(absl::StatusCode::kInvalidArgument));
}

// --- Loss family, bad input, optimisation details. ---

std::vector<std::pair<std::string, std::string>> Side(const std::vector<PreferencePair>& pairs,
                                                      bool chosen) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& p : pairs) out.push_back({p.prompt, chosen ? p.chosen : p.rejected});
  return out;
}

TEST(TrainDpoTest, EveryLossTakesAStepThatRaisesTheMargin) {
  const std::string init = SaveTinyPolicy(21);
  const std::string magnet = SaveTinyPolicy(22);
  std::vector<PreferencePair> pairs = testing::ToyPairs();
  pairs.resize(4);
  const std::vector<double> c0 = Scores(init, Side(pairs, true)),
                            r0 = Scores(init, Side(pairs, false));
  double mean0 = 0;
  for (size_t i = 0; i < pairs.size(); ++i) mean0 += (c0[i] - r0[i]) / pairs.size();
  for (const char* loss : {"dpo", "cdpo", "robust", "dno", "ipo", "ipo_sum", "hinge", "sppo",
                           "sppo_hard", "simpo", "mpo", "mpo_pg"}) {
    SCOPED_TRACE(loss);
    TrainConfig config = TrainConfigDefaults(loss);
    config.learning_rate = 1e-3;
    config.batch_size = 4;
    config.nll_weight = 0.1;
    if (std::string(loss) == "mpo") config.magnet_checkpoint = magnet;
    const std::string out = TempDir(loss);
    absl::StatusOr<TrainResult> r = TrainDpo(init, pairs, config, out);
    ASSERT_THAT(r, IsOk());
    EXPECT_EQ(r->steps, 1);
    for (const char* key : {"loss", "rewards/chosen", "rewards/rejected", "rewards/margins",
                            "rewards/accuracies", "logps/chosen", "logps/rejected"}) {
      EXPECT_EQ(r->metrics.count(key), 1u) << key;
    }
    const std::vector<double> c1 = Scores(out, Side(pairs, true)),
                              r1 = Scores(out, Side(pairs, false));
    double mean1 = 0;
    for (size_t i = 0; i < pairs.size(); ++i) mean1 += (c1[i] - r1[i]) / pairs.size();
    EXPECT_GT(mean1, mean0);
  }
  EXPECT_DOUBLE_EQ(TrainConfigDefaults("simpo").beta, 2.0);
  EXPECT_DOUBLE_EQ(TrainConfigDefaults("sppo").beta, 0.001);
}

// mpo_pg's REINFORCE advantage is each response's own win rate minus ½ (ALGORITHMS.md §5): with
// q̂ = 0.9 and 0.8 both responses beat π_t, so one step raises ℓ(y_l) too. (σ(q̂_w - q̂_l) - ½
// would have pushed y_l down as if it had lost.)
TEST(TrainDpoTest, MpoPgRaisesARejectedResponseThatBeatsThePolicy) {
  const std::string init = SaveTinyPolicy(25);
  PreferencePair pair{"3+4=", "7", "8"};
  pair.chosen_win_rate = 0.9;
  pair.rejected_win_rate = 0.8;
  const std::vector<PreferencePair> pairs = {pair};
  TrainConfig config = TrainConfigDefaults("mpo_pg");
  config.learning_rate = 1e-3;
  config.batch_size = 1;
  const std::string out = TempDir("mpo_pg_adv");
  absl::StatusOr<TrainResult> r = TrainDpo(init, pairs, config, out);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->steps, 1);
  const double c0 = Scores(init, Side(pairs, true))[0], r0 = Scores(init, Side(pairs, false))[0];
  const double c1 = Scores(out, Side(pairs, true))[0], r1 = Scores(out, Side(pairs, false))[0];
  EXPECT_GT(c1, c0);
  EXPECT_GT(r1, r0);
}

// A response cut at max_new_tokens is trained and scored as its tokens alone: no EOS, which would
// teach the policy to stop mid-answer. The first step's log-probs (policy = reference) are those
// of the bytes without EOS.
TEST(TrainDpoTest, UnfinishedResponsesGetNoEos) {
  const std::string init = SaveTinyPolicy(26);
  PreferencePair pair{"12+30=", "42", "4242424"};
  pair.rejected_finished = false;
  auto policy = model::Policy::Load(init);
  ASSERT_THAT(policy, IsOk());
  auto prompt = (*policy)->EncodePrompt(pair.prompt);
  auto rejected = (*policy)->EncodeResponse(pair.rejected, /*finished=*/false);
  ASSERT_TRUE(prompt.ok() && rejected.ok());
  EXPECT_EQ(*rejected, model::ByteTokenizer::Encode(pair.rejected));
  auto with_eos = (*policy)->EncodeResponse(pair.rejected);
  ASSERT_TRUE(with_eos.ok());
  EXPECT_EQ(with_eos->back(), model::ByteTokenizer::kEos);
  auto want_rejected = (*policy)->ScoreTokens({{*prompt, *rejected}});
  ASSERT_THAT(want_rejected, IsOk());
  for (bool chosen_finished : {true, false}) {
    SCOPED_TRACE(chosen_finished);
    pair.chosen_finished = chosen_finished;
    TrainConfig config;
    config.batch_size = 1;
    std::vector<TrainProgress> progress;
    absl::StatusOr<TrainResult> r =
        TrainDpo(init, {pair}, config, TempDir("unfinished"), [&](const TrainProgress& p) {
          progress.push_back(p);
          return true;
        });
    ASSERT_THAT(r, IsOk());
    ASSERT_EQ(progress.size(), 1u);
    EXPECT_NEAR(progress[0].metrics.at("logps/rejected"), (*want_rejected)[0], 1e-3);
    EXPECT_EQ(r->metrics.at("data/chosen_tokens"), chosen_finished ? 3.0 : 2.0);  // "42" (+ EOS)
  }
}

TEST(TrainDpoTest, SftOnChosenAndRmspropWithLinearSchedule) {
  const std::string init = SaveTinyPolicy(23);
  std::vector<PreferencePair> pairs = testing::ToyPairs();
  TrainConfig config;
  config.loss = "sft";
  config.optimizer = "rmsprop";
  config.lr_scheduler = "linear";
  config.warmup_ratio = 0.25;
  config.learning_rate = 1e-3;
  config.batch_size = 3;
  std::vector<double> lrs;
  absl::StatusOr<TrainResult> r =
      TrainDpo(init, pairs, config, TempDir("sft_rms"), [&](const TrainProgress& p) {
        lrs.push_back(p.metrics.at("learning_rate"));
        return true;
      });
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->metrics.count("nll/token"), 1u);
  // 4 steps, warmup ceil(0.25 * 4) = 1: lr 0, then 1, 2/3, 1/3 of the peak.
  ASSERT_EQ(lrs.size(), 4u);
  EXPECT_NEAR(lrs[0], 0.0, 1e-12);
  EXPECT_NEAR(lrs[1], 1e-3, 1e-12);
  EXPECT_NEAR(lrs[2], 2e-3 / 3, 1e-12);
  EXPECT_NEAR(lrs[3], 1e-3 / 3, 1e-12);
}

TEST(TrainDpoTest, BadInputGetsAClearInvalidArgument) {
  const std::string init = SaveTinyPolicy(24);
  const std::string out = TempDir("bad");
  const std::vector<PreferencePair> ok = {{"1+1=", "2", "3"}};
  auto code_and_message = [&](const std::string& ckpt, const std::vector<PreferencePair>& pairs,
                              const TrainConfig& c) {
    absl::StatusOr<TrainResult> r = TrainDpo(ckpt, pairs, c, out);
    EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument));
    return std::string(r.status().message());
  };
  EXPECT_THAT(code_and_message(init, {}, TrainConfig()), HasSubstr("no preference pairs"));
  EXPECT_THAT(code_and_message(init, {{"", "2", "3"}}, TrainConfig()),
              HasSubstr("pairs[0].prompt is empty"));
  EXPECT_THAT(code_and_message(init, {{"1+1=", "", "3"}}, TrainConfig()),
              HasSubstr("pairs[0].chosen is empty"));
  TrainConfig c;
  c.loss = "kto";
  EXPECT_THAT(code_and_message(init, ok, c), HasSubstr("train.loss: unknown loss \"kto\""));
  c = TrainConfig();
  c.optimizer = "sgd";
  EXPECT_THAT(code_and_message(init, ok, c),
              HasSubstr("train.optimizer: unknown optimizer \"sgd\""));
  c = TrainConfig();
  c.lr_scheduler = "step";
  EXPECT_THAT(code_and_message(init, ok, c), HasSubstr("train.lr_scheduler"));
  c = TrainConfig();
  c.label_smoothing = 0.5;
  EXPECT_THAT(code_and_message(init, ok, c), HasSubstr("train.label_smoothing"));
  c = TrainConfig();
  c.max_length = 8;
  c.max_prompt_length = 8;
  EXPECT_THAT(code_and_message(init, ok, c), HasSubstr("train.max_prompt_length"));
  std::vector<PreferencePair> bad_p = ok;
  bad_p[0].p = 1.5;
  EXPECT_THAT(code_and_message(init, bad_p, TrainConfig()), HasSubstr("pairs[0].p must be in"));

  // A checkpoint without tokenizer.json whose special ids are not the byte tokenizer's, or with a
  // SentencePiece tokenizer.model alone.
  model::LlamaConfig mc = testing::TinyConfig();
  mc.vocab_size = 300;
  mc.eos_token_id = 2;
  auto other = model::Policy::CreateRandom(mc, 1);
  ASSERT_TRUE(other.ok());
  const std::string other_dir = TempDir("other_tok");
  ASSERT_TRUE((*other)->Save(other_dir).ok());
  EXPECT_THAT(code_and_message(other_dir, ok, TrainConfig()),
              HasSubstr("does not match the byte tokenizer"));
  const std::string spm_dir = SaveTinyPolicy(25);
  ASSERT_TRUE(WriteFileAtomic(JoinPath(spm_dir, "tokenizer.model"), "x").ok());
  EXPECT_THAT(code_and_message(spm_dir, ok, TrainConfig()),
              HasSubstr("has tokenizer.model but no tokenizer.json"));
  // mpo's magnet must speak init's tokenizer.
  c = TrainConfig();
  c.loss = "mpo";
  c.magnet_checkpoint = SaveTinyHfPolicy(26);
  EXPECT_THAT(code_and_message(init, ok, c),
              HasSubstr("train.magnet_checkpoint: mismatched tokenizer"));
  c.magnet_checkpoint = init;
  EXPECT_THAT(code_and_message(SaveTinyHfPolicy(27), ok, c),
              HasSubstr("train.magnet_checkpoint: mismatched tokenizer"));
  // A tokenizer with more ids than the embedding table.
  const std::string small_vocab = SaveTinyPolicy(28);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
    ASSERT_TRUE(WriteFileAtomic(JoinPath(small_vocab, f),
                                *ReadFile(JoinPath("tests/data/tokenizers/spm-bpe-32k", f)))
                    .ok());
  }
  EXPECT_THAT(code_and_message(small_vocab, ok, TrainConfig()), HasSubstr("init_checkpoint: "));
  EXPECT_THAT(code_and_message(small_vocab, ok, TrainConfig()),
              HasSubstr("tokenizer has 32000 ids, config.vocab_size is only 259"));
  EXPECT_FALSE(PathExists(out));
}

// An HF checkpoint trains on its own tokenizer's ids: the first step's policy log-probs (equal to
// the reference's, so the rewards are 0) are Policy::ScoreResponses' for the same text, and the
// prompt ids are EncodePrompt's.
TEST(TrainDpoTest, HfTokenizerCheckpointTrainsOnItsOwnIds) {
  const std::string init = SaveTinyHfPolicy(30);
  const std::string magnet = SaveTinyHfPolicy(31);
  const std::vector<PreferencePair> pairs = {{"Hello, my dog is cute", " Yes it is.", " No."}};
  auto policy = model::Policy::Load(init);
  ASSERT_THAT(policy, IsOk());
  ASSERT_NE((*policy)->tokenizer(), nullptr);
  auto c0 = (*policy)->ScoreResponses({{pairs[0].prompt, pairs[0].chosen}});
  auto r0 = (*policy)->ScoreResponses({{pairs[0].prompt, pairs[0].rejected}});
  ASSERT_TRUE(c0.ok() && r0.ok());
  auto prompt_ids = (*policy)->EncodePrompt(pairs[0].prompt);
  auto chosen_ids = (*policy)->EncodeResponse(pairs[0].chosen);
  ASSERT_TRUE(prompt_ids.ok() && chosen_ids.ok());
  EXPECT_EQ(prompt_ids->front(), 1);  // the SentencePiece BOS
  EXPECT_EQ(chosen_ids->back(), 2);   // EOS
  for (const char* loss : {"dpo", "mpo"}) {
    TrainConfig config;
    config.loss = loss;
    config.learning_rate = 1e-3;
    config.batch_size = 1;
    if (config.loss == "mpo") config.magnet_checkpoint = magnet;  // same tokenizer: accepted
    std::vector<TrainProgress> progress;
    const std::string out = TempDir(absl::StrCat("hf_", loss));
    absl::StatusOr<TrainResult> result =
        TrainDpo(init, pairs, config, out, [&](const TrainProgress& p) {
          progress.push_back(p);
          return true;
        });
    ASSERT_THAT(result, IsOk());
    ASSERT_EQ(progress.size(), 1u);
    EXPECT_NEAR(progress[0].metrics.at("logps/chosen"), (*c0)[0], 1e-3) << loss;
    EXPECT_NEAR(progress[0].metrics.at("logps/rejected"), (*r0)[0], 1e-3) << loss;
    EXPECT_EQ(result->metrics.at("data/prompt_tokens"), static_cast<double>(prompt_ids->size()));
    EXPECT_EQ(result->metrics.at("data/chosen_tokens"), static_cast<double>(chosen_ids->size()));
    if (config.loss == "dpo") {
      EXPECT_NEAR(progress[0].metrics.at("rewards/chosen"), 0.0, 1e-5);
      EXPECT_NEAR(progress[0].metrics.at("rewards/rejected"), 0.0, 1e-5);
    }
    // The output is an HF checkpoint with the tokenizer files, and the update moved the weights.
    auto trained = model::Policy::Load(out);
    ASSERT_THAT(trained, IsOk());
    ASSERT_NE((*trained)->tokenizer(), nullptr);
    EXPECT_EQ((*trained)->TokenizerFingerprint(), (*policy)->TokenizerFingerprint());
    auto c1 = (*trained)->ScoreResponses({{pairs[0].prompt, pairs[0].chosen}});
    ASSERT_TRUE(c1.ok());
    EXPECT_NE((*c1)[0], (*c0)[0]);
  }
  // With a chat template the trainer's prompt ids are EncodePrompt's with that template.
  TrainConfig config;
  config.batch_size = 1;
  config.chat_template = "chatml";
  auto chat_ids = (*policy)->EncodePrompt(pairs[0].prompt, "chatml");
  auto chat_c0 = (*policy)->ScoreResponses({{pairs[0].prompt, pairs[0].chosen}}, 8, "chatml");
  ASSERT_TRUE(chat_ids.ok() && chat_c0.ok());
  ASSERT_NE(chat_ids->size(), prompt_ids->size());
  std::vector<TrainProgress> progress;
  absl::StatusOr<TrainResult> result =
      TrainDpo(init, pairs, config, TempDir("hf_chat"), [&](const TrainProgress& p) {
        progress.push_back(p);
        return true;
      });
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(result->metrics.at("data/prompt_tokens"), static_cast<double>(chat_ids->size()));
  EXPECT_NEAR(progress[0].metrics.at("logps/chosen"), (*chat_c0)[0], 1e-3);
  config.chat_template = "vicuna";
  EXPECT_THAT(TrainDpo(init, pairs, config, TempDir("hf_chat_bad")).status().message(),
              HasSubstr("train.chat_template"));
}

// The byte tokenizer's ids through the policy are the byte path's: BOS + bytes, bytes + EOS.
TEST(TrainUtilTest, PolicyEncodingMatchesByteTokenize) {
  auto policy = model::Policy::CreateRandom(testing::TinyConfig(), 1);
  ASSERT_TRUE(policy.ok());
  const internal::TokenizedExample ex = internal::Tokenize("12+3=", "15", 257);
  auto prompt = (*policy)->EncodePrompt("12+3=");
  auto response = (*policy)->EncodeResponse("15");
  ASSERT_TRUE(prompt.ok() && response.ok());
  std::vector<int32_t> want = {ex.first};
  want.insert(want.end(), ex.prompt.begin(), ex.prompt.end());
  EXPECT_EQ(*prompt, want);
  EXPECT_EQ(*response, ex.response);
}

TEST(TrainDpoTest, GradientAccumulationMatchesOneBigBatch) {
  const std::string init = SaveTinyPolicy(26);
  const std::vector<PreferencePair> pairs = testing::ToyPairs();
  TrainConfig config;
  config.learning_rate = 1e-3;
  config.batch_size = 6;
  config.loss = "ipo";
  const std::string a = TempDir("accum1"), b = TempDir("accum3");
  ASSERT_TRUE(TrainDpo(init, pairs, config, a).ok());
  config.gradient_accumulation_steps = 3;
  ASSERT_TRUE(TrainDpo(init, pairs, config, b).ok());
  const std::vector<double> sa = Scores(a, Side(pairs, true)), sb = Scores(b, Side(pairs, true));
  for (size_t i = 0; i < sa.size(); ++i) EXPECT_NEAR(sa[i], sb[i], 1e-4) << i;
}

TEST(TrainUtilTest, TruncationKeepsPromptEndAndResponseStart) {
  internal::TokenizedExample ex = internal::Tokenize("abcdef", "xyz", 257);  // response xyz+EOS
  internal::Truncate(ex, 4, 0);
  EXPECT_EQ(ex.prompt, (std::vector<int32_t>{'c', 'd', 'e', 'f'}));
  EXPECT_EQ(ex.response.size(), 4u);
  internal::Truncate(ex, 4, 6);
  EXPECT_EQ(ex.prompt.size(), 4u);
  EXPECT_EQ(ex.response, (std::vector<int32_t>{'x', 'y'}));
  ex = internal::Tokenize("abcdef", "xyz", 257);
  internal::Truncate(ex, 0, 3);  // the prompt alone is too long: one response token survives
  EXPECT_EQ(ex.prompt, (std::vector<int32_t>{'e', 'f'}));
  EXPECT_EQ(ex.response, (std::vector<int32_t>{'x'}));
  // A truncated batch masks exactly the kept response tokens.
  model::internal::ScoreBatch batch =
      model::internal::MakeScoreBatch({ex.prompt}, {ex.response}, 256, 258, torch::kCPU);
  EXPECT_EQ(batch.target_mask.sum().item<float>(), 1.0f);
}

TEST(TrainUtilTest, LengthBucketingIsDeterministicAndGroupsLengths) {
  std::vector<size_t> lengths;
  for (size_t i = 0; i < 64; ++i) lengths.push_back((i * 37) % 50);
  std::mt19937_64 r1(3), r2(3);
  auto b1 = internal::EpochBatches(lengths, 8, true, r1);
  auto b2 = internal::EpochBatches(lengths, 8, true, r2);
  EXPECT_EQ(b1, b2);
  ASSERT_EQ(b1.size(), 8u);
  std::vector<size_t> seen;
  size_t spread = 0;
  for (const auto& b : b1) {
    size_t lo = 1000, hi = 0;
    for (size_t i : b) {
      lo = std::min(lo, lengths[i]);
      hi = std::max(hi, lengths[i]);
      seen.push_back(i);
    }
    spread = std::max(spread, hi - lo);
  }
  std::sort(seen.begin(), seen.end());
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], i);
  EXPECT_LT(spread, 12u);  // unbucketed batches span ~the whole 0..49 range
}

TEST(TrainUtilTest, ScheduleFactors) {
  EXPECT_DOUBLE_EQ(internal::LrFactor("constant", 5, 10, 0), 1.0);
  EXPECT_DOUBLE_EQ(internal::LrFactor("linear", 1, 10, 2), 0.5);
  EXPECT_DOUBLE_EQ(internal::LrFactor("linear", 6, 10, 2), 0.5);
  EXPECT_DOUBLE_EQ(internal::LrFactor("cosine", 2, 10, 2), 1.0);
  EXPECT_NEAR(internal::LrFactor("cosine", 6, 10, 2), 0.5, 1e-12);
  EXPECT_NEAR(internal::LrFactor("cosine", 10, 10, 2), 0.0, 1e-12);
}

}  // namespace
}  // namespace spar::trainer
