// Activation checkpointing (LlamaForCausalLM::set_gradient_checkpointing, TrainConfig::
// gradient_checkpointing): recomputing each decoder layer in backward gives the gradients and
// the one-step weights of the plain backward, for full fine-tuning and for LoRA adapters with
// dropout (the recomputation replays the same dropout mask).
#include <cmath>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "model/byte_tokenizer.h"
#include "model/internal/llama.h"
#include "model/internal/policy_internal.h"
#include "model/policy.h"
#include "tests/testing/status_matchers.h"
#include "tests/trainer/toy_data.h"
#include "trainer/trainer.h"

namespace spar::trainer {
namespace {

using model::internal::LlamaForCausalLM;
using ::spar::testing::IsOk;

model::internal::ScoreBatch ToyBatch(const torch::Device& device) {
  std::vector<std::vector<int32_t>> prompts, responses;
  for (const PreferencePair& p : testing::ToyPairs()) {
    prompts.push_back(model::ByteTokenizer::Encode(p.prompt));
    responses.push_back(model::ByteTokenizer::Encode(p.chosen));
  }
  return model::internal::MakeScoreBatch(prompts, responses, model::ByteTokenizer::kBos,
                                         model::ByteTokenizer::kPad, device);
}

// Gradients of sum(log pi(response)) for every trainable parameter, by name.
std::map<std::string, torch::Tensor> Gradients(LlamaForCausalLM& module, bool checkpointing) {
  module->train();
  module->set_gradient_checkpointing(checkpointing);
  module->zero_grad();
  torch::manual_seed(5);  // the LoRA dropout masks
  const model::internal::ScoreBatch batch = ToyBatch(torch::kCPU);
  model::internal::TokenLogProbs(module, batch).sum().backward();
  std::map<std::string, torch::Tensor> grads;
  for (const auto& item : module->named_parameters()) {
    if (item.value().requires_grad()) grads[item.key()] = item.value().grad().clone();
  }
  return grads;
}

// Whether the autograd graph behind `t` has a node whose name contains `name`.
bool GraphHasNode(const torch::Tensor& t, const std::string& name) {
  std::vector<std::shared_ptr<torch::autograd::Node>> todo = {t.grad_fn()};
  std::set<torch::autograd::Node*> seen;
  while (!todo.empty()) {
    auto node = todo.back();
    todo.pop_back();
    if (node == nullptr || !seen.insert(node.get()).second) continue;
    if (node->name().find(name) != std::string::npos) return true;
    for (const auto& edge : node->next_edges()) todo.push_back(edge.function);
  }
  return false;
}

void ExpectSameGradients(LlamaForCausalLM& module, size_t want_count) {
  const auto plain = Gradients(module, false);
  const auto recomputed = Gradients(module, true);
  ASSERT_EQ(plain.size(), want_count);
  ASSERT_EQ(recomputed.size(), want_count);
  double max_diff = 0, max_abs = 0;
  for (const auto& [name, g] : plain) {
    ASSERT_TRUE(g.defined()) << name;
    ASSERT_TRUE(recomputed.at(name).defined()) << name;
    max_diff = std::max(max_diff, (g - recomputed.at(name)).abs().max().item<double>());
    max_abs = std::max(max_abs, g.abs().max().item<double>());
  }
  EXPECT_GT(max_abs, 1e-3) << "the gradients are not trivially zero";
  EXPECT_LE(max_diff, 1e-6);
}

TEST(ActivationCheckpointTest, FullModelGradientsEqualPlainBackward) {
  auto policy = model::Policy::CreateRandom(testing::TinyConfig(), 31);
  ASSERT_THAT(policy, IsOk());
  LlamaForCausalLM& module = (*policy)->impl().module;
  ExpectSameGradients(module, module->parameters().size());
  // The layers really are checkpointed (and only when asked, and only in training).
  const model::internal::ScoreBatch batch = ToyBatch(torch::kCPU);
  module->set_gradient_checkpointing(true);
  EXPECT_TRUE(GraphHasNode(model::internal::TokenLogProbs(module, batch), "CheckpointedLayer"));
  module->eval();
  EXPECT_FALSE(GraphHasNode(model::internal::TokenLogProbs(module, batch), "CheckpointedLayer"));
  module->train();
  module->set_gradient_checkpointing(false);
  EXPECT_FALSE(GraphHasNode(model::internal::TokenLogProbs(module, batch), "CheckpointedLayer"));
}

TEST(ActivationCheckpointTest, LoraGradientsWithDropoutEqualPlainBackward) {
  auto policy = model::Policy::CreateRandom(testing::TinyConfig(), 32);
  ASSERT_THAT(policy, IsOk());
  LlamaForCausalLM& module = (*policy)->impl().module;
  model::internal::AddLoraAdapters(
      module, /*rank=*/4, /*scale=*/2.0, /*dropout=*/0.2,
      {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
      /*seed=*/3);
  {
    // B starts at zero (no update, no gradient for A): give it values so both get gradients.
    torch::NoGradGuard no_grad;
    torch::manual_seed(9);
    for (auto& item : module->named_parameters()) {
      if (item.key().find("lora_B") != std::string::npos) item.value().normal_(0, 0.05);
    }
  }
  // 2 layers x 7 projections x (A, B); everything else frozen (embeddings too, so the first
  // layer's input does not require grad).
  ExpectSameGradients(module, 2 * 7 * 2);
  // Dropout is live: two plain backward passes with different masks differ.
  module->set_gradient_checkpointing(false);
  auto a = Gradients(module, false);
  module->zero_grad();
  torch::manual_seed(6);
  model::internal::TokenLogProbs(module, ToyBatch(torch::kCPU)).sum().backward();
  double diff = 0;
  for (const auto& item : module->named_parameters()) {
    if (item.value().requires_grad()) {
      diff = std::max(diff, (item.value().grad() - a.at(item.key())).abs().max().item<double>());
    }
  }
  EXPECT_GT(diff, 1e-6) << "dropout masks should depend on the seed";
}

TEST(ActivationCheckpointTest, OneTrainingStepGivesTheSameWeights) {
  const std::string root =
      JoinPath(::testing::TempDir(), absl::StrCat("spar_ckpt_test_", ::getpid()));
  ASSERT_TRUE(RemoveAll(root).ok());
  auto init = model::Policy::CreateRandom(testing::TinyConfig(), 33);
  ASSERT_TRUE(init.ok());
  const std::string init_dir = JoinPath(root, "init");
  ASSERT_TRUE((*init)->Save(init_dir).ok());
  TrainConfig config;
  config.learning_rate = 1e-3;
  config.batch_size = 12;  // all 12 pairs: one optimizer step
  config.epochs = 1;
  config.seed = 4;
  std::map<bool, std::string> out;
  for (bool ckpt : {false, true}) {
    config.gradient_checkpointing = ckpt;
    out[ckpt] = JoinPath(root, ckpt ? "ckpt" : "plain");
    absl::StatusOr<TrainResult> r = TrainDpo(init_dir, testing::ToyPairs(), config, out[ckpt]);
    ASSERT_THAT(r, IsOk());
    ASSERT_EQ(r->steps, 1);
  }
  auto a = model::Policy::Load(out[false]);
  auto b = model::Policy::Load(out[true]);
  ASSERT_TRUE(a.ok() && b.ok());
  auto pa = (*a)->impl().module->named_parameters();
  auto pb = (*b)->impl().module->named_parameters();
  auto p0 = (*init)->impl().module->named_parameters();
  double diff = 0, moved = 0;
  for (const auto& item : pa) {
    diff = std::max(diff, (item.value() - pb[item.key()]).abs().max().item<double>());
    moved = std::max(moved, (item.value() - p0[item.key()]).abs().max().item<double>());
  }
  EXPECT_GT(moved, 1e-4) << "the step changed the weights";
  EXPECT_LE(diff, 1e-6);
  RemoveAll(root).IgnoreError();
}

}  // namespace
}  // namespace spar::trainer
