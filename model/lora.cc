#include "model/lora.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"

namespace spar::model {

absl::Status Validate(const LoraConfig& c) {
  if (c.rank < 1)
    return absl::InvalidArgumentError(absl::StrCat("lora.rank must be >= 1, got ", c.rank));
  if (!(c.alpha > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("lora.alpha must be > 0, got ", c.alpha));
  }
  if (!(c.dropout >= 0 && c.dropout < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("lora.dropout must be in [0, 1), got ", c.dropout));
  }
  if (c.target_modules.empty()) {
    return absl::InvalidArgumentError("lora.target_modules must name at least one projection");
  }
  static const std::set<std::string> kKnown = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                               "gate_proj", "up_proj", "down_proj"};
  for (const std::string& m : c.target_modules) {
    if (kKnown.count(m) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("lora.target_modules: unknown module \"", m,
                       "\" (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)"));
    }
  }
  return absl::OkStatus();
}

nlohmann::json ToPeftAdapterConfig(const LoraConfig& c, const std::string& base_model) {
  std::vector<std::string> targets = c.target_modules;
  std::sort(targets.begin(), targets.end());
  return nlohmann::json{{"peft_type", "LORA"},
                        {"task_type", "CAUSAL_LM"},
                        {"base_model_name_or_path", base_model},
                        {"r", c.rank},
                        {"lora_alpha", c.alpha},
                        {"lora_dropout", c.dropout},
                        {"target_modules", targets},
                        {"bias", "none"},
                        {"fan_in_fan_out", false},
                        {"inference_mode", true},
                        {"modules_to_save", nullptr}};
}

}  // namespace spar::model
