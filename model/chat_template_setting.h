// Which chat template a request's or job's chat_template setting selects for a checkpoint: the
// one rule both Policy::EncodePrompt (model/policy.cc) and the engine prompt renderer
// (model/engine_prompt.cc) apply. Torch-free; a pure function.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "model/chat_template.h"

namespace spar::model {

// nullopt = the raw text ("" / "none" / "verbatim", or "auto" on a checkpoint without an HF
// tokenizer or without a chat_template). `has_hf_tokenizer`: the checkpoint has tokenizer.json;
// `jinja`: its tokenizer_config.json chat_template. InvalidArgument for "auto" on a template of
// no known family, an unknown name, or a name on a byte-tokenizer checkpoint.
absl::StatusOr<std::optional<ChatTemplateKind>> ResolveChatTemplateSetting(
    const std::string& setting, bool has_hf_tokenizer, std::string_view jinja);

}  // namespace spar::model
