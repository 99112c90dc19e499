// LoRA adapter settings (Hu et al. 2021, as in PEFT): each targeted projection W gets
// y = W x + (alpha / rank) * B A dropout(x), A [rank, in] (kaiming-uniform), B [out, rank] (zeros),
// so a fresh adapter leaves the model unchanged. Applied with Policy::AddLora; merged into W on
// Policy::Save; saved alone PEFT-style with Policy::SaveLoraAdapter. Plain data; torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"

namespace spar::model {

struct LoraConfig {
  int rank = 8;          // r: inner dimension of the adapter, >= 1
  double alpha = 16.0;   // lora_alpha: the update is scaled by alpha / rank; > 0
  double dropout = 0.0;  // dropout on the adapter input while training, in [0, 1)
  // Projections that get adapters: any of q_proj k_proj v_proj o_proj gate_proj up_proj down_proj.
  std::vector<std::string> target_modules = {"q_proj", "k_proj", "v_proj", "o_proj"};
  uint64_t seed = 0;  // initialisation of A

  double scaling() const { return alpha / rank; }
};

// InvalidArgument naming the field (lora.rank, lora.alpha, lora.dropout, lora.target_modules).
absl::Status Validate(const LoraConfig& config);

// PEFT's adapter_config.json for `config` on top of `base_model` (a path or hub name, may be "").
nlohmann::json ToPeftAdapterConfig(const LoraConfig& config, const std::string& base_model);

}  // namespace spar::model
