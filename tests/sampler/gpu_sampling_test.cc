// Greedy decoding on CUDA equals CPU (label gpu; skipped without a CUDA device): one random
// policy, copied to the CPU, generates the same tokens from the same prompts at temperature 0,
// with per-token log-probs within float32 kernel-order noise. Weights are scaled up from the
// 0.02 initialisation so that logits are O(1-10) and the argmax has no near ties.
#include <torch/torch.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/byte_tokenizer.h"
#include "model/internal/policy_internal.h"
#include "model/policy.h"
#include "tests/testing/status_matchers.h"

namespace spar::model {
namespace {

using ::spar::testing::IsOk;

LlamaConfig SmallConfig() {
  LlamaConfig c;
  c.vocab_size = ByteTokenizer::kVocabSize;
  c.hidden_size = 64;
  c.intermediate_size = 176;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  return c;
}

void ScaleWeights(Policy& policy, double factor) {
  torch::NoGradGuard no_grad;
  for (auto& p : policy.impl().module->named_parameters()) {
    if (p.key().find("norm") == std::string::npos) p.value().mul_(factor);
  }
}

TEST(GpuSamplingTest, GreedyOnCudaEqualsCpu) {
  auto gpu = Policy::CreateRandom(SmallConfig(), 11);
  ASSERT_THAT(gpu, IsOk());
  if (!(*gpu)->impl().device.is_cuda()) GTEST_SKIP() << "no CUDA device";
  auto cpu = Policy::CreateRandom(SmallConfig(), 11);
  ASSERT_THAT(cpu, IsOk());
  (*cpu)->impl().module->to(torch::kCPU);
  (*cpu)->impl().device = torch::Device(torch::kCPU);
  ScaleWeights(**gpu, 25.0);
  ScaleWeights(**cpu, 25.0);
  GenerationParams params;
  params.temperature = 0.0f;
  params.max_new_tokens = 24;
  const std::vector<std::string> prompts = {"12+30=", "hello world", "a", "The quick brown"};
  auto on_gpu = (*gpu)->Generate(prompts, params);
  auto on_cpu = (*cpu)->Generate(prompts, params);
  ASSERT_THAT(on_gpu, IsOk());
  ASSERT_THAT(on_cpu, IsOk());
  ASSERT_EQ(on_gpu->size(), prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    const Generation& g = (*on_gpu)[i];
    const Generation& c = (*on_cpu)[i];
    ASSERT_EQ(g.token_ids, c.token_ids) << prompts[i];
    ASSERT_EQ(g.token_logprobs[0].size(), c.token_logprobs[0].size());
    for (size_t t = 0; t < g.token_logprobs[0].size(); ++t) {
      EXPECT_NEAR(g.token_logprobs[0][t], c.token_logprobs[0][t], 1e-3) << prompts[i] << " " << t;
    }
  }
}

}  // namespace
}  // namespace spar::model
