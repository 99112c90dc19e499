// Test helper for chat_template_parity.py (ctest label `parity`): for every line of stdin holding
// a JSON case, prints one JSON line with Spar's result. A case is either
//   {"detect": JINJA}: prints {"detected": NAME} (DetectChatTemplate), or
//   {"template": NAME, "messages": [{"role", "content"}...], "add_generation_prompt": BOOL,
//    "bos_token": STR, "eos_token": STR}: prints {"text": RENDERED} (RenderChat).
// Any Spar error is printed as {"error": MESSAGE}. Exits 2 on a malformed case, with the message
// on stderr.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/chat_template.h"
#include "nlohmann/json.hpp"

namespace {

using nlohmann::json;
namespace model = spar::model;

json Error(const absl::Status& status) { return json{{"error", std::string(status.message())}}; }

absl::StatusOr<json> Render(const json& in) {
  absl::StatusOr<model::ChatTemplateKind> kind =
      model::ParseChatTemplateName(in.at("template").get<std::string>());
  if (!kind.ok()) return kind.status();
  std::vector<model::ChatMessage> messages;
  for (const json& m : in.at("messages")) {
    messages.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
  }
  model::ChatRenderOptions options;
  options.add_generation_prompt = in.at("add_generation_prompt").get<bool>();
  options.bos_token = in.at("bos_token").get<std::string>();
  options.eos_token = in.at("eos_token").get<std::string>();
  absl::StatusOr<std::string> text = model::RenderChat(*kind, messages, options);
  if (!text.ok()) return text.status();
  return json{{"text", *text}};
}

json Process(const json& in) {
  if (in.contains("detect")) {
    absl::StatusOr<model::ChatTemplateKind> kind =
        model::DetectChatTemplate(in.at("detect").get<std::string>());
    if (!kind.ok()) return Error(kind.status());
    return json{{"detected", std::string(model::ChatTemplateName(*kind))}};
  }
  absl::StatusOr<json> out = Render(in);
  return out.ok() ? *out : Error(out.status());
}

}  // namespace

int main() {
  std::ios::sync_with_stdio(false);
  std::string line;
  for (int line_no = 1; std::getline(std::cin, line); ++line_no) {
    try {
      std::cout << Process(json::parse(line)).dump(-1, ' ', false, json::error_handler_t::strict)
                << '\n';
    } catch (const json::exception& e) {
      std::fprintf(stderr, "stdin line %d: malformed case: %s\n", line_no, e.what());
      return 2;
    }
  }
  return 0;
}
