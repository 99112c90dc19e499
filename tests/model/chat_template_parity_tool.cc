// Test helper for chat_template_parity.py (ctest label `parity`): for every line of stdin holding
// a JSON case {"jinja": TEMPLATE, "variables": {...}, "tokenizer": DIR (optional)}, prints one
// JSON line: {"text": RENDERED} (with "ids": the text encoded by Spar's HF tokenizer without
// added specials, as apply_chat_template(tokenize=True), when "tokenizer" is given), or
// {"error": MESSAGE, "code": STATUS CODE} when Spar refuses. A case {"checkpoint": DIR, "prompt":
// P} goes through the product paths a job with chat_template "auto" takes: it prints
// {"engine_text", "engine_add_special_tokens"} (EnginePromptRenderer: what an OpenAI-compatible
// engine receives) and {"sampler_ids"} (Policy::EncodePrompt: what Spar's sampler and trainer
// feed the model). Exits 2 on a malformed case.
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "model/engine_prompt.h"
#include "model/hf_tokenizer.h"
#include "model/jinja/template.h"
#include "model/policy.h"
#include "nlohmann/json.hpp"

namespace {

using nlohmann::json;
using nlohmann::ordered_json;

json Error(const absl::Status& status) {
  return json{{"error", std::string(status.message())},
              {"code", absl::StatusCodeToString(status.code())}};
}

absl::StatusOr<const spar::model::HfTokenizer*> Tokenizer(const std::string& dir) {
  static std::map<std::string, std::unique_ptr<spar::model::HfTokenizer>> cache;
  auto it = cache.find(dir);
  if (it == cache.end()) {
    absl::StatusOr<std::unique_ptr<spar::model::HfTokenizer>> tok =
        spar::model::HfTokenizer::Load(dir);
    if (!tok.ok()) return tok.status();
    it = cache.emplace(dir, std::move(*tok)).first;
  }
  return it->second.get();
}

json ProcessCheckpoint(const ordered_json& in) {
  const std::string dir = in.at("checkpoint").get<std::string>();
  const std::string prompt = in.at("prompt").get<std::string>();
  absl::StatusOr<spar::model::EnginePromptRenderer> renderer =
      spar::model::EnginePromptRenderer::ForCheckpoint(dir, "auto");
  if (!renderer.ok()) return Error(renderer.status());
  absl::StatusOr<spar::model::EnginePrompt> engine = renderer->Render(prompt);
  if (!engine.ok()) return Error(engine.status());
  static std::map<std::string, std::unique_ptr<spar::model::Policy>> policies;
  auto it = policies.find(dir);
  if (it == policies.end()) {
    absl::StatusOr<std::unique_ptr<spar::model::Policy>> policy = spar::model::Policy::Load(dir);
    if (!policy.ok()) return Error(policy.status());
    it = policies.emplace(dir, std::move(*policy)).first;
  }
  absl::StatusOr<std::vector<int32_t>> ids = it->second->EncodePrompt(prompt, "auto");
  if (!ids.ok()) return Error(ids.status());
  return json{{"engine_text", engine->text},
              {"engine_add_special_tokens", engine->add_special_tokens},
              {"template", renderer->template_name()},
              {"sampler_ids", *ids}};
}

json Process(const ordered_json& in) {
  if (in.contains("checkpoint")) return ProcessCheckpoint(in);
  absl::StatusOr<spar::jinja::Template> tmpl =
      spar::jinja::Template::Parse(in.at("jinja").get<std::string>());
  if (!tmpl.ok()) return Error(tmpl.status());
  absl::StatusOr<std::string> text = tmpl->Render(in.at("variables"));
  if (!text.ok()) return Error(text.status());
  json out{{"text", *text}};
  if (in.contains("tokenizer")) {
    absl::StatusOr<const spar::model::HfTokenizer*> tok =
        Tokenizer(in.at("tokenizer").get<std::string>());
    if (!tok.ok()) return Error(tok.status());
    absl::StatusOr<std::vector<int32_t>> ids = (*tok)->Encode(*text, spar::model::EncodeOptions{});
    if (!ids.ok()) return Error(ids.status());
    out["ids"] = *ids;
  }
  return out;
}

}  // namespace

int main() {
  std::ios::sync_with_stdio(false);
  std::string line;
  for (int line_no = 1; std::getline(std::cin, line); ++line_no) {
    try {
      std::cout
          << Process(ordered_json::parse(line)).dump(-1, ' ', false, json::error_handler_t::strict)
          << std::endl;
    } catch (const json::exception& e) {
      std::fprintf(stderr, "stdin line %d: malformed case: %s\n", line_no, e.what());
      return 2;
    }
  }
  return 0;
}
