// CUDA sampling (label gpu; skipped without a CUDA device): greedy generation of 32 tokens on the
// GPU is token-identical to the same weights on the CPU, and the per-token log-probabilities
// agree to float32 accuracy.
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/byte_tokenizer.h"
#include "model/internal/policy_internal.h"
#include "model/policy.h"

namespace spar::model {
namespace {

std::unique_ptr<Policy> TinyPolicy(uint64_t seed) {
  LlamaConfig c;
  c.vocab_size = ByteTokenizer::kVocabSize;
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  absl::StatusOr<std::unique_ptr<Policy>> p = Policy::CreateRandom(c, seed);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? std::move(*p) : nullptr;
}

TEST(GpuSamplingTest, GreedyOnCudaEqualsCpu) {
  std::unique_ptr<Policy> gpu = TinyPolicy(7);
  std::unique_ptr<Policy> cpu = TinyPolicy(7);
  ASSERT_TRUE(gpu && cpu);
  if (!gpu->impl().device.is_cuda()) GTEST_SKIP() << "no CUDA device";
  cpu->impl().module->to(torch::kCPU);
  cpu->impl().device = torch::Device(torch::kCPU);

  GenerationParams params;
  params.temperature = 0.0f;
  params.max_new_tokens = 32;
  params.stop_token_ids = {};
  const std::vector<std::string> prompts = {"12+34=", "The quick brown fox", "ü 漢字 🙂", "a"};
  absl::StatusOr<std::vector<Generation>> g = gpu->Generate(prompts, params);
  absl::StatusOr<std::vector<Generation>> c = cpu->Generate(prompts, params);
  ASSERT_TRUE(g.ok()) << g.status();
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(g->size(), prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ((*g)[i].token_ids[0], (*c)[i].token_ids[0]) << "prompt " << i;
    const auto& lg = (*g)[i].token_logprobs[0];
    const auto& lc = (*c)[i].token_logprobs[0];
    ASSERT_EQ(lg.size(), lc.size());
    for (size_t t = 0; t < lg.size(); ++t) EXPECT_NEAR(lg[t], lc[t], 1e-4) << i << "/" << t;
  }
}

}  // namespace
}  // namespace spar::model
