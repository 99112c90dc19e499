// Chat templates rendered as the checkpoint says: a Hugging Face Jinja chat template (the
// checkpoint's own chat_template.jinja or tokenizer_config.json "chat_template", or a named
// family's reference template) rendered by Spar's Jinja interpreter (model/jinja) with exactly
// the variables transformers' apply_chat_template passes it: messages, add_generation_prompt,
// tools and documents (None), and the tokenizer's special tokens (bos_token, eos_token, ...).
// The text carries the special tokens as text (as apply_chat_template(tokenize=False)): encode
// it with EncodeOptions::add_special_tokens = false. Torch-free; thread-safe once made.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace spar::jinja {
class Template;
}

namespace spar::model {

struct ChatMessage {
  std::string role;
  std::string content;
};

enum class ChatTemplateKind { kChatml, kQwen3, kLlama3, kLlama2, kMistral, kZephyr, kGemma };

// "chatml" (alias "qwen"), "qwen3", "llama3", "llama2", "mistral", "zephyr", "gemma".
// InvalidArgument naming the accepted names otherwise.
absl::StatusOr<ChatTemplateKind> ParseChatTemplateName(std::string_view name);
std::string_view ChatTemplateName(ChatTemplateKind kind);

// The special tokens transformers passes a template (tokenizer.special_tokens_map): bos_token,
// eos_token, unk_token, sep_token, pad_token, cls_token, mask_token, those the tokenizer has.
using TemplateTokens = std::vector<std::pair<std::string, std::string>>;

class ChatTemplate {
 public:
  // Parses `jinja` (`name` says where it came from, for messages and reports). InvalidArgument
  // for a syntax error, Unimplemented for a construct the interpreter does not have, naming it
  // and its line; both checked again by rendering a one-message conversation, so a template
  // that is accepted renders.
  static absl::StatusOr<ChatTemplate> FromJinja(std::string_view jinja, TemplateTokens tokens,
                                                std::string name);
  // A named family's reference template; `tokens` from the checkpoint, the reference
  // checkpoint's BOS/EOS where it has none.
  static absl::StatusOr<ChatTemplate> Builtin(ChatTemplateKind kind, TemplateTokens tokens);
  // The checkpoint's own template, as transformers 5 loads it: chat_template.jinja when present,
  // else tokenizer_config.json's chat_template (a string, or the "default" of a named list);
  // special tokens from tokenizer_config.json (then special_tokens_map.json). nullopt: it has
  // none. Errors: an unreadable file, or the template refused as FromJinja says.
  static absl::StatusOr<std::optional<ChatTemplate>> FromCheckpoint(const std::string& dir);
  // The special tokens of the checkpoint at `dir`, as FromCheckpoint reads them.
  static absl::StatusOr<TemplateTokens> CheckpointTokens(const std::string& dir);

  // The text of `messages`. FailedPrecondition when the template refuses the conversation
  // (raise_exception, with its message); InvalidArgument / Unimplemented as Template::Render.
  absl::StatusOr<std::string> Render(const std::vector<ChatMessage>& messages,
                                     bool add_generation_prompt = true) const;

  // Where the template came from: "checkpoint chat_template.jinja", "llama3", ...
  const std::string& name() const { return name_; }
  const TemplateTokens& tokens() const { return tokens_; }

 private:
  std::shared_ptr<const jinja::Template> template_;
  TemplateTokens tokens_;
  std::string name_;
};

// The chat_template setting for text that already is the model's input, rendered by a template
// (engine_prompt.h renders prompts so for an OpenAI-compatible engine, which Spar's own HTTP
// sampler receives with add_special_tokens false): encoded without adding special tokens, as a
// rendered template is.
inline constexpr std::string_view kVerbatimPrompt = "verbatim";

// A request's or job's chat_template setting: "" or "none" (the prompt text as is), "auto" (the
// checkpoint's own template; the raw text when it has none), "verbatim" (above) or a template
// name above. InvalidArgument listing the accepted values otherwise.
absl::Status ValidateChatTemplateSetting(std::string_view setting);

}  // namespace spar::model
