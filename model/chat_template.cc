#include "model/chat_template.h"

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "model/builtin_chat_templates.h"
#include "model/jinja/template.h"
#include "nlohmann/json.hpp"

namespace spar::model {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

// Debian's Abseil has its own string_view type, which StrCat wants.
absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// transformers' SPECIAL_TOKENS_ATTRIBUTES, in its order.
constexpr const char* kSpecialTokenNames[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                              "pad_token", "cls_token", "mask_token"};

// A special-token field: a string or an AddedToken object {"content": ...}.
std::optional<std::string> TokenText(const json& config, const char* key) {
  if (!config.is_object() || !config.contains(key)) return std::nullopt;
  const json& j = config[key];
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) {
    return j["content"].get<std::string>();
  }
  return std::nullopt;
}

absl::StatusOr<json> ReadJsonObject(const std::string& path) {
  if (!PathExists(path)) return json::object();
  SPAR_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object())
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a JSON object"));
  return j;
}

// tokenizer_config.json's chat_template: a string, or the "default" entry of a named list.
std::string ConfigTemplate(const json& config) {
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
      absl::StrCat("unknown chat template \"", AV(name),
                   "\" (chatml, qwen, qwen3, llama3, llama2, mistral, zephyr, gemma)"));
}

std::string_view ChatTemplateName(ChatTemplateKind kind) {
  return GetBuiltinChatTemplate(kind).name;
}

absl::Status ValidateChatTemplateSetting(std::string_view setting) {
  if (setting.empty() || setting == "none" || setting == "auto" || setting == kVerbatimPrompt) {
    return absl::OkStatus();
  }
  if (ParseChatTemplateName(setting).ok()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown chat template \"", AV(setting),
      "\" (\"none\", \"auto\", \"verbatim\", chatml, qwen, qwen3, llama3, llama2, mistral, "
      "zephyr, gemma)"));
}

absl::StatusOr<ChatTemplate> ChatTemplate::FromJinja(std::string_view jinja, TemplateTokens tokens,
                                                     std::string name) {
  absl::StatusOr<jinja::Template> parsed = jinja::Template::Parse(jinja);
  if (!parsed.ok()) {
    return absl::Status(parsed.status().code(),
                        absl::StrCat("chat template (", name, "): ", parsed.status().message()));
  }
  ChatTemplate t;
  t.template_ = std::make_shared<const jinja::Template>(std::move(*parsed));
  t.tokens_ = std::move(tokens);
  t.name_ = std::move(name);
  // Spar renders one user prompt: a template that cannot is refused now, not at the sample stage.
  if (absl::StatusOr<std::string> probe = t.Render({{"user", "Hello"}}); !probe.ok()) {
    return absl::Status(probe.status().code(),
                        absl::StrCat("chat template (", t.name_,
                                     ") cannot render a user prompt: ", probe.status().message()));
  }
  return t;
}

absl::StatusOr<ChatTemplate> ChatTemplate::Builtin(ChatTemplateKind kind, TemplateTokens tokens) {
  const BuiltinChatTemplate& b = GetBuiltinChatTemplate(kind);
  auto fill = [&tokens](const char* key, std::string_view text) {
    for (const auto& kv : tokens) {
      if (kv.first == key) return;
    }
    if (!text.empty()) tokens.emplace_back(key, std::string(text));
  };
  fill("bos_token", b.bos_token);
  fill("eos_token", b.eos_token);
  return FromJinja(b.jinja, std::move(tokens), std::string(b.name));
}

absl::StatusOr<TemplateTokens> ChatTemplate::CheckpointTokens(const std::string& dir) {
  SPAR_ASSIGN_OR_RETURN(json config, ReadJsonObject(JoinPath(dir, "tokenizer_config.json")));
  SPAR_ASSIGN_OR_RETURN(json legacy, ReadJsonObject(JoinPath(dir, "special_tokens_map.json")));
  TemplateTokens tokens;
  for (const char* key : kSpecialTokenNames) {
    std::optional<std::string> text = TokenText(config, key);
    if (!text && !config.contains(key)) text = TokenText(legacy, key);
    if (text) tokens.emplace_back(key, std::move(*text));
  }
  return tokens;
}

absl::StatusOr<std::optional<ChatTemplate>> ChatTemplate::FromCheckpoint(const std::string& dir) {
  SPAR_ASSIGN_OR_RETURN(TemplateTokens tokens, CheckpointTokens(dir));
  const std::string file = JoinPath(dir, "chat_template.jinja");
  if (PathExists(file)) {
    SPAR_ASSIGN_OR_RETURN(std::string jinja, ReadFile(file));
    SPAR_ASSIGN_OR_RETURN(ChatTemplate t,
                          FromJinja(jinja, std::move(tokens), "checkpoint chat_template.jinja"));
    return t;
  }
  SPAR_ASSIGN_OR_RETURN(json config, ReadJsonObject(JoinPath(dir, "tokenizer_config.json")));
  const std::string jinja = ConfigTemplate(config);
  if (jinja.empty()) return std::nullopt;
  SPAR_ASSIGN_OR_RETURN(
      ChatTemplate t,
      FromJinja(jinja, std::move(tokens), "checkpoint tokenizer_config.json chat_template"));
  return t;
}

absl::StatusOr<std::string> ChatTemplate::Render(const std::vector<ChatMessage>& messages,
                                                 bool add_generation_prompt) const {
  // As render_jinja_template: messages, tools, documents, add_generation_prompt, then
  // {**special_tokens_map, **kwargs}.
  ordered_json vars = ordered_json::object();
  ordered_json& list = vars["messages"] = ordered_json::array();
  for (const ChatMessage& m : messages) list.push_back({{"role", m.role}, {"content", m.content}});
  vars["tools"] = nullptr;
  vars["documents"] = nullptr;
  vars["add_generation_prompt"] = add_generation_prompt;
  for (const auto& [key, text] : tokens_) vars[key] = text;
  return template_->Render(vars);
}

}  // namespace spar::model
