#include "model/llama_config.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace spar::model {
namespace {

using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;
using ::testing::HasSubstr;

nlohmann::json GoodJson() {
  return nlohmann::json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 300,
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 8, "num_key_value_heads": 2, "max_position_embeddings": 128,
    "rms_norm_eps": 1e-6, "rope_theta": 500000.0, "tie_word_embeddings": false,
    "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "hidden_act": "silu"})");
}

TEST(LlamaConfigTest, ParsesHfConfig) {
  absl::StatusOr<LlamaConfig> c = ParseLlamaConfig(GoodJson());
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->vocab_size, 300);
  EXPECT_EQ(c->hidden_size, 64);
  EXPECT_EQ(c->num_key_value_heads, 2);
  EXPECT_EQ(c->head_dim(), 8);
  EXPECT_DOUBLE_EQ(c->rope_theta, 500000.0);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-6);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->eos_token_id, 2);
}

TEST(LlamaConfigTest, KvHeadsDefaultToHeads) {
  nlohmann::json j = GoodJson();
  j.erase("num_key_value_heads");
  absl::StatusOr<LlamaConfig> c = ParseLlamaConfig(j);
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->num_key_value_heads, 8);
}

TEST(LlamaConfigTest, ToJsonRoundTrips) {
  absl::StatusOr<LlamaConfig> c = ParseLlamaConfig(GoodJson());
  ASSERT_TRUE(c.ok());
  nlohmann::json j = ToJson(*c);
  EXPECT_EQ(j["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ(j["model_type"], "llama");
  EXPECT_EQ(j["torch_dtype"], "float32");
  absl::StatusOr<LlamaConfig> back = ParseLlamaConfig(j);
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(ToJson(*back), j);
}

void ExpectError(nlohmann::json j, const std::string& needle) {
  absl::StatusOr<LlamaConfig> c = ParseLlamaConfig(j);
  ASSERT_FALSE(c.ok()) << needle;
  EXPECT_THAT(c, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(needle)));
}

TEST(LlamaConfigTest, ErrorsNameTheField) {
  nlohmann::json j = GoodJson();
  j.erase("hidden_size");
  ExpectError(j, "config.hidden_size is required");
  j = GoodJson();
  j["vocab_size"] = "big";
  ExpectError(j, "config.vocab_size must be an integer");
  j = GoodJson();
  j["num_attention_heads"] = 6;
  ExpectError(j, "config.num_attention_heads (6) must divide config.hidden_size");
  j = GoodJson();
  j["num_key_value_heads"] = 3;
  ExpectError(j, "config.num_key_value_heads (3) must divide config.num_attention_heads");
  j = GoodJson();
  j["num_hidden_layers"] = 0;
  ExpectError(j, "config.num_hidden_layers must be > 0");
  j = GoodJson();
  j["eos_token_id"] = 300;
  ExpectError(j, "config.eos_token_id");
  j = GoodJson();
  j["rope_theta"] = "x";
  ExpectError(j, "config.rope_theta must be a number");
  j = GoodJson();
  j["tie_word_embeddings"] = 1;
  ExpectError(j, "config.tie_word_embeddings must be a boolean");
  j = GoodJson();
  j["model_type"] = "gpt2";
  ExpectError(j, "config.model_type");
  ExpectError(nlohmann::json::array(), "expected a JSON object");
}

// transformers 5 writes "rope_parameters" (theta and scaling together) and "dtype".
TEST(LlamaConfigTest, ReadsTransformers5RopeParametersAndDtype) {
  nlohmann::json j = GoodJson();
  j.erase("rope_theta");
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 50000.0}};
  j["dtype"] = "bfloat16";
  absl::StatusOr<LlamaConfig> c = ParseLlamaConfig(j);
  ASSERT_THAT(c, IsOk());
  EXPECT_DOUBLE_EQ(c->rope_theta, 50000.0);
  EXPECT_EQ(c->rope_scaling_type, "");
  EXPECT_EQ(c->torch_dtype, "bfloat16");
  j["rope_parameters"] = {{"rope_type", "linear"}, {"rope_theta", 1e6}, {"factor", 2.0}};
  c = ParseLlamaConfig(j);
  ASSERT_THAT(c, IsOk());
  EXPECT_DOUBLE_EQ(c->rope_theta, 1e6);
  EXPECT_EQ(c->rope_scaling_type, "linear");
  EXPECT_DOUBLE_EQ(c->rope_scaling_factor, 2.0);
  j["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 1e6}, {"factor", 2.0}};
  ExpectError(j, "unsupported \"yarn\"");
  j["rope_parameters"] = {{"rope_type", "default"}, {"partial_rotary_factor", 0.5}};
  ExpectError(j, "config.rope_parameters.partial_rotary_factor");
}

// Fields this decoder does not implement are refused, not ignored.
TEST(LlamaConfigTest, RefusesUnsupportedMath) {
  nlohmann::json j = GoodJson();
  j["hidden_act"] = "gelu";
  ExpectError(j, "config.hidden_act \"gelu\" is not supported");
  j = GoodJson();
  j["mlp_bias"] = true;
  ExpectError(j, "config.mlp_bias");
  j = GoodJson();
  j["model_type"] = "qwen2";
  j["use_sliding_window"] = true;
  ExpectError(j, "sliding-window layers are not supported for qwen2");
  j["use_sliding_window"] = false;
  j["layer_types"] = {"full_attention", "sliding_attention"};
  ExpectError(j, "sliding-window layers are not supported for qwen2");
}

// As transformers' MistralConfig and Qwen3Config defaults.
TEST(LlamaConfigTest, FamilyDefaultsMatchTransformers) {
  nlohmann::json j = GoodJson();
  j["model_type"] = "mistral";
  absl::StatusOr<LlamaConfig> c = ParseLlamaConfig(j);
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->sliding_window, 4096);
  j["sliding_window"] = nullptr;
  c = ParseLlamaConfig(j);
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->sliding_window, 0);
  EXPECT_TRUE(ToJson(*c)["sliding_window"].is_null());
  j["sliding_window"] = 6;
  c = ParseLlamaConfig(j);
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(ToJson(*c)["sliding_window"], 6);
  j = GoodJson();
  j["model_type"] = "qwen3";
  c = ParseLlamaConfig(j);
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->head_dim(), 128);
  EXPECT_EQ(ToJson(*c)["head_dim"], 128);
}

}  // namespace
}  // namespace spar::model
