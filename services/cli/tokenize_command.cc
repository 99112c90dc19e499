#include "services/cli/tokenize_command.h"

#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "model/chat_template.h"
#include "model/chat_template_setting.h"
#include "model/hf_tokenizer.h"
#include "nlohmann/json.hpp"

namespace spar::cli {
namespace {

absl::StatusOr<std::vector<model::ChatMessage>> ParseMessages(const nlohmann::json& j) {
  if (!j.is_array()) return absl::InvalidArgumentError("--chat expects a JSON list of messages");
  std::vector<model::ChatMessage> messages;
  for (const nlohmann::json& m : j) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") ||
        !m["content"].is_string()) {
      return absl::InvalidArgumentError(
          "each message must be an object with string \"role\" and \"content\"");
    }
    messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  }
  return messages;
}

}  // namespace

absl::Status TokenizeStream(const Args& args, std::istream& in, std::ostream& out) {
  SPAR_RETURN_IF_ERROR(args.CheckKnown({"model", "chat", "chat_template", "add-special-tokens"}));
  std::string dir = args.Get("model");
  if (dir.empty() && args.positional().size() == 1) dir = args.positional()[0];
  if (dir.empty()) {
    return absl::InvalidArgumentError(
        "usage: spar tokenize --model DIR [--chat] [--chat_template=NAME] [--add-special-tokens]");
  }
  SPAR_ASSIGN_OR_RETURN(std::unique_ptr<model::HfTokenizer> tokenizer,
                        model::HfTokenizer::Load(dir));
  const bool chat = args.Has("chat");
  std::optional<model::ChatTemplate> chat_template;
  if (chat) {
    const std::string setting = args.Has("chat_template") ? args.Get("chat_template") : "auto";
    SPAR_ASSIGN_OR_RETURN(chat_template, model::ResolveChatTemplateSetting(setting, dir));
    if (!chat_template) {
      return absl::InvalidArgumentError(
          "--chat: the model has no chat template (chat_template.jinja or tokenizer_config.json "
          "chat_template); name one with --chat_template");
    }
  }
  model::EncodeOptions options;
  options.add_special_tokens = args.Has("add-special-tokens");
  std::string line;
  for (int line_no = 1; std::getline(in, line); ++line_no) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    auto where = [&](const absl::Status& st) {
      return absl::Status(st.code(), absl::StrCat("stdin line ", line_no, ": ", st.message()));
    };
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return where(absl::InvalidArgumentError("not valid JSON"));
    std::string text;
    if (chat) {
      auto messages = ParseMessages(j);
      if (!messages.ok()) return where(messages.status());
      auto rendered = chat_template->Render(*messages);
      if (!rendered.ok()) return where(rendered.status());
      text = *std::move(rendered);
    } else {
      if (!j.is_string()) return where(absl::InvalidArgumentError("expected a JSON string"));
      text = j.get<std::string>();
    }
    auto ids = tokenizer->Encode(text, options);
    if (!ids.ok()) return where(ids.status());
    out << DumpJson(nlohmann::json(*ids)) << "\n";
  }
  out.flush();
  return absl::OkStatus();
}

int RunTokenizeCommand(const Args& args) {
  absl::Status st = TokenizeStream(args, std::cin, std::cout);
  if (st.ok()) return 0;
  std::fprintf(stderr, "spar tokenize: %s\n", std::string(st.message()).c_str());
  return st.code() == absl::StatusCode::kNotFound ? 4 : 2;
}

}  // namespace spar::cli
