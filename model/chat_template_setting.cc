#include "model/chat_template_setting.h"

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace spar::model {

absl::StatusOr<std::optional<ChatTemplate>> ResolveChatTemplateSetting(
    const std::string& setting, const std::string& checkpoint_dir) {
  SPAR_RETURN_IF_ERROR(ValidateChatTemplateSetting(setting));
  if (setting.empty() || setting == "none" || setting == kVerbatimPrompt) return std::nullopt;
  const bool hf_tokenizer = PathExists(JoinPath(checkpoint_dir, "tokenizer.json"));
  if (setting == "auto") {
    if (!hf_tokenizer) return std::nullopt;
    return ChatTemplate::FromCheckpoint(checkpoint_dir);
  }
  SPAR_ASSIGN_OR_RETURN(ChatTemplateKind kind, ParseChatTemplateName(setting));
  if (!hf_tokenizer) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chat_template \"", setting,
        "\": the checkpoint has no tokenizer.json (byte tokenizer); use \"none\" or \"auto\""));
  }
  SPAR_ASSIGN_OR_RETURN(TemplateTokens tokens, ChatTemplate::CheckpointTokens(checkpoint_dir));
  SPAR_ASSIGN_OR_RETURN(ChatTemplate t, ChatTemplate::Builtin(kind, std::move(tokens)));
  return t;
}

}  // namespace spar::model
