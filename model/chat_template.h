// Built-in chat-template renderers for the Llama family's prompt formats: ChatML, Qwen3 (ChatML
// with reasoning blocks), Llama-3, Llama-2 and Mistral [INST], Zephyr and Gemma. A template is
// chosen by name (a job override) or detected from tokenizer_config.json's Jinja `chat_template`
// by its marker tokens; no Jinja interpreter is involved. The rendered text carries the special
// tokens as text (as transformers' apply_chat_template(tokenize=False) does): encode it with
// EncodeOptions::add_special_tokens = false. Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace spar::model {

struct ChatMessage {
  std::string role;  // "system" | "user" | "assistant"
  std::string content;
};

enum class ChatTemplateKind { kChatml, kQwen3, kLlama3, kLlama2, kMistral, kZephyr, kGemma };

struct ChatRenderOptions {
  // Ends the text with the assistant turn's header so the model writes the reply. The [INST]
  // formats end every user turn with "[/INST]" and need nothing more.
  bool add_generation_prompt = true;
  // Text of the BOS token where the format starts with it ("" = the family's usual one:
  // "<|begin_of_text|>" for Llama-3, "<s>" for Llama-2/Mistral, "<bos>" for Gemma; none for
  // ChatML and Zephyr).
  std::string bos_token;
  // Text of the EOS token closing assistant turns in [INST] and Zephyr formats ("" = "</s>").
  std::string eos_token;
};

// "chatml" (alias "qwen"), "qwen3", "llama3", "llama2", "mistral", "zephyr", "gemma".
// InvalidArgument naming the accepted names otherwise.
absl::StatusOr<ChatTemplateKind> ParseChatTemplateName(std::string_view name);
std::string_view ChatTemplateName(ChatTemplateKind kind);

// The family of a Jinja chat template, by its marker tokens (a ChatML template that mentions
// <think> is Qwen3's). NotFound when none matches.
absl::StatusOr<ChatTemplateKind> DetectChatTemplate(std::string_view jinja);

// The chat_template setting for text that already is the model's input, rendered by a template
// (engine_prompt.h renders prompts so for an OpenAI-compatible engine, which Spar's own HTTP
// sampler receives with add_special_tokens false): encoded without adding special tokens, as a
// rendered template is.
inline constexpr std::string_view kVerbatimPrompt = "verbatim";

// A request's or job's chat_template setting: "" or "none" (the prompt text as is), "auto" (the
// template detected from the checkpoint's tokenizer_config.json; the raw text when it has none),
// "verbatim" (above) or a template name above. InvalidArgument listing the accepted values
// otherwise.
absl::Status ValidateChatTemplateSetting(std::string_view setting);

// The prompt text of `messages`, as transformers' apply_chat_template(tokenize=False) renders the
// family's reference checkpoint template (tests/data/chat_templates, checked by the
// parity.chat_template test). InvalidArgument for an unknown role, a system message that is not
// first, and where the reference template raises: for llama2, mistral and gemma, roles that do
// not alternate user/assistant (after an optional system message); for mistral and gemma, any
// system message (their templates have no system role).
absl::StatusOr<std::string> RenderChat(ChatTemplateKind kind,
                                       const std::vector<ChatMessage>& messages,
                                       const ChatRenderOptions& options = {});

}  // namespace spar::model
