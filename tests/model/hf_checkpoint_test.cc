// Hugging Face checkpoints: tiny random llama / mistral / qwen2 / qwen3 models written in HF
// layout, loaded back, KV-cache decoding against a full forward, scoring against generation.
#include <unistd.h>

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/internal/llama.h"
#include "model/internal/policy_internal.h"
#include "model/policy.h"
#include "model/safetensors.h"
#include "tests/testing/status_matchers.h"

namespace spar::model {
namespace {

using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;
using ::testing::HasSubstr;

std::string TempDir(const std::string& name) {
  static int counter = 0;
  std::string dir = JoinPath(::testing::TempDir(),
                             absl::StrCat("spar_hf_test_", ::getpid(), "_", counter++, "_", name));
  EXPECT_TRUE(RemoveAll(dir).ok());
  return dir;
}

LlamaConfig TinyHfConfig(const std::string& model_type) {
  LlamaConfig c;
  c.model_type = model_type;
  c.vocab_size = 300;
  c.hidden_size = 32;
  c.intermediate_size = 40;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 128;
  c.rope_theta = 1e6;
  c.tie_word_embeddings = model_type != "llama";
  c.qkv_bias = model_type == "qwen2";
  c.qk_norm = model_type == "qwen3";
  if (model_type == "qwen3") c.explicit_head_dim = 16;  // != hidden / heads, as in Qwen3
  if (model_type == "llama") {
    c.rope_scaling_type = "llama3";
    c.rope_scaling_factor = 8.0;
    c.rope_original_max_position_embeddings = 32;
  }
  return c;
}

// Randomizes every parameter (norms and biases included) so that loading them matters.
void Perturb(Policy& policy, uint64_t seed) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed);
  for (auto& p : policy.impl().module->parameters()) p.add_(torch::randn_like(p) * 0.05);
}

std::vector<torch::Tensor> Params(const Policy& policy) {
  std::vector<torch::Tensor> out;
  for (const auto& p : policy.impl().module->named_parameters()) out.push_back(p.value().clone());
  return out;
}

class HfCheckpointTest : public ::testing::TestWithParam<std::string> {};

TEST_P(HfCheckpointTest, RoundTripsInHfLayout) {
  LlamaConfig config = TinyHfConfig(GetParam());
  auto policy = Policy::CreateRandom(config, 7);
  ASSERT_THAT(policy, IsOk());
  Perturb(**policy, 11);
  const std::string dir = TempDir(GetParam());
  // qwen3 is written in shards of at most 20 KB to exercise model.safetensors.index.json.
  const int64_t shard = GetParam() == "qwen3" ? 20'000 : int64_t{1} << 30;
  ASSERT_TRUE((*policy)->Save(dir, shard).ok());
  if (GetParam() == "qwen3") {
    EXPECT_TRUE(PathExists(JoinPath(dir, "model.safetensors.index.json")));
    EXPECT_FALSE(PathExists(JoinPath(dir, "model.safetensors")));
  } else {
    EXPECT_TRUE(PathExists(JoinPath(dir, "model.safetensors")));
  }
  auto json = ReadJsonFile(JoinPath(dir, "config.json"));
  ASSERT_TRUE(json.ok());
  EXPECT_EQ((*json)["model_type"], GetParam());
  auto loaded = Policy::Load(dir);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ((*loaded)->config().model_type, GetParam());
  EXPECT_EQ((*loaded)->config().head_dim(), config.head_dim());
  EXPECT_EQ((*loaded)->NumParameters(), (*policy)->NumParameters());
  std::vector<torch::Tensor> a = Params(**policy), b = Params(**loaded);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << i;
  // The architecture-specific tensors are there.
  auto names = (*loaded)->impl().module->named_parameters();
  EXPECT_EQ(names.contains("model.layers.0.self_attn.q_proj.bias"), GetParam() == "qwen2");
  EXPECT_EQ(names.contains("model.layers.1.self_attn.k_norm.weight"), GetParam() == "qwen3");
  EXPECT_EQ(names.contains("lm_head.weight"), GetParam() == "llama");
}

// Logits with the KV cache (prefill + one token at a time) equal one full forward within 1e-4.
TEST_P(HfCheckpointTest, KvCacheMatchesFullForward) {
  auto policy = Policy::CreateRandom(TinyHfConfig(GetParam()), 3);
  ASSERT_TRUE(policy.ok());
  Perturb(**policy, 5);
  auto& module = (*policy)->impl().module;
  torch::NoGradGuard no_grad;
  const int64_t b = 2, t = 40, prefill = 7;  // t > original_max_position_embeddings (llama3)
  torch::Tensor ids = torch::randint(0, 300, {b, t}, torch::kInt64);
  torch::Tensor pos = torch::arange(t, torch::kInt64).unsqueeze(0).expand({b, t});
  torch::Tensor full = module->forward(ids, pos, torch::Tensor());
  internal::KvCache cache;
  std::vector<torch::Tensor> steps = {module->forward(
      ids.narrow(1, 0, prefill), pos.narrow(1, 0, prefill), torch::Tensor(), &cache)};
  for (int64_t i = prefill; i < t; ++i) {
    steps.push_back(
        module->forward(ids.narrow(1, i, 1), pos.narrow(1, i, 1), torch::Tensor(), &cache));
  }
  torch::Tensor incremental = torch::cat(steps, 1);
  const double diff = (incremental - full).abs().max().item<double>();
  EXPECT_LT(diff, 1e-4) << GetParam();
}

// The log-prob of a generated response, scored afresh, equals the sum of the per-token log-probs
// that generation reported.
TEST_P(HfCheckpointTest, ScoringMatchesGenerationLogProbs) {
  auto policy = Policy::CreateRandom(TinyHfConfig(GetParam()), 9);
  ASSERT_TRUE(policy.ok());
  Perturb(**policy, 13);
  GenerationParams params;
  params.max_new_tokens = 12;
  params.num_samples = 3;
  params.seed = 21;
  params.top_k = 50;
  params.min_p = 0.01f;
  auto gens = (*policy)->Generate({"Hi", "a longer prompt"}, params);
  ASSERT_THAT(gens, IsOk());
  std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> pairs;
  std::vector<double> reported;
  for (const Generation& g : *gens) {
    for (int j = 0; j < params.num_samples; ++j) {
      ASSERT_EQ(g.token_logprobs[j].size(), g.token_ids[j].size());
      double sum = 0;
      for (double lp : g.token_logprobs[j]) sum += lp;
      EXPECT_NEAR(sum, g.logprobs[j], 1e-9);
      reported.push_back(sum);
      pairs.emplace_back(g.prompt_ids, g.token_ids[j]);
    }
  }
  auto scored = (*policy)->ScoreTokens(pairs);
  ASSERT_THAT(scored, IsOk());
  for (size_t i = 0; i < reported.size(); ++i) EXPECT_NEAR((*scored)[i], reported[i], 1e-4) << i;
}

INSTANTIATE_TEST_SUITE_P(Architectures, HfCheckpointTest,
                         ::testing::Values("llama", "mistral", "qwen2", "qwen3"));

TEST(HfCheckpointLoadTest, BfloatOnDiskIsConvertedAndTokenizerCopied) {
  LlamaConfig config = TinyHfConfig("llama");
  config.vocab_size = 32000;  // the SentencePiece tokenizer's
  config.bos_token_id = 1;
  config.eos_token_id = 2;
  config.pad_token_id = 0;
  config.torch_dtype = "bfloat16";
  auto policy = Policy::CreateRandom(config, 1);
  ASSERT_THAT(policy, IsOk());
  const std::string dir = TempDir("bf16");
  ASSERT_TRUE((*policy)->Save(dir).ok());
  auto file = SafetensorsFile::Read(JoinPath(dir, "model.safetensors"));
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->tensors().at("model.embed_tokens.weight").dtype, SafetensorsDType::kBF16);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
    auto contents = ReadFile(JoinPath("tests/data/tokenizers/spm-bpe-32k", f));
    ASSERT_TRUE(contents.ok());
    ASSERT_TRUE(WriteFileAtomic(JoinPath(dir, f), *contents).ok());
  }
  auto loaded = Policy::Load(dir);
  ASSERT_THAT(loaded, IsOk());
  ASSERT_NE((*loaded)->tokenizer(), nullptr);
  torch::Tensor want = (*policy)->impl().module->named_parameters()["model.norm.weight"];
  torch::Tensor got = (*loaded)->impl().module->named_parameters()["model.norm.weight"];
  EXPECT_EQ(got.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(got, want.to(torch::kBFloat16).to(torch::kFloat32)));
  // Prompts go through the SentencePiece tokenizer with its BOS.
  auto ids = (*loaded)->EncodePrompt("Hello, my dog is cute");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int32_t>{1, 22557, 28725, 586, 3914, 349, 17949}));
  GenerationParams params;
  params.max_new_tokens = 4;
  params.stop_strings = {"\n"};
  auto gens = (*loaded)->Generate({"Hello"}, params);
  ASSERT_THAT(gens, IsOk());
  EXPECT_EQ(gens->at(0).texts[0].find('\n'), std::string::npos);
  // Saving again copies the tokenizer files.
  const std::string again = TempDir("again");
  ASSERT_TRUE((*loaded)->Save(again).ok());
  EXPECT_EQ(*ReadFile(JoinPath(again, "tokenizer.json")),
            *ReadFile(JoinPath(dir, "tokenizer.json")));
}

// chat_template: "none" feeds the raw text, "auto" the checkpoint's own template (here
// tokenizer_config.json's, rendered by the Jinja interpreter), a name that family's template;
// generation, scoring and EncodePrompt agree. Byte tokenizer: "auto" = raw.
TEST(HfCheckpointLoadTest, ChatTemplateShapesThePromptIds) {
  LlamaConfig config = TinyHfConfig("llama");
  config.vocab_size = 32000;
  config.bos_token_id = 1;
  config.eos_token_id = 2;
  config.pad_token_id = 0;
  auto policy = Policy::CreateRandom(config, 4);
  ASSERT_THAT(policy, IsOk());
  const std::string dir = TempDir("chat");
  ASSERT_TRUE((*policy)->Save(dir).ok());
  auto tok_json = ReadFile("tests/data/tokenizers/spm-bpe-32k/tokenizer.json");
  auto tok_config = ReadJsonFile("tests/data/tokenizers/spm-bpe-32k/tokenizer_config.json");
  ASSERT_TRUE(tok_json.ok() && tok_config.ok());
  // A Zephyr-style Jinja template that keeps only the user turns.
  (*tok_config)["chat_template"] =
      "{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\\n' + "
      "message['content'] + eos_token + '\\n' }}{% endif %}{% endfor %}"
      "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";
  ASSERT_TRUE(WriteFileAtomic(JoinPath(dir, "tokenizer.json"), *tok_json).ok());
  ASSERT_TRUE(WriteJsonFileAtomic(JoinPath(dir, "tokenizer_config.json"), *tok_config).ok());
  auto loaded = Policy::Load(dir);
  ASSERT_THAT(loaded, IsOk());
  const HfTokenizer& tok = *(*loaded)->tokenizer();
  EXPECT_EQ(*(*loaded)->ResolveChatTemplate("auto"),
            "checkpoint tokenizer_config.json chat_template");
  EXPECT_EQ(*(*loaded)->ResolveChatTemplate("none"), "");
  EXPECT_EQ(*(*loaded)->ResolveChatTemplate("qwen"), "chatml");
  const std::string prompt = "What is 2+2?";
  auto raw = (*loaded)->EncodePrompt(prompt, "none");
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(*raw, *(*loaded)->EncodePrompt(prompt));
  EXPECT_EQ(*raw, *tok.Encode(prompt, EncodeOptions{true, true}));
  auto zephyr = (*loaded)->EncodePrompt(prompt, "auto");
  ASSERT_THAT(zephyr, IsOk());
  EXPECT_EQ(*zephyr, *tok.Encode("<|user|>\n" + prompt + "</s>\n<|assistant|>\n"));
  auto chatml = (*loaded)->EncodePrompt(prompt, "chatml");
  ASSERT_TRUE(chatml.ok());
  EXPECT_EQ(*chatml,
            *tok.Encode("<|im_start|>user\n" + prompt + "<|im_end|>\n<|im_start|>assistant\n"));
  EXPECT_NE(*chatml, *zephyr);
  EXPECT_THAT((*loaded)->EncodePrompt(prompt, "vicuna"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // Generation feeds the templated ids; scoring with the same setting agrees with it.
  GenerationParams params;
  params.max_new_tokens = 5;
  params.chat_template = "auto";
  auto gens = (*loaded)->Generate({prompt}, params);
  ASSERT_THAT(gens, IsOk());
  EXPECT_EQ(gens->at(0).prompt_ids, *zephyr);
  auto scored = (*loaded)->ScoreResponses({{prompt, "four"}}, 8, "auto");
  auto response = (*loaded)->EncodeResponse("four");
  ASSERT_TRUE(scored.ok() && response.ok());
  EXPECT_EQ(response->back(), 2);
  auto by_tokens = (*loaded)->ScoreTokens({{*zephyr, *response}});
  ASSERT_TRUE(by_tokens.ok());
  EXPECT_NEAR((*scored)[0], (*by_tokens)[0], 1e-9);
  params.chat_template = "vicuna";
  EXPECT_THAT((*loaded)->Generate({prompt}, params), StatusIs(absl::StatusCode::kInvalidArgument));

  // The byte tokenizer has no template: "auto" is the raw text, a name is refused.
  LlamaConfig byte_config = TinyHfConfig("llama");
  auto byte_policy = Policy::CreateRandom(byte_config, 5);
  ASSERT_TRUE(byte_policy.ok());
  EXPECT_EQ(*(*byte_policy)->EncodePrompt(prompt, "auto"), *(*byte_policy)->EncodePrompt(prompt));
  auto named = (*byte_policy)->EncodePrompt(prompt, "chatml");
  EXPECT_THAT(named, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(named.status().message().find("no tokenizer.json"), std::string::npos);
}

// Memory-mapped loading of a bf16 checkpoint in many shards gives the same weights as one file,
// each equal to the original rounded to bf16.
TEST(HfCheckpointLoadTest, ShardedMappedCheckpointLoadsEqual) {
  LlamaConfig config = TinyHfConfig("qwen2");
  config.torch_dtype = "bfloat16";
  auto policy = Policy::CreateRandom(config, 8);
  ASSERT_TRUE(policy.ok());
  Perturb(**policy, 9);
  const std::string one = TempDir("one_file"), sharded = TempDir("sharded");
  ASSERT_TRUE((*policy)->Save(one).ok());
  ASSERT_TRUE((*policy)->Save(sharded, 8'000).ok());
  auto index = ReadJsonFile(JoinPath(sharded, "model.safetensors.index.json"));
  ASSERT_TRUE(index.ok());
  std::set<std::string> shards;
  for (const auto& [name, file] : (*index)["weight_map"].items()) shards.insert(file);
  EXPECT_GT(shards.size(), 3u);
  auto a = Policy::Load(one), b = Policy::Load(sharded);
  ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
  std::vector<torch::Tensor> want = Params(**policy), pa = Params(**a), pb = Params(**b);
  ASSERT_EQ(pa.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_TRUE(torch::equal(pa[i], pb[i])) << i;
    EXPECT_TRUE(torch::equal(pb[i], want[i].to(torch::kBFloat16).to(torch::kFloat32))) << i;
  }
}

TEST(HfCheckpointLoadTest, ClearErrors) {
  auto policy = Policy::CreateRandom(TinyHfConfig("llama"), 1);
  ASSERT_TRUE(policy.ok());
  const std::string dir = TempDir("errors");
  ASSERT_TRUE((*policy)->Save(dir).ok());
  auto json = ReadJsonFile(JoinPath(dir, "config.json"));
  ASSERT_TRUE(json.ok());
  // Same weights, declared qwen3 (with llama's head_dim: qwen3's default is 128): the q/k norms
  // are missing.
  nlohmann::json qwen3 = *json;
  qwen3["model_type"] = "qwen3";
  qwen3["head_dim"] = (*policy)->config().head_dim();
  ASSERT_TRUE(WriteJsonFileAtomic(JoinPath(dir, "config.json"), qwen3).ok());
  auto missing = Policy::Load(dir);
  EXPECT_THAT(missing,
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("missing tensor \"model.layers.0.self_attn.q_norm.weight\"")));
  nlohmann::json gpt2 = *json;
  gpt2["model_type"] = "gpt2";
  ASSERT_TRUE(WriteJsonFileAtomic(JoinPath(dir, "config.json"), gpt2).ok());
  auto unknown = Policy::Load(dir);
  EXPECT_THAT(unknown, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"gpt2\"")));
  ASSERT_TRUE(WriteJsonFileAtomic(JoinPath(dir, "config.json"), *json).ok());
  ASSERT_TRUE(RemoveAll(JoinPath(dir, "model.safetensors")).ok());
  EXPECT_THAT(Policy::Load(dir), StatusIs(absl::StatusCode::kNotFound));
}

TEST(HfCheckpointLoadTest, ParsesRealConfigShapes) {
  // Trimmed from Qwen3 and Llama-3.1 config.json files.
  auto qwen3 = ParseLlamaConfig(nlohmann::json::parse(R"({
    "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 151936,
    "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
    "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
    "max_position_embeddings": 40960, "rms_norm_eps": 1e-06, "rope_theta": 1000000,
    "rope_scaling": null, "tie_word_embeddings": true, "attention_bias": false,
    "bos_token_id": 151643, "eos_token_id": 151645, "torch_dtype": "bfloat16"})"));
  ASSERT_TRUE(qwen3.ok()) << qwen3.status();
  EXPECT_EQ(qwen3->head_dim(), 128);
  EXPECT_TRUE(qwen3->qk_norm);
  EXPECT_EQ(qwen3->pad_token_id, 151645);
  EXPECT_EQ(qwen3->torch_dtype, "bfloat16");
  auto llama = ParseLlamaConfig(nlohmann::json::parse(R"({
    "model_type": "llama", "vocab_size": 128256, "hidden_size": 2048,
    "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
    "num_key_value_heads": 8, "rope_theta": 500000.0, "tie_word_embeddings": true,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]})"));
  ASSERT_THAT(llama, IsOk());
  EXPECT_EQ(llama->rope_scaling_type, "llama3");
  EXPECT_EQ(llama->eos_token_id, 128001);
  EXPECT_EQ(llama->extra_eos_token_ids, (std::vector<int64_t>{128008, 128009}));
  // Llama-3 frequency bands: high frequencies kept, low ones divided by the factor.
  torch::Tensor plain_cfg_freq;
  LlamaConfig plain = *llama;
  plain.rope_scaling_type = "";
  torch::Tensor base = internal::RopeInverseFrequencies(plain);
  torch::Tensor scaled = internal::RopeInverseFrequencies(*llama);
  EXPECT_FLOAT_EQ(scaled[0].item<float>(), base[0].item<float>());
  EXPECT_NEAR(scaled[-1].item<float>(), base[-1].item<float>() / 32.0f, 1e-12);
  auto qwen2 = ParseLlamaConfig(nlohmann::json::parse(R"({
    "model_type": "qwen2", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 1, "num_attention_heads": 4, "eos_token_id": 5})"));
  ASSERT_TRUE(qwen2.ok());
  EXPECT_TRUE(qwen2->qkv_bias);
  EXPECT_FALSE(qwen2->o_bias);
}

torch::Tensor Logits(Policy& policy, const torch::Tensor& ids) {
  torch::NoGradGuard no_grad;
  const int64_t t = ids.size(1);
  torch::Tensor pos = torch::arange(t, torch::kInt64).unsqueeze(0).expand({ids.size(0), t});
  return policy.impl().module->forward(ids, pos, torch::Tensor());
}

TEST(LoraTest, TrainsAloneMergesOnExportAndSavesPeftAdapter) {
  auto policy = Policy::CreateRandom(TinyHfConfig("qwen2"), 4);
  ASSERT_TRUE(policy.ok());
  torch::Tensor ids = torch::randint(0, 300, {2, 9}, torch::kInt64);
  torch::Tensor before = Logits(**policy, ids);
  LoraConfig lora;
  lora.rank = 4;
  lora.alpha = 8;
  lora.dropout = 0.1;
  lora.target_modules = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                         "gate_proj", "up_proj", "down_proj"};
  ASSERT_TRUE((*policy)->AddLora(lora).ok());
  EXPECT_THAT((*policy)->AddLora(lora), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_TRUE((*policy)->has_lora());
  (*policy)->impl().module->eval();
  // B starts at zero: the model is unchanged.
  EXPECT_TRUE(torch::allclose(Logits(**policy, ids), before, 0, 1e-6));
  int trainable = 0;
  for (const auto& p : (*policy)->impl().module->named_parameters()) {
    const bool is_lora = p.key().find(".lora_") != std::string::npos;
    EXPECT_EQ(p.value().requires_grad(), is_lora) << p.key();
    trainable += is_lora;
  }
  EXPECT_EQ(trainable, 2 * 7 * 2);  // A and B, 7 projections, 2 layers
  {
    torch::NoGradGuard no_grad;
    for (auto& p : (*policy)->impl().module->named_parameters()) {
      if (p.key().find(".lora_B") != std::string::npos) p.value().normal_(0, 0.1);
    }
  }
  torch::Tensor adapted = Logits(**policy, ids);
  EXPECT_GT((adapted - before).abs().max().item<double>(), 1e-3);
  // Export merges W + alpha/r B A: a plain HF checkpoint with the adapted behaviour.
  const std::string dir = TempDir("lora_merged");
  ASSERT_TRUE((*policy)->Save(dir).ok());
  auto merged = Policy::Load(dir);
  ASSERT_THAT(merged, IsOk());
  EXPECT_FALSE((*merged)->has_lora());
  EXPECT_LT((Logits(**merged, ids) - adapted).abs().max().item<double>(), 1e-5);
  // PEFT layout.
  const std::string adapter = TempDir("lora_adapter");
  ASSERT_TRUE((*policy)->SaveLoraAdapter(adapter, "Qwen/Qwen2-0.5B").ok());
  auto file = SafetensorsFile::Read(JoinPath(adapter, "adapter_model.safetensors"));
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->tensors().size(), 28u);
  const auto& a =
      file->tensors().at("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{4, 32}));
  const auto& b = file->tensors().at("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight");
  EXPECT_EQ(b.shape, (std::vector<int64_t>{32, 4}));
  auto config = ReadJsonFile(JoinPath(adapter, "adapter_config.json"));
  ASSERT_TRUE(config.ok());
  EXPECT_EQ((*config)["peft_type"], "LORA");
  EXPECT_EQ((*config)["r"], 4);
  EXPECT_EQ((*config)["lora_alpha"], 8.0);
  EXPECT_EQ((*config)["base_model_name_or_path"], "Qwen/Qwen2-0.5B");
  LoraConfig bad;
  bad.target_modules = {"lm_head"};
  EXPECT_THAT(Validate(bad), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace spar::model
