#include "model/chat_template_setting.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace spar::model {

absl::StatusOr<std::optional<ChatTemplateKind>> ResolveChatTemplateSetting(
    const std::string& setting, bool has_hf_tokenizer, std::string_view jinja) {
  if (setting.empty() || setting == "none" || setting == kVerbatimPrompt) return std::nullopt;
  if (setting == "auto") {
    if (!has_hf_tokenizer || jinja.empty()) return std::nullopt;
    absl::StatusOr<ChatTemplateKind> kind = DetectChatTemplate(jinja);
    if (!kind.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "chat_template \"auto\": ", kind.status().message(),
          "; name one (chatml, qwen3, llama3, llama2, mistral, zephyr, gemma) or use \"none\""));
    }
    return *kind;
  }
  SPAR_ASSIGN_OR_RETURN(ChatTemplateKind kind, ParseChatTemplateName(setting));
  if (!has_hf_tokenizer) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chat_template \"", setting,
        "\": the checkpoint has no tokenizer.json (byte tokenizer); use \"none\" or \"auto\""));
  }
  return kind;
}

}  // namespace spar::model
