// The services tests' base model: a 1-layer Llama small enough that a whole job runs in seconds.
// One home for its shape, so every services test trains the same thing.
#pragma once

#include "model/llama_config.h"

namespace spar::services {

inline model::LlamaConfig TinyLlamaConfig() {
  model::LlamaConfig c;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  return c;
}

// The same shape as a qwen3 with the real Qwen3 tokenizer's vocabulary and special ids, for a
// checkpoint that carries tests/data/tokenizers/qwen3's tokenizer files (chat template "auto" =
// qwen3).
inline model::LlamaConfig TinyQwen3Config() {
  model::LlamaConfig c = TinyLlamaConfig();
  c.model_type = "qwen3";
  c.vocab_size = 151936;
  c.explicit_head_dim = 16;
  c.qk_norm = true;
  c.tie_word_embeddings = true;
  c.max_position_embeddings = 256;
  c.bos_token_id = 151643;
  c.eos_token_id = 151645;
  c.pad_token_id = 151643;
  return c;
}

}  // namespace spar::services
