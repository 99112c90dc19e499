#include "model/llama_config.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
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
        absl::StrCat("config.", name, " must be an integer, got ", DumpJson(*it)));
  }
  *out = it->get<int64_t>();
  return absl::OkStatus();
}

absl::Status ReadDouble(const nlohmann::json& json, const char* name, double* out) {
  auto it = json.find(name);
  if (it == json.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.", name, " must be a number, got ", DumpJson(*it)));
  }
  *out = it->get<double>();
  return absl::OkStatus();
}

absl::Status ReadBool(const nlohmann::json& json, const char* name, bool* out) {
  auto it = json.find(name);
  if (it == json.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.", name, " must be a boolean, got ", DumpJson(*it)));
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

// Reads the RoPE object `key` (rope_scaling or rope_parameters) when present.
absl::Status ReadRope(const nlohmann::json& json, const char* key, LlamaConfig* c) {
  auto it = json.find(key);
  if (it == json.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.", key, " must be an object, got ", DumpJson(*it)));
  }
  const nlohmann::json& rs = *it;
  std::string type = rs.value("rope_type", rs.value("type", std::string()));
  if (!type.empty() && type != "default") c->rope_scaling_type = type;
  SPAR_RETURN_IF_ERROR(ReadDouble(rs, "rope_theta", &c->rope_theta));
  SPAR_RETURN_IF_ERROR(ReadDouble(rs, "factor", &c->rope_scaling_factor));
  SPAR_RETURN_IF_ERROR(ReadDouble(rs, "low_freq_factor", &c->rope_low_freq_factor));
  SPAR_RETURN_IF_ERROR(ReadDouble(rs, "high_freq_factor", &c->rope_high_freq_factor));
  SPAR_RETURN_IF_ERROR(ReadInt(rs, "original_max_position_embeddings", false,
                               &c->rope_original_max_position_embeddings));
  double partial = 1.0;
  SPAR_RETURN_IF_ERROR(ReadDouble(rs, "partial_rotary_factor", &partial));
  if (partial != 1.0) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.", key, ".partial_rotary_factor ", partial, " is not supported"));
  }
  return absl::OkStatus();
}

// Fields whose non-default values this decoder does not implement: refused rather than ignored,
// so a checkpoint never loads into a model that silently computes something else. Reads
// mistral's sliding_window (transformers' default 4096 when absent, null = none).
absl::Status CheckUnsupported(const nlohmann::json& json, LlamaConfig* c) {
  if (auto it = json.find("hidden_act"); it != json.end() && !it->is_null() && *it != "silu") {
    return absl::InvalidArgumentError(
        absl::StrCat("config.hidden_act ", DumpJson(*it), " is not supported (only \"silu\")"));
  }
  bool mlp_bias = false;
  SPAR_RETURN_IF_ERROR(ReadBool(json, "mlp_bias", &mlp_bias));
  if (mlp_bias) return absl::InvalidArgumentError("config.mlp_bias true is not supported");
  if (c->model_type == "mistral") {
    if (!json.contains("sliding_window")) c->sliding_window = 4096;
    SPAR_RETURN_IF_ERROR(ReadInt(json, "sliding_window", false, &c->sliding_window));
    return absl::OkStatus();
  }
  bool use_sliding_window = false;
  SPAR_RETURN_IF_ERROR(ReadBool(json, "use_sliding_window", &use_sliding_window));
  bool sliding_layer = false;
  if (auto it = json.find("layer_types"); it != json.end() && it->is_array()) {
    for (const nlohmann::json& t : *it) sliding_layer |= t != "full_attention";
  }
  if (use_sliding_window || sliding_layer) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.use_sliding_window / layer_types: sliding-window layers are not supported for ",
        c->model_type));
  }
  return absl::OkStatus();
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
  if (c.sliding_window < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.sliding_window must be >= 0, got ", c.sliding_window));
  }
  if (c.model_type != "llama" && c.model_type != "mistral" && c.model_type != "qwen2" &&
      c.model_type != "qwen3") {
    return absl::InvalidArgumentError(absl::StrCat("config.model_type: unsupported model type \"",
                                                   c.model_type,
                                                   "\" (supported: llama, mistral, qwen2, qwen3)"));
  }
  if (c.explicit_head_dim < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.head_dim must be > 0, got ", c.explicit_head_dim));
  }
  if (c.explicit_head_dim == 0 && c.hidden_size % c.num_attention_heads != 0) {
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
    return absl::InvalidArgumentError(
        absl::StrCat("config.hidden_size / config.num_attention_heads must be even for RoPE, got ",
                     c.head_dim()));
  }
  if (!c.rope_scaling_type.empty() && c.rope_scaling_type != "linear" &&
      c.rope_scaling_type != "llama3") {
    return absl::InvalidArgumentError(absl::StrCat("config.rope_scaling.rope_type: unsupported \"",
                                                   c.rope_scaling_type,
                                                   "\" (supported: linear, llama3)"));
  }
  if (!c.rope_scaling_type.empty()) {
    SPAR_RETURN_IF_ERROR(Positive("rope_scaling.factor", c.rope_scaling_factor));
  }
  if (c.rope_scaling_type == "llama3" && !(c.rope_high_freq_factor > c.rope_low_freq_factor)) {
    return absl::InvalidArgumentError(
        "config.rope_scaling: high_freq_factor must be > low_freq_factor");
  }
  SPAR_RETURN_IF_ERROR(TokenId("bos_token_id", c.bos_token_id, c.vocab_size));
  SPAR_RETURN_IF_ERROR(TokenId("eos_token_id", c.eos_token_id, c.vocab_size));
  SPAR_RETURN_IF_ERROR(TokenId("pad_token_id", c.pad_token_id, c.vocab_size));
  return absl::OkStatus();
}

namespace {

// eos / bos / pad. HF configs may omit bos/pad (Qwen) or list several eos ids (Llama-3); a
// non-byte model without bos/pad uses its eos for them.
absl::Status ReadSpecialTokenIds(const nlohmann::json& json, LlamaConfig* out) {
  LlamaConfig& c = *out;
  const bool has_eos = json.contains("eos_token_id") && !json["eos_token_id"].is_null();
  if (has_eos && json["eos_token_id"].is_array()) {
    std::vector<int64_t> ids;
    for (const nlohmann::json& id : json["eos_token_id"]) {
      if (!id.is_number_integer()) {
        return absl::InvalidArgumentError(
            absl::StrCat("config.eos_token_id must hold integers, got ", DumpJson(id)));
      }
      ids.push_back(id.get<int64_t>());
    }
    if (ids.empty()) return absl::InvalidArgumentError("config.eos_token_id is an empty list");
    c.eos_token_id = ids[0];
    c.extra_eos_token_ids.assign(ids.begin() + 1, ids.end());
  } else {
    SPAR_RETURN_IF_ERROR(ReadInt(json, "eos_token_id", false, &c.eos_token_id));
  }
  SPAR_RETURN_IF_ERROR(ReadInt(json, "bos_token_id", false, &c.bos_token_id));
  SPAR_RETURN_IF_ERROR(ReadInt(json, "pad_token_id", false, &c.pad_token_id));
  const bool byte_defaults = c.vocab_size == 259;
  if (!byte_defaults && has_eos) {
    if (!json.contains("bos_token_id") || json["bos_token_id"].is_null()) {
      c.bos_token_id = c.eos_token_id;
    }
    if (!json.contains("pad_token_id") || json["pad_token_id"].is_null()) {
      c.pad_token_id = c.eos_token_id;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LlamaConfig> ParseLlamaConfig(const nlohmann::json& json) {
  if (!json.is_object()) return absl::InvalidArgumentError("config: expected a JSON object");
  LlamaConfig c;
  if (auto it = json.find("model_type"); it != json.end() && !it->is_null()) {
    if (!it->is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat("config.model_type must be a string, got ", DumpJson(*it)));
    }
    c.model_type = it->get<std::string>();
  }
  if (c.model_type != "llama" && c.model_type != "mistral" && c.model_type != "qwen2" &&
      c.model_type != "qwen3") {
    return absl::InvalidArgumentError(absl::StrCat("config.model_type: unsupported model type \"",
                                                   c.model_type,
                                                   "\" (supported: llama, mistral, qwen2, qwen3)"));
  }
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
  // transformers' Qwen3Config defaults head_dim to 128, not hidden_size / heads.
  if (c.model_type == "qwen3") c.explicit_head_dim = 128;
  SPAR_RETURN_IF_ERROR(ReadInt(json, "head_dim", false, &c.explicit_head_dim));
  if (c.explicit_head_dim > 0 && c.num_attention_heads > 0 &&
      c.explicit_head_dim * c.num_attention_heads == c.hidden_size) {
    c.explicit_head_dim = 0;  // the default: keep configs canonical
  }
  bool attention_bias = false;
  SPAR_RETURN_IF_ERROR(ReadBool(json, "attention_bias", &attention_bias));
  c.qkv_bias = c.model_type == "qwen2" || attention_bias;
  c.o_bias = c.model_type != "qwen2" && attention_bias;
  c.qk_norm = c.model_type == "qwen3";
  // transformers 5 writes rope_theta and the scaling into one "rope_parameters" object.
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    SPAR_RETURN_IF_ERROR(ReadRope(json, key, &c));
  }
  SPAR_RETURN_IF_ERROR(CheckUnsupported(json, &c));
  // transformers 5 writes "dtype", earlier versions "torch_dtype".
  for (const char* key : {"torch_dtype", "dtype"}) {
    if (auto it = json.find(key); it != json.end() && it->is_string()) {
      std::string dtype = it->get<std::string>();
      if (dtype == "float32" || dtype == "bfloat16" || dtype == "float16") c.torch_dtype = dtype;
    }
  }
  SPAR_RETURN_IF_ERROR(ReadSpecialTokenIds(json, &c));
  SPAR_RETURN_IF_ERROR(Validate(c));
  return c;
}

nlohmann::json ToJson(const LlamaConfig& c) {
  const char* arch = c.model_type == "mistral" ? "MistralForCausalLM"
                     : c.model_type == "qwen2" ? "Qwen2ForCausalLM"
                     : c.model_type == "qwen3" ? "Qwen3ForCausalLM"
                                               : "LlamaForCausalLM";
  nlohmann::json eos = c.eos_token_id;
  if (!c.extra_eos_token_ids.empty()) {
    eos = nlohmann::json::array({c.eos_token_id});
    for (int64_t id : c.extra_eos_token_ids) eos.push_back(id);
  }
  nlohmann::json j{
      {"architectures", {arch}},
      {"model_type", c.model_type},
      {"torch_dtype", c.torch_dtype},
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
      {"eos_token_id", eos},
      {"pad_token_id", c.pad_token_id},
  };
  if (c.explicit_head_dim > 0 || c.model_type == "qwen3") j["head_dim"] = c.head_dim();
  if (c.model_type == "mistral") {
    j["sliding_window"] = c.sliding_window > 0 ? nlohmann::json(c.sliding_window) : nullptr;
  }
  if (c.model_type != "qwen2") j["attention_bias"] = c.o_bias || c.qkv_bias;
  if (c.rope_scaling_type == "linear") {
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", c.rope_scaling_factor}};
  } else if (c.rope_scaling_type == "llama3") {
    j["rope_scaling"] = {
        {"rope_type", "llama3"},
        {"factor", c.rope_scaling_factor},
        {"low_freq_factor", c.rope_low_freq_factor},
        {"high_freq_factor", c.rope_high_freq_factor},
        {"original_max_position_embeddings", c.rope_original_max_position_embeddings}};
  }
  return j;
}

}  // namespace spar::model
