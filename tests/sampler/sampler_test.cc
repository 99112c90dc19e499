#include "sampler/sampler.h"

#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/byte_tokenizer.h"
#include "model/policy.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/tiny_model.h"

namespace spar::sampler {
namespace {

using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;
using ::testing::HasSubstr;

std::string SaveTinyPolicy(uint64_t seed) {
  const model::LlamaConfig c = spar::testing::TinyByteLlamaConfig();
  absl::StatusOr<std::unique_ptr<model::Policy>> p = model::Policy::CreateRandom(c, seed);
  EXPECT_THAT(p, IsOk());
  const std::string dir =
      JoinPath(::testing::TempDir(), absl::StrCat("spar_sampler_test_", ::getpid(), "_", seed));
  EXPECT_TRUE((*p)->Save(dir).ok());
  return dir;
}

std::vector<PromptSamples> Collect(Sampler& s, const std::string& dir,
                                   const std::vector<std::string>& prompts,
                                   const SamplingParams& params) {
  std::vector<PromptSamples> out;
  absl::Status st = s.Generate(dir, prompts, params, [&](PromptSamples r) {
    out.push_back(std::move(r));
    return true;
  });
  EXPECT_THAT(st, IsOk());
  return out;
}

TEST(SamplerConfigTest, RejectsBadValues) {
  SamplerConfig c;
  c.max_batch_size = 0;
  EXPECT_EQ(Validate(c).message(), "sampler.max_batch_size must be > 0, got 0");
  c = SamplerConfig();
  c.policy_cache_size = 0;
  EXPECT_THAT(std::string(Validate(c).message()), HasSubstr("sampler.policy_cache_size"));
  EXPECT_FALSE(Sampler::Create(c).ok());
  EXPECT_TRUE(Validate(SamplerConfig()).ok());
}

TEST(SamplingParamsTest, RejectsBadValuesNamingTheField) {
  SamplingParams p;
  p.num_samples = 0;
  EXPECT_THAT(std::string(Validate(p).message()), HasSubstr("num_samples"));
  p = SamplingParams();
  p.temperature = -0.1f;
  EXPECT_THAT(std::string(Validate(p).message()), HasSubstr("temperature"));
  p = SamplingParams();
  p.top_p = 1.5f;
  EXPECT_THAT(std::string(Validate(p).message()), HasSubstr("top_p"));
  p = SamplingParams();
  p.top_p = 0.0f;
  EXPECT_THAT(std::string(Validate(p).message()), HasSubstr("top_p"));
  p = SamplingParams();
  p.max_new_tokens = 0;
  EXPECT_THAT(std::string(Validate(p).message()), HasSubstr("max_new_tokens"));
  EXPECT_THAT(Validate(p), StatusIs(absl::StatusCode::kInvalidArgument));
  p = SamplingParams();
  p.first_prompt_index = -1;
  EXPECT_THAT(std::string(Validate(p).message()), HasSubstr("first_prompt_index"));
}

TEST(SamplerTest, AShardWithItsFirstPromptIndexDrawsWhatTheWholeListWould) {
  const std::string dir = SaveTinyPolicy(6);
  const std::vector<std::string> prompts = {"1+1=", "22+33=", "4+", "9+9=", "50+50="};
  SamplingParams params;
  params.num_samples = 3;
  params.temperature = 1.0f;
  params.max_new_tokens = 6;
  params.seed = 23;
  SamplerConfig config;
  config.max_batch_size = 6;  // 2 prompts x 3 samples per batch: [0,2) [2,4) [4,5)
  absl::StatusOr<std::unique_ptr<Sampler>> s = Sampler::Create(config);
  ASSERT_TRUE(s.ok());
  std::vector<PromptSamples> whole = Collect(**s, dir, prompts, params);
  ASSERT_EQ(whole.size(), prompts.size());
  // Shard [2, 5) sent on its own (as to a second replica).
  params.first_prompt_index = 2;
  std::vector<PromptSamples> shard =
      Collect(**s, dir, {prompts.begin() + 2, prompts.end()}, params);
  ASSERT_EQ(shard.size(), 3u);
  bool any_differs_from_unshifted = false;
  for (size_t i = 0; i < shard.size(); ++i) {
    EXPECT_EQ(shard[i].index, static_cast<int64_t>(i));  // position in this request
    for (size_t j = 0; j < 3; ++j) {
      EXPECT_EQ(shard[i].samples[j].token_ids, whole[i + 2].samples[j].token_ids) << i << "," << j;
      // The shard starts on a batch boundary: the same batches, bit-identical log-probs.
      EXPECT_EQ(shard[i].samples[j].logprob, whole[i + 2].samples[j].logprob) << i << "," << j;
    }
  }
  // Without the index the shard's prompts would be drawn as prompts 0..2 (different samples).
  params.first_prompt_index = 0;
  std::vector<PromptSamples> unshifted =
      Collect(**s, dir, {prompts.begin() + 2, prompts.end()}, params);
  for (size_t i = 0; i < unshifted.size(); ++i) {
    for (size_t j = 0; j < 3; ++j) {
      any_differs_from_unshifted |=
          unshifted[i].samples[j].token_ids != whole[i + 2].samples[j].token_ids;
    }
  }
  EXPECT_TRUE(any_differs_from_unshifted);
}

TEST(SamplerTest, StreamsOnePerPromptInOrderAndIsChunkIndependent) {
  const std::string dir = SaveTinyPolicy(5);
  const std::vector<std::string> prompts = {"1+1=", "22+33=", "4+", "9+9=", "50+50="};
  SamplingParams params;
  params.num_samples = 3;
  params.temperature = 0.8f;
  params.top_p = 0.95f;
  params.max_new_tokens = 5;
  params.seed = 17;

  SamplerConfig big;
  absl::StatusOr<std::unique_ptr<Sampler>> s1 = Sampler::Create(big);
  ASSERT_TRUE(s1.ok());
  std::vector<PromptSamples> a = Collect(**s1, dir, prompts, params);
  ASSERT_EQ(a.size(), prompts.size());
  int64_t tokens = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].index, static_cast<int64_t>(i));
    EXPECT_EQ(a[i].prompt, prompts[i]);
    ASSERT_EQ(a[i].samples.size(), 3u);
    for (const auto& s : a[i].samples) {
      EXPECT_GE(s.token_ids.size(), 1u);
      EXPECT_LE(s.token_ids.size(), 5u);
      EXPECT_LT(s.logprob, 0.0);
      tokens += s.token_ids.size();
    }
  }
  EXPECT_EQ((*s1)->tokens_generated(), tokens);

  // Chunks of one prompt (max_batch_size 4 < 2 x 3 rows) give the same samples.
  SamplerConfig small;
  small.max_batch_size = 4;
  absl::StatusOr<std::unique_ptr<Sampler>> s2 = Sampler::Create(small);
  ASSERT_TRUE(s2.ok());
  std::vector<PromptSamples> b = Collect(**s2, dir, prompts, params);
  ASSERT_EQ(b.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    for (size_t j = 0; j < 3; ++j) {
      EXPECT_EQ(b[i].samples[j].text, a[i].samples[j].text);
      EXPECT_EQ(b[i].samples[j].token_ids, a[i].samples[j].token_ids);
      EXPECT_NEAR(b[i].samples[j].logprob, a[i].samples[j].logprob, 1e-4);
    }
  }
}

TEST(SamplerTest, CancelStopsGeneration) {
  const std::string dir = SaveTinyPolicy(6);
  SamplerConfig c;
  c.max_batch_size = 2;
  absl::StatusOr<std::unique_ptr<Sampler>> s = Sampler::Create(c);
  ASSERT_TRUE(s.ok());
  int calls = 0;
  absl::Status st = (*s)->Generate(dir, {"a", "b", "c", "d"}, SamplingParams(),
                                   [&](PromptSamples) { return ++calls < 2; });
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(calls, 2);
}

TEST(SamplerTest, CachesPoliciesLru) {
  const std::string d1 = SaveTinyPolicy(7), d2 = SaveTinyPolicy(8), d3 = SaveTinyPolicy(9);
  SamplerConfig c;
  c.policy_cache_size = 2;
  absl::StatusOr<std::unique_ptr<Sampler>> s = Sampler::Create(c);
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE((*s)->LoadPolicy(d1).ok());
  ASSERT_TRUE((*s)->LoadPolicy(d2).ok());
  ASSERT_TRUE((*s)->LoadPolicy(d1).ok());  // d1 most recent
  ASSERT_TRUE((*s)->LoadPolicy(d3).ok());  // evicts d2
  EXPECT_EQ((*s)->cached_policies(), std::vector<std::string>({d3, d1}));
  absl::Status missing = (*s)->LoadPolicy("/nonexistent/policy");
  EXPECT_THAT(missing, StatusIs(absl::StatusCode::kNotFound));
  absl::Status gen = (*s)->Generate("/nonexistent/policy", {"a"}, SamplingParams(),
                                    [](PromptSamples) { return true; });
  EXPECT_THAT(gen, StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace spar::sampler
