// How a prompt becomes the input of an OpenAI-compatible generation engine (vLLM, SGLang, Spar's
// own HTTP sampler) so that the engine is fed exactly what Policy::EncodePrompt feeds Spar's
// sampler and trainer: the chat template is applied here, by Spar, and the engine only tokenizes.
// Torch-free (the orchestrator renders prompts without loading the model); thread-safe once made.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "model/chat_template.h"

namespace spar::model {

struct EnginePrompt {
  std::string text;
  // The /v1/completions field: true for raw text (the tokenizer adds its BOS, as
  // EncodePrompt's "none" does), false for a rendered template (its specials are in the text).
  bool add_special_tokens = true;
};

class EnginePromptRenderer {
 public:
  // Resolves `setting` ("" / "none", "auto", "verbatim" or a template name) for the checkpoint at
  // `checkpoint_dir` as Policy::EncodePrompt does (ResolveChatTemplateSetting): "auto" renders
  // the checkpoint's own template, and a checkpoint without tokenizer.json (byte tokenizer) only
  // takes raw text. Errors as ResolveChatTemplateSetting.
  static absl::StatusOr<EnginePromptRenderer> ForCheckpoint(const std::string& checkpoint_dir,
                                                            const std::string& setting);
  absl::StatusOr<EnginePrompt> Render(const std::string& prompt) const;
  // Where the applied template came from ("" for raw text).
  std::string template_name() const;

 private:
  std::optional<ChatTemplate> template_;
  bool verbatim_ = false;
};

}  // namespace spar::model
