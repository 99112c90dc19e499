// The torch side of model::Policy, for the trainer and tests (private to model/, sampler/,
// trainer/ and their tests).
#pragma once

#include <torch/torch.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "model/chat_template.h"
#include "model/hf_tokenizer.h"
#include "model/internal/llama.h"
#include "model/llama_config.h"
#include "model/lora.h"
#include "model/policy.h"

namespace spar::model {

struct Policy::Impl {
  LlamaConfig config;
  internal::LlamaForCausalLM module{nullptr};
  torch::Device device{torch::kCPU};
  // The checkpoint's tokenizer.json tokenizer; null for the built-in byte tokenizer.
  std::shared_ptr<const HfTokenizer> tokenizer;
  // Where the checkpoint was loaded from ("" when created in memory): Save copies its tokenizer
  // files.
  std::string source_dir;
  // Set once AddLora has attached adapters.
  std::optional<LoraConfig> lora;
  // The chat template each chat_template setting resolved to for this checkpoint (read from
  // source_dir once; Policy::ChatTemplateFor).
  std::mutex templates_mu;
  std::map<std::string, absl::StatusOr<std::optional<ChatTemplate>>> templates;
};

}  // namespace spar::model
