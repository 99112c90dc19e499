#include "model/policy.h"

#include <unistd.h>

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/internal/file_sys_calls.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/byte_tokenizer.h"
#include "model/internal/policy_internal.h"
#include "model/safetensors.h"
#include "tests/common/fault_sys_calls.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/tiny_model.h"

namespace spar::model {
namespace {

using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;
using ::testing::HasSubstr;

LlamaConfig TinyConfig() {
  LlamaConfig c = spar::testing::TinyByteLlamaConfig();
  c.max_position_embeddings = 64;
  return c;
}

std::string TempDir(const std::string& name) {
  static int counter = 0;
  // A private parent per process: checkpoints are staged as tmp-* siblings, and tests running in
  // parallel must not see each other's (the round-trip test checks that none is left behind).
  static const std::string root = [] {
    std::string tmpl = JoinPath(::testing::TempDir(), "spar_model_test_XXXXXX");
    return std::string(::mkdtemp(tmpl.data()));
  }();
  std::string dir = JoinPath(root, absl::StrCat(counter++, "_", name));
  EXPECT_TRUE(RemoveAll(dir).ok());
  return dir;
}

std::unique_ptr<Policy> MakeTiny(uint64_t seed, LlamaConfig config = TinyConfig()) {
  absl::StatusOr<std::unique_ptr<Policy>> p = Policy::CreateRandom(config, seed);
  EXPECT_THAT(p, IsOk());
  return std::move(p).value();
}

torch::Tensor Logits(Policy& policy, const std::vector<int64_t>& ids) {
  torch::NoGradGuard no_grad;
  const int64_t t = ids.size();
  torch::Tensor in = torch::tensor(ids, torch::kInt64).unsqueeze(0);
  torch::Tensor pos = torch::arange(t, torch::kInt64).unsqueeze(0);
  return policy.impl().module->forward(in, pos, torch::Tensor()).squeeze(0);
}

TEST(ByteTokenizerTest, EncodesBytesAndSkipsSpecials) {
  EXPECT_EQ(ByteTokenizer::Encode("a+\xff"), std::vector<int32_t>({97, 43, 255}));
  EXPECT_EQ(ByteTokenizer::Decode({97, ByteTokenizer::kBos, 98, ByteTokenizer::kEos}), "ab");
}

TEST(PolicyTest, SaveLoadRoundTripGivesIdenticalLogits) {
  std::unique_ptr<Policy> policy = MakeTiny(3);
  const std::string dir = TempDir("ckpt");
  ASSERT_TRUE(policy->Save(dir).ok());
  EXPECT_TRUE(PathExists(JoinPath(dir, "config.json")));
  EXPECT_TRUE(PathExists(JoinPath(dir, "model.safetensors")));
  // No tmp-* leftovers next to the checkpoint.
  absl::StatusOr<std::vector<std::string>> siblings = ListDir(Dirname(dir));
  ASSERT_TRUE(siblings.ok());
  for (const auto& name : *siblings) EXPECT_EQ(name.rfind("tmp-", 0), std::string::npos) << name;

  absl::StatusOr<std::unique_ptr<Policy>> loaded = Policy::Load(dir);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ((*loaded)->NumParameters(), policy->NumParameters());
  const std::vector<int64_t> ids = {256, 51, 55, 43, 52, 56, 61, 57};
  EXPECT_TRUE(torch::equal(Logits(*policy, ids), Logits(**loaded, ids)));
  // Saving again over an existing checkpoint replaces it.
  std::unique_ptr<Policy> other = MakeTiny(4);
  ASSERT_TRUE(other->Save(dir).ok());
  loaded = Policy::Load(dir);
  ASSERT_TRUE(loaded.ok());
  EXPECT_TRUE(torch::equal(Logits(*other, ids), Logits(**loaded, ids)));
}

// A disk that fills up while a checkpoint is written (a fault-injected writer): the error is
// ResourceExhausted naming the file, the half-written tmp-* directory is removed, and an
// existing checkpoint at the target stays whole.
TEST(PolicyTest, SaveOnAFullDiskLeavesNoTmpDirAndKeepsTheOldCheckpoint) {
  const std::string parent = TempDir("full_disk");
  const std::string dir = JoinPath(parent, "ckpt");
  std::unique_ptr<Policy> old = MakeTiny(5);
  ASSERT_TRUE(old->Save(dir).ok());
  std::unique_ptr<Policy> next = MakeTiny(6);
  for (const std::string& target : {dir, JoinPath(parent, "fresh")}) {
    spar::testing::FaultSysCalls disk(parent, /*budget=*/2000);
    spar::internal::ScopedFileSysCallsForTesting scoped(&disk);
    const absl::Status st = next->Save(target);
    EXPECT_THAT(
        st, StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("No space left on device")));
    EXPECT_EQ(*ListDir(parent), std::vector<std::string>{"ckpt"}) << target;
  }
  absl::StatusOr<std::unique_ptr<Policy>> loaded = Policy::Load(dir);
  ASSERT_THAT(loaded, IsOk());
  const std::vector<int64_t> ids = {256, 51, 55, 43};
  EXPECT_TRUE(torch::equal(Logits(*old, ids), Logits(**loaded, ids)));
}

TEST(PolicyTest, UntiedEmbeddingsRoundTrip) {
  LlamaConfig c = TinyConfig();
  c.tie_word_embeddings = false;
  std::unique_ptr<Policy> policy = MakeTiny(5, c);
  const std::string dir = TempDir("untied");
  ASSERT_TRUE(policy->Save(dir).ok());
  absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Read(JoinPath(dir, "model.safetensors"));
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->tensors().count("lm_head.weight"), 1u);
  EXPECT_EQ(file->tensors().count("model.layers.1.self_attn.k_proj.weight"), 1u);
  EXPECT_EQ(file->tensors().at("model.layers.1.self_attn.k_proj.weight").shape,
            std::vector<int64_t>({16, 32}));  // 2 kv heads x head_dim 8
  absl::StatusOr<std::unique_ptr<Policy>> loaded = Policy::Load(dir);
  ASSERT_THAT(loaded, IsOk());
  const std::vector<int64_t> ids = {256, 10, 20};
  EXPECT_TRUE(torch::equal(Logits(*policy, ids), Logits(**loaded, ids)));
}

TEST(PolicyTest, LoadErrorsAreClear) {
  absl::StatusOr<std::unique_ptr<Policy>> missing = Policy::Load("/nonexistent/ckpt");
  EXPECT_THAT(missing, StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/ckpt")));

  std::unique_ptr<Policy> policy = MakeTiny(1);
  const std::string dir = TempDir("broken");
  ASSERT_TRUE(policy->Save(dir).ok());
  const std::string weights = JoinPath(dir, "model.safetensors");
  // Drop one tensor.
  {
    absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Read(weights);
    ASSERT_TRUE(file.ok());
    std::vector<SafetensorsTensorRef> refs;
    for (const auto& [name, e] : file->tensors()) {
      if (name == "model.layers.1.mlp.up_proj.weight") continue;
      refs.push_back({name, e.dtype, e.shape, file->Data(e)});
    }
    ASSERT_TRUE(WriteSafetensors(weights, refs).ok());
  }
  absl::StatusOr<std::unique_ptr<Policy>> loaded = Policy::Load(dir);
  EXPECT_THAT(loaded, StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr("missing tensor \"model.layers.1.mlp.up_proj.weight\"")));

  ASSERT_TRUE(WriteFileAtomic(JoinPath(dir, "config.json"), R"({"hidden_size": "x"})").ok());
  loaded = Policy::Load(dir);
  EXPECT_THAT(loaded, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("config.json")));

  ASSERT_TRUE(RemoveAll(weights).ok());
  loaded = Policy::Load(dir);
  EXPECT_THAT(loaded, StatusIs(absl::StatusCode::kNotFound, HasSubstr("model.safetensors")));
}

TEST(PolicyTest, ScoreResponsesMatchesManualLogSoftmax) {
  std::unique_ptr<Policy> policy = MakeTiny(11);
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {"12+3=", "15"}, {"7+70=", "77"}, {"1+1=", "3 or so"}};
  absl::StatusOr<std::vector<double>> scores = policy->ScoreResponses(pairs, /*max_batch_size=*/2);
  ASSERT_THAT(scores, IsOk());
  ASSERT_EQ(scores->size(), 3u);
  for (size_t i = 0; i < pairs.size(); ++i) {
    std::vector<int64_t> ids = {ByteTokenizer::kBos};
    for (int32_t t : ByteTokenizer::Encode(pairs[i].first)) ids.push_back(t);
    const size_t response_start = ids.size();
    for (int32_t t : ByteTokenizer::Encode(pairs[i].second)) ids.push_back(t);
    ids.push_back(ByteTokenizer::kEos);
    torch::Tensor logp = torch::log_softmax(Logits(*policy, ids).to(torch::kFloat64), -1);
    double expected = 0;
    for (size_t t = response_start; t < ids.size(); ++t) {
      expected += logp[t - 1][ids[t]].item<double>();
    }
    EXPECT_NEAR((*scores)[i], expected, 1e-4) << i;
  }
}

TEST(PolicyTest, SamplingIsDeterministicAndBatchIndependent) {
  std::unique_ptr<Policy> policy = MakeTiny(21);
  const std::vector<std::string> prompts = {"1+2=", "33+44=", "5+", "98+99="};
  GenerationParams p;
  p.temperature = 1.0f;
  p.top_p = 0.9f;
  p.num_samples = 3;
  p.max_new_tokens = 6;
  p.seed = 42;
  absl::StatusOr<std::vector<Generation>> a = policy->Generate(prompts, p);
  ASSERT_THAT(a, IsOk());
  ASSERT_EQ(a->size(), 4u);
  absl::StatusOr<std::vector<Generation>> again = policy->Generate(prompts, p);
  ASSERT_TRUE(again.ok());
  for (int mbs : {1, 2, 5}) {
    p.max_batch_size = mbs;
    absl::StatusOr<std::vector<Generation>> b = policy->Generate(prompts, p);
    ASSERT_TRUE(b.ok());
    for (size_t i = 0; i < prompts.size(); ++i) {
      EXPECT_EQ((*a)[i].prompt, prompts[i]);
      EXPECT_EQ((*b)[i].token_ids, (*a)[i].token_ids)
          << "max_batch_size " << mbs << " prompt " << i;
      EXPECT_EQ((*again)[i].token_ids, (*a)[i].token_ids);
    }
  }
  // A slice with first_prompt_index gets the same samples as in the full request.
  p.first_prompt_index = 2;
  absl::StatusOr<std::vector<Generation>> slice = policy->Generate({prompts[2], prompts[3]}, p);
  ASSERT_TRUE(slice.ok());
  EXPECT_EQ((*slice)[0].token_ids, (*a)[2].token_ids);
  EXPECT_EQ((*slice)[1].token_ids, (*a)[3].token_ids);
  // Another seed gives other samples somewhere.
  p.first_prompt_index = 0;
  p.seed = 43;
  absl::StatusOr<std::vector<Generation>> c = policy->Generate(prompts, p);
  ASSERT_TRUE(c.ok());
  bool differs = false;
  for (size_t i = 0; i < prompts.size(); ++i) differs |= (*c)[i].token_ids != (*a)[i].token_ids;
  EXPECT_TRUE(differs);
  // Samples of one prompt differ from each other (a random model is near uniform).
  EXPECT_NE((*a)[1].token_ids[0], (*a)[1].token_ids[1]);
}

TEST(PolicyTest, LogprobsOfFinishedSamplesMatchScoring) {
  // Exercises left padding and the KV cache: generation's per-token log-probs must equal a
  // fresh right-padded scoring pass of the same text.
  std::unique_ptr<Policy> policy = MakeTiny(8);
  const std::vector<std::string> prompts = {"1+2=", "33+44=", "5"};
  GenerationParams p;
  p.num_samples = 16;
  p.max_new_tokens = 30;
  p.seed = 9;
  absl::StatusOr<std::vector<Generation>> gens = policy->Generate(prompts, p);
  ASSERT_TRUE(gens.ok());
  std::vector<std::pair<std::string, std::string>> to_score;
  std::vector<double> expected;
  for (const auto& g : *gens) {
    for (size_t j = 0; j < g.texts.size(); ++j) {
      // Only samples whose tokens are all bytes + final EOS round-trip through text.
      bool plain = g.finished[j];
      for (size_t t = 0; t + 1 < g.token_ids[j].size(); ++t) plain &= g.token_ids[j][t] < 256;
      if (!plain) continue;
      to_score.push_back({g.prompt, g.texts[j]});
      expected.push_back(g.logprobs[j]);
    }
  }
  ASSERT_GE(to_score.size(), 3u) << "too few finished samples to compare";
  absl::StatusOr<std::vector<double>> scores = policy->ScoreResponses(to_score);
  ASSERT_TRUE(scores.ok());
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR((*scores)[i], expected[i], 1e-3) << i;
}

// Rewires a tiny untied model so its behaviour is known: attention and MLP outputs are zeroed,
// so the final hidden state is RMSNorm(embedding of the current token). Token '7' embeds to e0,
// every other token to e1. lm_head: after e1 predict '7' strongly; after e0 predict `after_seven`.
std::unique_ptr<Policy> ScriptedPolicy(int32_t after_seven) {
  LlamaConfig c = TinyConfig();
  c.tie_word_embeddings = false;
  std::unique_ptr<Policy> policy = MakeTiny(1, c);
  torch::NoGradGuard no_grad;
  for (auto& p : policy->impl().module->named_parameters()) {
    const std::string& name = p.key();
    if (name.find("o_proj") != std::string::npos || name.find("down_proj") != std::string::npos) {
      p.value().zero_();
    }
  }
  auto& m = policy->impl().module;
  torch::Tensor emb = m->model->embed_tokens->weight;
  emb.zero_();
  emb.select(1, 1).fill_(1.0);
  emb[55].zero_();
  emb[55][0] = 1.0;
  torch::Tensor head = m->lm_head->weight;
  head.zero_();
  head[55][1] = 10.0;
  head[after_seven][0] = 10.0;
  return policy;
}

TEST(PolicyTest, StopsAtEos) {
  std::unique_ptr<Policy> policy = ScriptedPolicy(ByteTokenizer::kEos);
  GenerationParams p;
  p.temperature = 0;
  p.max_new_tokens = 5;
  absl::StatusOr<std::vector<Generation>> g = policy->Generate({"ab", "x+y="}, p);
  ASSERT_THAT(g, IsOk());
  for (const auto& gen : *g) {
    EXPECT_EQ(gen.texts[0], "7");
    EXPECT_EQ(gen.token_ids[0], std::vector<int32_t>({55, ByteTokenizer::kEos}));
    EXPECT_TRUE(gen.finished[0]);
    EXPECT_LE(gen.logprobs[0], 0.0);
    EXPECT_GT(gen.logprobs[0], -0.01);
  }
  // Greedy is deterministic and seed-independent.
  p.seed = 77;
  absl::StatusOr<std::vector<Generation>> g2 = policy->Generate({"ab", "x+y="}, p);
  ASSERT_TRUE(g2.ok());
  EXPECT_EQ((*g2)[1].token_ids, (*g)[1].token_ids);
}

TEST(PolicyTest, RespectsMaxNewTokens) {
  std::unique_ptr<Policy> policy = ScriptedPolicy(55);  // '7' forever
  GenerationParams p;
  p.temperature = 0.5f;
  p.max_new_tokens = 4;
  p.num_samples = 2;
  absl::StatusOr<std::vector<Generation>> g = policy->Generate({"q"}, p);
  ASSERT_THAT(g, IsOk());
  for (int j = 0; j < 2; ++j) {
    EXPECT_EQ((*g)[0].texts[j], "7777");
    EXPECT_EQ((*g)[0].token_ids[j].size(), 4u);
    EXPECT_FALSE((*g)[0].finished[j]);
  }
  p.max_new_tokens = 1;
  g = policy->Generate({"q"}, p);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ((*g)[0].texts[0], "7");
}

TEST(PolicyTest, RejectsBadParams) {
  std::unique_ptr<Policy> policy = MakeTiny(2);
  GenerationParams p;
  p.top_p = 0;
  EXPECT_THAT(std::string(policy->Generate({"a"}, p).status().message()), HasSubstr("top_p"));
  p = GenerationParams();
  p.temperature = -1;
  EXPECT_THAT(std::string(policy->Generate({"a"}, p).status().message()), HasSubstr("temperature"));
  p = GenerationParams();
  p.max_new_tokens = 0;
  EXPECT_THAT(std::string(policy->Generate({"a"}, p).status().message()),
              HasSubstr("max_new_tokens"));
  p = GenerationParams();
  EXPECT_THAT(std::string(policy->Generate({std::string(100, 'a')}, p).status().message()),
              HasSubstr("max_position_embeddings"));
  LlamaConfig small = TinyConfig();
  small.vocab_size = 100;
  small.bos_token_id = small.eos_token_id = small.pad_token_id = 0;
  EXPECT_THAT(std::string(Policy::CreateRandom(small, 1).status().message()),
              HasSubstr("vocab_size"));
}

}  // namespace
}  // namespace spar::model
