// The tests' tiny models: one home for their shapes, so every test that says "tiny" builds the
// same thing. Torch-free (configs only); Policy::CreateRandom(config, seed) makes the weights.
#pragma once

#include "model/byte_tokenizer.h"
#include "model/llama_config.h"

namespace spar::testing {

// A 2-layer Llama over the byte tokenizer (hidden 32, 4 heads, 2 KV heads): the model, sampler
// and trainer unit tests' policy.
inline model::LlamaConfig TinyByteLlamaConfig() {
  model::LlamaConfig c;
  c.vocab_size = model::ByteTokenizer::kVocabSize;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  return c;
}

// The services tests' base model: a 1-layer Llama small enough that a whole job runs in seconds.
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

}  // namespace spar::testing
