// The Llama-family model configuration, read from and written to a Hugging Face config.json.
// Plain data; thread-compatible. Used by model/policy.h (loading, saving) and by the trainer's
// built-in base model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace spar::model {

// Architectures sharing this decoder: HF "model_type" llama | mistral | qwen2 | qwen3.
struct LlamaConfig {
  std::string model_type = "llama";      // llama, mistral (same math), qwen2 (q/k/v bias),
                                         // qwen3 (per-head q/k RMSNorm)
  int64_t vocab_size = 259;              // tokens in the embedding table
  int64_t hidden_size = 128;             // model width
  int64_t intermediate_size = 352;       // SwiGLU hidden width
  int64_t num_hidden_layers = 4;         // decoder blocks
  int64_t num_attention_heads = 4;       // query heads
  int64_t num_key_value_heads = 2;       // key/value heads (grouped-query attention); divides heads
  int64_t max_position_embeddings = 64;  // longest sequence (prompt + response), tokens
  double rms_norm_eps = 1e-5;            // RMSNorm epsilon
  double rope_theta = 10000.0;           // RoPE base
  bool tie_word_embeddings = true;       // lm_head shares model.embed_tokens.weight
  int64_t bos_token_id = 256;
  int64_t eos_token_id = 257;
  int64_t pad_token_id = 258;
  std::vector<int64_t> extra_eos_token_ids;  // further stop ids when config.json lists several
  int64_t explicit_head_dim = 0;             // config.json "head_dim"; 0 = hidden_size / heads
  bool qkv_bias = false;  // q/k/v projections have a bias (qwen2; attention_bias)
  bool o_bias = false;    // o_proj has a bias (llama/qwen3 attention_bias)
  bool qk_norm = false;   // RMSNorm on each q/k head before RoPE (qwen3)
  // mistral: a query sees only the keys fewer than this many positions back, 0 = all of them.
  int64_t sliding_window = 0;
  // rope_scaling: "" none, "linear" (positions / factor) or "llama3" (Llama-3.1 frequency bands).
  std::string rope_scaling_type;
  double rope_scaling_factor = 1.0;
  double rope_low_freq_factor = 1.0;                     // llama3
  double rope_high_freq_factor = 4.0;                    // llama3
  int64_t rope_original_max_position_embeddings = 8192;  // llama3
  std::string torch_dtype = "float32";  // dtype on disk when saved: float32|bfloat16|float16

  int64_t head_dim() const {
    return explicit_head_dim > 0 ? explicit_head_dim : hidden_size / num_attention_heads;
  }
};

// Reads the HF fields above (model_type llama, mistral, qwen2 or qwen3; anything else is
// InvalidArgument naming config.model_type); unknown HF fields are ignored (real files carry many).
// RoPE comes from rope_theta + rope_scaling (transformers 4) or rope_parameters (transformers 5).
// Math this decoder does not implement is InvalidArgument naming the field: hidden_act other than
// silu, mlp_bias, partial_rotary_factor, qwen2/qwen3 sliding-window layers. Missing optional
// fields keep their defaults (transformers' for mistral's sliding_window and qwen3's head_dim)
// except the size fields, which are required. InvalidArgument naming the field for a wrong type or
// a broken rule (positive sizes, heads divide hidden_size, num_key_value_heads divides
// num_attention_heads, even head_dim, token ids < vocab).
absl::StatusOr<LlamaConfig> ParseLlamaConfig(const nlohmann::json& json);

// The same rules as ParseLlamaConfig, on a struct.
absl::Status Validate(const LlamaConfig& config);

// HF-style config.json ("architectures": ["LlamaForCausalLM"], "model_type": "llama",
// "torch_dtype": "float32").
nlohmann::json ToJson(const LlamaConfig& config);

}  // namespace spar::model
