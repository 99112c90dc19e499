// The torch side of model::Policy, for the trainer and tests (private to model/, sampler/,
// trainer/ and their tests).
#pragma once

#include <torch/torch.h>

#include "model/internal/llama.h"
#include "model/llama_config.h"
#include "model/policy.h"

namespace spar::model {

struct Policy::Impl {
  LlamaConfig config;
  internal::LlamaForCausalLM module{nullptr};
  torch::Device device{torch::kCPU};
};

}  // namespace spar::model
