#include "model/engine_prompt.h"

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "model/chat_template_setting.h"
#include "nlohmann/json.hpp"

namespace spar::model {
namespace {

using nlohmann::json;

// tokenizer_config.json's special-token fields are a string or {"content": ...}.
std::string TokenText(const json& config, const char* key) {
  if (!config.contains(key)) return "";
  const json& j = config[key];
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) {
    return j["content"].get<std::string>();
  }
  return "";
}

// The Jinja chat_template: a string, or the "default" entry of a named list.
std::string ChatTemplateJinja(const json& config) {
  if (!config.contains("chat_template")) return "";
  const json& ct = config["chat_template"];
  if (ct.is_string()) return ct.get<std::string>();
  if (ct.is_array()) {
    for (const json& named : ct) {
      if (named.is_object() && named.value("name", "") == "default" && named.contains("template") &&
          named["template"].is_string()) {
        return named["template"].get<std::string>();
      }
    }
  }
  return "";
}

absl::StatusOr<json> ReadTokenizerConfig(const std::string& dir) {
  const std::string path = JoinPath(dir, "tokenizer_config.json");
  if (!PathExists(path)) return json::object();
  SPAR_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  json config = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!config.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a JSON object"));
  }
  return config;
}

}  // namespace

absl::StatusOr<EnginePromptRenderer> EnginePromptRenderer::ForCheckpoint(
    const std::string& checkpoint_dir, const std::string& setting) {
  SPAR_RETURN_IF_ERROR(ValidateChatTemplateSetting(setting));
  EnginePromptRenderer r;
  r.verbatim_ = setting == kVerbatimPrompt;
  if (setting.empty() || setting == "none" || r.verbatim_) return r;
  const bool hf_tokenizer = PathExists(JoinPath(checkpoint_dir, "tokenizer.json"));
  SPAR_ASSIGN_OR_RETURN(json config, ReadTokenizerConfig(checkpoint_dir));
  SPAR_ASSIGN_OR_RETURN(
      r.kind_, ResolveChatTemplateSetting(setting, hf_tokenizer, ChatTemplateJinja(config)));
  if (!r.kind_) return r;
  r.render_.add_generation_prompt = true;
  r.render_.bos_token = TokenText(config, "bos_token");
  r.render_.eos_token = TokenText(config, "eos_token");
  return r;
}

absl::StatusOr<EnginePrompt> EnginePromptRenderer::Render(const std::string& prompt) const {
  if (!kind_) return EnginePrompt{prompt, /*add_special_tokens=*/!verbatim_};
  SPAR_ASSIGN_OR_RETURN(std::string text, RenderChat(*kind_, {{"user", prompt}}, render_));
  return EnginePrompt{std::move(text), /*add_special_tokens=*/false};
}

std::string EnginePromptRenderer::template_name() const {
  return kind_ ? std::string(ChatTemplateName(*kind_)) : std::string();
}

}  // namespace spar::model
