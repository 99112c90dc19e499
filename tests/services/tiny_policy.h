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

}  // namespace spar::services
