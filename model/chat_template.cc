#include "model/chat_template.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace spar::model {
namespace {

// Debian's Abseil has its own string_view type, which StrCat wants.
absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// UTF-8 of the characters Python's str.isspace() accepts (Unicode White_Space plus
// U+001C..U+001F), which the templates' `| trim` and `.strip()` remove.
constexpr std::string_view kPySpaces[] = {
    "\t",           "\n",           "\v",           "\f",           "\r",
    "\x1c",         "\x1d",         "\x1e",         "\x1f",         " ",
    "\xc2\x85",     "\xc2\xa0",     "\xe1\x9a\x80", "\xe2\x80\x80", "\xe2\x80\x81",
    "\xe2\x80\x82", "\xe2\x80\x83", "\xe2\x80\x84", "\xe2\x80\x85", "\xe2\x80\x86",
    "\xe2\x80\x87", "\xe2\x80\x88", "\xe2\x80\x89", "\xe2\x80\x8a", "\xe2\x80\xa8",
    "\xe2\x80\xa9", "\xe2\x80\xaf", "\xe2\x81\x9f", "\xe3\x80\x80"};

// Python's str.strip() (and Jinja's `trim` filter) on UTF-8 text.
std::string Trim(std::string_view s) {
  auto strip_one = [&s](bool front) {
    for (std::string_view space : kPySpaces) {
      if (s.size() < space.size()) continue;
      const size_t at = front ? 0 : s.size() - space.size();
      if (s.compare(at, space.size(), space) == 0) {
        s = front ? s.substr(space.size()) : s.substr(0, at);
        return true;
      }
    }
    return false;
  };
  while (strip_one(true)) {
  }
  while (strip_one(false)) {
  }
  return std::string(s);
}

bool Has(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

absl::Status CheckRoles(const std::vector<ChatMessage>& messages) {
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& role = messages[i].role;
    if (role != "system" && role != "user" && role != "assistant") {
      return absl::InvalidArgumentError(
          absl::StrCat("chat message ", i, ": unknown role \"", role, "\""));
    }
    if (role == "system" && i != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("chat message ", i, ": a system message must come first"));
    }
  }
  return absl::OkStatus();
}

// Splits off a leading system message (nullopt: none; an empty one is still one); checks
// user/assistant alternation starting with user.
absl::StatusOr<std::optional<std::string>> SplitSystem(const std::vector<ChatMessage>& messages,
                                                       std::vector<ChatMessage>* turns) {
  std::optional<std::string> system;
  size_t start = 0;
  if (!messages.empty() && messages[0].role == "system") {
    system = messages[0].content;
    start = 1;
  }
  for (size_t i = start; i < messages.size(); ++i) {
    const char* want = (i - start) % 2 == 0 ? "user" : "assistant";
    if (messages[i].role != want) {
      return absl::InvalidArgumentError(
          absl::StrCat("chat message ", i, ": roles must alternate user/assistant, got \"",
                       messages[i].role, "\""));
    }
    turns->push_back(messages[i]);
  }
  return system;
}

// The Mistral [INST] and Gemma templates raise on a system message.
absl::Status RejectSystem(std::string_view family, const std::vector<ChatMessage>& messages) {
  if (messages.empty() || messages[0].role != "system") return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "chat message 0: the ", AV(family),
      " chat template has no system role; put the instructions in the first user message"));
}

// "<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {answer} </s><s>[INST] ..." As Meta's
// template: the system block and the first user message are stripped as one text, and an empty
// system message still gets its block.
absl::StatusOr<std::string> RenderLlama2(const std::vector<ChatMessage>& messages,
                                         const std::string& bos, const std::string& eos) {
  std::vector<ChatMessage> turns;
  SPAR_ASSIGN_OR_RETURN(std::optional<std::string> system, SplitSystem(messages, &turns));
  std::string out;
  for (size_t i = 0; i < turns.size(); ++i) {
    std::string content = turns[i].content;
    if (i == 0 && system) content = absl::StrCat("<<SYS>>\n", *system, "\n<</SYS>>\n\n", content);
    if (turns[i].role == "user") {
      absl::StrAppend(&out, bos, "[INST] ", Trim(content), " [/INST]");
    } else {
      absl::StrAppend(&out, " ", Trim(content), " ", eos);
    }
  }
  return out;
}

// "<s>[INST] {user} [/INST]{answer}</s>[INST] {user} [/INST]" (Mixtral-8x7B-Instruct-v0.1's
// template; Mistral-7B-Instruct-v0.1's older one put a space after </s>): contents as they are,
// no system role.
absl::StatusOr<std::string> RenderMistral(const std::vector<ChatMessage>& messages,
                                          const std::string& bos, const std::string& eos) {
  SPAR_RETURN_IF_ERROR(RejectSystem("mistral", messages));
  std::vector<ChatMessage> turns;
  SPAR_RETURN_IF_ERROR(SplitSystem(messages, &turns).status());
  std::string out = bos;
  for (const ChatMessage& m : turns) {
    if (m.role == "user") {
      absl::StrAppend(&out, "[INST] ", m.content, " [/INST]");
    } else {
      absl::StrAppend(&out, m.content, eos);
    }
  }
  return out;
}

// "<bos><start_of_turn>user\n{content}<end_of_turn>\n<start_of_turn>model\n" (gemma-2b-it,
// gemma-7b-it): the assistant role is "model", contents are trimmed, no system role.
absl::StatusOr<std::string> RenderGemma(const std::vector<ChatMessage>& messages,
                                        const std::string& bos, bool add_generation_prompt) {
  SPAR_RETURN_IF_ERROR(RejectSystem("gemma", messages));
  std::vector<ChatMessage> turns;
  SPAR_RETURN_IF_ERROR(SplitSystem(messages, &turns).status());
  std::string out = bos;
  for (const ChatMessage& m : turns) {
    absl::StrAppend(&out, "<start_of_turn>", m.role == "assistant" ? "model" : m.role, "\n",
                    Trim(m.content), "<end_of_turn>\n");
  }
  if (add_generation_prompt) out += "<start_of_turn>model\n";
  return out;
}

// Python's s.strip('\n') family: `left`/`right` say which ends lose their newlines.
std::string_view StripNewlines(std::string_view s, bool left, bool right) {
  while (left && !s.empty() && s.front() == '\n') s.remove_prefix(1);
  while (right && !s.empty() && s.back() == '\n') s.remove_suffix(1);
  return s;
}

// Qwen3's last_query_index: the last user message that is not a tool response.
size_t LastQueryIndex(const std::vector<ChatMessage>& messages) {
  constexpr std::string_view kOpen = "<tool_response>", kClose = "</tool_response>";
  for (size_t i = messages.size(); i-- > 0;) {
    std::string_view c = messages[i].content;
    const bool tool_response = c.substr(0, kOpen.size()) == kOpen && c.size() >= kClose.size() &&
                               c.substr(c.size() - kClose.size()) == kClose;
    if (messages[i].role == "user" && !tool_response) return i;
  }
  return messages.size() - 1;  // the template's default, messages|length - 1
}

// One assistant turn of Qwen3's template: a "<think>...</think>" part is split off the content.
// After the last user query, the final message, or one with reasoning, carries a think block (an
// empty one when there was no reasoning); other turns drop the reasoning.
std::string Qwen3Assistant(std::string_view text, bool after_query, bool last) {
  constexpr std::string_view kOpen = "<think>", kClose = "</think>";
  std::string_view content = text, reasoning;
  if (size_t close = text.find(kClose); close != std::string_view::npos) {
    content = StripNewlines(text.substr(text.rfind(kClose) + kClose.size()), true, false);
    reasoning = StripNewlines(text.substr(0, close), false, true);
    if (size_t open = reasoning.rfind(kOpen); open != std::string_view::npos) {
      reasoning = reasoning.substr(open + kOpen.size());
    }
    reasoning = StripNewlines(reasoning, true, false);
  }
  if (!after_query || (!last && reasoning.empty())) {
    return absl::StrCat("<|im_start|>assistant\n", AV(content));
  }
  return absl::StrCat("<|im_start|>assistant\n<think>\n", AV(StripNewlines(reasoning, true, true)),
                      "\n</think>\n\n", AV(StripNewlines(content, true, false)));
}

// Qwen3's template (without tools): ChatML with the reasoning handling above.
std::string RenderQwen3(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  const size_t last_query = LastQueryIndex(messages);
  std::string out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role != "assistant") {
      absl::StrAppend(&out, "<|im_start|>", m.role, "\n", m.content, "<|im_end|>\n");
      continue;
    }
    absl::StrAppend(&out, Qwen3Assistant(m.content, i > last_query, i + 1 == messages.size()),
                    "<|im_end|>\n");
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

}  // namespace

absl::StatusOr<ChatTemplateKind> ParseChatTemplateName(std::string_view name) {
  if (name == "chatml" || name == "qwen") return ChatTemplateKind::kChatml;
  if (name == "qwen3") return ChatTemplateKind::kQwen3;
  if (name == "llama3") return ChatTemplateKind::kLlama3;
  if (name == "llama2") return ChatTemplateKind::kLlama2;
  if (name == "mistral") return ChatTemplateKind::kMistral;
  if (name == "zephyr") return ChatTemplateKind::kZephyr;
  if (name == "gemma") return ChatTemplateKind::kGemma;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown chat template \"", absl::string_view(name.data(), name.size()),
                   "\" (chatml, qwen, qwen3, llama3, llama2, mistral, zephyr, gemma)"));
}

std::string_view ChatTemplateName(ChatTemplateKind kind) {
  switch (kind) {
    case ChatTemplateKind::kChatml:
      return "chatml";
    case ChatTemplateKind::kQwen3:
      return "qwen3";
    case ChatTemplateKind::kLlama3:
      return "llama3";
    case ChatTemplateKind::kLlama2:
      return "llama2";
    case ChatTemplateKind::kMistral:
      return "mistral";
    case ChatTemplateKind::kZephyr:
      return "zephyr";
    case ChatTemplateKind::kGemma:
      return "gemma";
  }
  return "chatml";
}

absl::Status ValidateChatTemplateSetting(std::string_view setting) {
  if (setting.empty() || setting == "none" || setting == "auto" || setting == kVerbatimPrompt) {
    return absl::OkStatus();
  }
  if (ParseChatTemplateName(setting).ok()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown chat template \"", absl::string_view(setting.data(), setting.size()),
      "\" (\"none\", \"auto\", \"verbatim\", chatml, qwen, qwen3, llama3, llama2, mistral, "
      "zephyr, gemma)"));
}

absl::StatusOr<ChatTemplateKind> DetectChatTemplate(std::string_view jinja) {
  if (Has(jinja, "<|im_start|>") && Has(jinja, "<think>")) return ChatTemplateKind::kQwen3;
  if (Has(jinja, "<|im_start|>")) return ChatTemplateKind::kChatml;
  if (Has(jinja, "<|start_header_id|>")) return ChatTemplateKind::kLlama3;
  if (Has(jinja, "<start_of_turn>")) return ChatTemplateKind::kGemma;
  if (Has(jinja, "<|user|>") && Has(jinja, "<|assistant|>")) return ChatTemplateKind::kZephyr;
  if (Has(jinja, "[INST]") && Has(jinja, "<<SYS>>")) return ChatTemplateKind::kLlama2;
  if (Has(jinja, "[INST]")) return ChatTemplateKind::kMistral;
  return absl::NotFoundError(
      "chat_template: not a known family (ChatML, Qwen3, Llama-3, Llama-2, Mistral, Zephyr, "
      "Gemma); name one explicitly");
}

absl::StatusOr<std::string> RenderChat(ChatTemplateKind kind,
                                       const std::vector<ChatMessage>& messages,
                                       const ChatRenderOptions& options) {
  if (absl::Status st = CheckRoles(messages); !st.ok()) return st;
  const std::string eos = options.eos_token.empty() ? "</s>" : options.eos_token;
  auto bos_or = [&](const char* fallback) {
    return options.bos_token.empty() ? std::string(fallback) : options.bos_token;
  };
  std::string out;
  switch (kind) {
    case ChatTemplateKind::kChatml:
      // Plain ChatML: no BOS, no implicit system prompt (Qwen2/2.5's default one is not added).
      for (const ChatMessage& m : messages) {
        absl::StrAppend(&out, "<|im_start|>", m.role, "\n", m.content, "<|im_end|>\n");
      }
      if (options.add_generation_prompt) out += "<|im_start|>assistant\n";
      return out;
    case ChatTemplateKind::kQwen3:
      return RenderQwen3(messages, options.add_generation_prompt);
    case ChatTemplateKind::kLlama3:
      // Meta's Llama-3 format: contents are trimmed.
      out = bos_or("<|begin_of_text|>");
      for (const ChatMessage& m : messages) {
        absl::StrAppend(&out, "<|start_header_id|>", m.role, "<|end_header_id|>\n\n",
                        Trim(m.content), "<|eot_id|>");
      }
      if (options.add_generation_prompt) {
        out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      }
      return out;
    case ChatTemplateKind::kLlama2:
      return RenderLlama2(messages, bos_or("<s>"), eos);
    case ChatTemplateKind::kMistral:
      return RenderMistral(messages, bos_or("<s>"), eos);
    case ChatTemplateKind::kZephyr:
      // HuggingFaceH4/zephyr: "<|user|>\n{content}</s>\n" per turn, "<|assistant|>\n" to answer.
      for (const ChatMessage& m : messages) {
        absl::StrAppend(&out, "<|", m.role, "|>\n", m.content, eos, "\n");
      }
      if (options.add_generation_prompt) out += "<|assistant|>\n";
      return out;
    case ChatTemplateKind::kGemma:
      return RenderGemma(messages, bos_or("<bos>"), options.add_generation_prompt);
  }
  return absl::InternalError("unreachable chat template kind");
}

}  // namespace spar::model
