#include "model/engine_prompt.h"

#include "common/status_macros.h"
#include "model/chat_template_setting.h"

namespace spar::model {

absl::StatusOr<EnginePromptRenderer> EnginePromptRenderer::ForCheckpoint(
    const std::string& checkpoint_dir, const std::string& setting) {
  EnginePromptRenderer r;
  SPAR_ASSIGN_OR_RETURN(r.template_, ResolveChatTemplateSetting(setting, checkpoint_dir));
  r.verbatim_ = setting == kVerbatimPrompt;
  return r;
}

absl::StatusOr<EnginePrompt> EnginePromptRenderer::Render(const std::string& prompt) const {
  if (!template_) return EnginePrompt{prompt, /*add_special_tokens=*/!verbatim_};
  SPAR_ASSIGN_OR_RETURN(std::string text, template_->Render({{"user", prompt}}));
  return EnginePrompt{std::move(text), /*add_special_tokens=*/false};
}

std::string EnginePromptRenderer::template_name() const {
  return template_ ? template_->name() : std::string();
}

}  // namespace spar::model
