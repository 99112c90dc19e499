#include "model/chat_template.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace spar::model {
namespace {

std::string Trim(const std::string& s) {
  return std::string(absl::StripAsciiWhitespace(absl::string_view(s)));
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

// Splits off a leading system message; checks user/assistant alternation starting with user.
absl::StatusOr<std::string> SplitSystem(const std::vector<ChatMessage>& messages,
                                        std::vector<ChatMessage>* turns) {
  std::string system;
  size_t start = 0;
  if (!messages.empty() && messages[0].role == "system") {
    system = messages[0].content;
    start = 1;
  }
  for (size_t i = start; i < messages.size(); ++i) {
    const char* want = (i - start) % 2 == 0 ? "user" : "assistant";
    if (messages[i].role != want) {
      return absl::InvalidArgumentError(absl::StrCat(
          "chat message ", i, ": roles must alternate user/assistant, got \"", messages[i].role,
          "\""));
    }
    turns->push_back(messages[i]);
  }
  return system;
}

}  // namespace

absl::StatusOr<ChatTemplateKind> ParseChatTemplateName(std::string_view name) {
  if (name == "chatml" || name == "qwen") return ChatTemplateKind::kChatml;
  if (name == "llama3") return ChatTemplateKind::kLlama3;
  if (name == "llama2") return ChatTemplateKind::kLlama2;
  if (name == "mistral") return ChatTemplateKind::kMistral;
  if (name == "zephyr") return ChatTemplateKind::kZephyr;
  if (name == "gemma") return ChatTemplateKind::kGemma;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown chat template \"", absl::string_view(name.data(), name.size()),
                   "\" (chatml, qwen, llama3, llama2, mistral, zephyr, gemma)"));
}

std::string_view ChatTemplateName(ChatTemplateKind kind) {
  switch (kind) {
    case ChatTemplateKind::kChatml: return "chatml";
    case ChatTemplateKind::kLlama3: return "llama3";
    case ChatTemplateKind::kLlama2: return "llama2";
    case ChatTemplateKind::kMistral: return "mistral";
    case ChatTemplateKind::kZephyr: return "zephyr";
    case ChatTemplateKind::kGemma: return "gemma";
  }
  return "chatml";
}

absl::Status ValidateChatTemplateSetting(std::string_view setting) {
  if (setting.empty() || setting == "none" || setting == "auto") return absl::OkStatus();
  if (ParseChatTemplateName(setting).ok()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown chat template \"", absl::string_view(setting.data(), setting.size()),
      "\" (\"none\", \"auto\", chatml, qwen, llama3, llama2, mistral, zephyr, gemma)"));
}

absl::StatusOr<ChatTemplateKind> DetectChatTemplate(std::string_view jinja) {
  if (Has(jinja, "<|im_start|>")) return ChatTemplateKind::kChatml;
  if (Has(jinja, "<|start_header_id|>")) return ChatTemplateKind::kLlama3;
  if (Has(jinja, "<start_of_turn>")) return ChatTemplateKind::kGemma;
  if (Has(jinja, "<|user|>") && Has(jinja, "<|assistant|>")) return ChatTemplateKind::kZephyr;
  if (Has(jinja, "[INST]") && Has(jinja, "<<SYS>>")) return ChatTemplateKind::kLlama2;
  if (Has(jinja, "[INST]")) return ChatTemplateKind::kMistral;
  return absl::NotFoundError(
      "chat_template: not a known family (ChatML, Llama-3, Llama-2, Mistral, Zephyr, Gemma); "
      "name one explicitly");
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
      // Qwen2/2.5/3 and every ChatML model: no BOS, no implicit system prompt.
      for (const ChatMessage& m : messages) {
        absl::StrAppend(&out, "<|im_start|>", m.role, "\n", m.content, "<|im_end|>\n");
      }
      if (options.add_generation_prompt) out += "<|im_start|>assistant\n";
      return out;
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
    case ChatTemplateKind::kLlama2: {
      // "<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {answer} </s><s>[INST] ..."
      std::vector<ChatMessage> turns;
      auto system = SplitSystem(messages, &turns);
      if (!system.ok()) return system.status();
      const std::string bos = bos_or("<s>");
      for (size_t i = 0; i < turns.size(); ++i) {
        if (turns[i].role == "user") {
          std::string content = Trim(turns[i].content);
          if (i == 0 && !system->empty()) {
            content = absl::StrCat("<<SYS>>\n", Trim(*system), "\n<</SYS>>\n\n", content);
          }
          absl::StrAppend(&out, bos, "[INST] ", content, " [/INST]");
        } else {
          absl::StrAppend(&out, " ", Trim(turns[i].content), " ", eos);
        }
      }
      return out;
    }
    case ChatTemplateKind::kMistral: {
      // "<s>[INST] {user} [/INST]{answer}</s>[INST] {user} [/INST]"; a system prompt is put
      // before the first user message, separated by a blank line.
      std::vector<ChatMessage> turns;
      auto system = SplitSystem(messages, &turns);
      if (!system.ok()) return system.status();
      out = bos_or("<s>");
      for (size_t i = 0; i < turns.size(); ++i) {
        if (turns[i].role == "user") {
          std::string content = turns[i].content;
          if (i == 0 && !system->empty()) content = absl::StrCat(*system, "\n\n", content);
          absl::StrAppend(&out, "[INST] ", content, " [/INST]");
        } else {
          absl::StrAppend(&out, turns[i].content, eos);
        }
      }
      return out;
    }
    case ChatTemplateKind::kZephyr:
      // HuggingFaceH4/zephyr: "<|user|>\n{content}</s>\n" per turn, "<|assistant|>\n" to answer.
      for (const ChatMessage& m : messages) {
        absl::StrAppend(&out, "<|", m.role, "|>\n", m.content, eos, "\n");
      }
      if (options.add_generation_prompt) out += "<|assistant|>\n";
      return out;
    case ChatTemplateKind::kGemma: {
      // "<bos><start_of_turn>user\n{content}<end_of_turn>\n<start_of_turn>model\n"; the assistant
      // role is "model"; a system prompt is folded into the first user turn (Gemma 3).
      std::string system;
      size_t start = 0;
      if (!messages.empty() && messages[0].role == "system") {
        system = Trim(messages[0].content);
        start = 1;
      }
      out = bos_or("<bos>");
      for (size_t i = start; i < messages.size(); ++i) {
        const ChatMessage& m = messages[i];
        std::string content = Trim(m.content);
        if (i == start && !system.empty()) content = absl::StrCat(system, "\n\n", content);
        absl::StrAppend(&out, "<start_of_turn>", m.role == "assistant" ? "model" : m.role, "\n",
                        content, "<end_of_turn>\n");
      }
      if (options.add_generation_prompt) out += "<start_of_turn>model\n";
      return out;
    }
  }
  return absl::InternalError("unreachable chat template kind");
}

}  // namespace spar::model
