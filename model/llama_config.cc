#include "model/llama_config.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace spar::model {
namespace {

absl::Status ReadInt(const nlohmann::json& json, const char* name, bool required, int64_t* out) {
  auto it = json.find(name);
  if (it == json.end() || it->is_null()) {
    if (required) return absl::InvalidArgumentError(absl::StrCat("config.", name, " is required"));
    return absl::OkStatus();
  }
  if (!it->is_number_integer()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.", name, " must be an integer, got ", it->dump()));
  }
  *out = it->get<int64_t>();
  return absl::OkStatus();
}

absl::Status ReadDouble(const nlohmann::json& json, const char* name, double* out) {
  auto it = json.find(name);
  if (it == json.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.", name, " must be a number, got ", it->dump()));
  }
  *out = it->get<double>();
  return absl::OkStatus();
}

absl::Status ReadBool(const nlohmann::json& json, const char* name, bool* out) {
  auto it = json.find(name);
  if (it == json.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.", name, " must be a boolean, got ", it->dump()));
  }
  *out = it->get<bool>();
  return absl::OkStatus();
}

absl::Status Positive(const char* name, double value) {
  if (value > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("config.", name, " must be > 0, got ", value));
}

absl::Status TokenId(const char* name, int64_t id, int64_t vocab) {
  if (id >= 0 && id < vocab) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("config.", name, " must be in [0, vocab_size=", vocab, "), got ", id));
}

}  // namespace

absl::Status Validate(const LlamaConfig& c) {
  SPAR_RETURN_IF_ERROR(Positive("vocab_size", c.vocab_size));
  SPAR_RETURN_IF_ERROR(Positive("hidden_size", c.hidden_size));
  SPAR_RETURN_IF_ERROR(Positive("intermediate_size", c.intermediate_size));
  SPAR_RETURN_IF_ERROR(Positive("num_hidden_layers", c.num_hidden_layers));
  SPAR_RETURN_IF_ERROR(Positive("num_attention_heads", c.num_attention_heads));
  SPAR_RETURN_IF_ERROR(Positive("num_key_value_heads", c.num_key_value_heads));
  SPAR_RETURN_IF_ERROR(Positive("max_position_embeddings", c.max_position_embeddings));
  SPAR_RETURN_IF_ERROR(Positive("rms_norm_eps", c.rms_norm_eps));
  SPAR_RETURN_IF_ERROR(Positive("rope_theta", c.rope_theta));
  if (c.hidden_size % c.num_attention_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.num_attention_heads (", c.num_attention_heads,
                     ") must divide config.hidden_size (", c.hidden_size, ")"));
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.num_key_value_heads (", c.num_key_value_heads,
                     ") must divide config.num_attention_heads (", c.num_attention_heads, ")"));
  }
  if (c.head_dim() % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.hidden_size / config.num_attention_heads must be even for RoPE, got ", c.head_dim()));
  }
  SPAR_RETURN_IF_ERROR(TokenId("bos_token_id", c.bos_token_id, c.vocab_size));
  SPAR_RETURN_IF_ERROR(TokenId("eos_token_id", c.eos_token_id, c.vocab_size));
  SPAR_RETURN_IF_ERROR(TokenId("pad_token_id", c.pad_token_id, c.vocab_size));
  return absl::OkStatus();
}

absl::StatusOr<LlamaConfig> ParseLlamaConfig(const nlohmann::json& json) {
  if (!json.is_object()) return absl::InvalidArgumentError("config: expected a JSON object");
  if (auto it = json.find("model_type"); it != json.end() && it->is_string() &&
                                           it->get<std::string>() != "llama") {
    return absl::InvalidArgumentError(
        absl::StrCat("config.model_type: unsupported model type ", it->dump(),
                     " (this decoder implements \"llama\")"));
  }
  LlamaConfig c;
  SPAR_RETURN_IF_ERROR(ReadInt(json, "vocab_size", true, &c.vocab_size));
  SPAR_RETURN_IF_ERROR(ReadInt(json, "hidden_size", true, &c.hidden_size));
  SPAR_RETURN_IF_ERROR(ReadInt(json, "intermediate_size", true, &c.intermediate_size));
  SPAR_RETURN_IF_ERROR(ReadInt(json, "num_hidden_layers", true, &c.num_hidden_layers));
  SPAR_RETURN_IF_ERROR(ReadInt(json, "num_attention_heads", true, &c.num_attention_heads));
  c.num_key_value_heads = c.num_attention_heads;
  SPAR_RETURN_IF_ERROR(ReadInt(json, "num_key_value_heads", false, &c.num_key_value_heads));
  SPAR_RETURN_IF_ERROR(ReadInt(json, "max_position_embeddings", false, &c.max_position_embeddings));
  SPAR_RETURN_IF_ERROR(ReadDouble(json, "rms_norm_eps", &c.rms_norm_eps));
  SPAR_RETURN_IF_ERROR(ReadDouble(json, "rope_theta", &c.rope_theta));
  SPAR_RETURN_IF_ERROR(ReadBool(json, "tie_word_embeddings", &c.tie_word_embeddings));
  SPAR_RETURN_IF_ERROR(ReadInt(json, "bos_token_id", false, &c.bos_token_id));
  SPAR_RETURN_IF_ERROR(ReadInt(json, "eos_token_id", false, &c.eos_token_id));
  SPAR_RETURN_IF_ERROR(ReadInt(json, "pad_token_id", false, &c.pad_token_id));
  SPAR_RETURN_IF_ERROR(Validate(c));
  return c;
}

nlohmann::json ToJson(const LlamaConfig& c) {
  return nlohmann::json{
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"torch_dtype", "float32"},
      {"hidden_act", "silu"},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_hidden_layers},
      {"num_attention_heads", c.num_attention_heads},
      {"num_key_value_heads", c.num_key_value_heads},
      {"max_position_embeddings", c.max_position_embeddings},
      {"rms_norm_eps", c.rms_norm_eps},
      {"rope_theta", c.rope_theta},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"bos_token_id", c.bos_token_id},
      {"eos_token_id", c.eos_token_id},
      {"pad_token_id", c.pad_token_id},
  };
}

}  // namespace spar::model
