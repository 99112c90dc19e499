// Which chat template a request's or job's chat_template setting selects for a checkpoint: the
// one rule Policy::EncodePrompt (model/policy.cc), the engine prompt renderer
// (model/engine_prompt.cc), the trainer and CreateJob's validation apply. Torch-free.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "model/chat_template.h"

namespace spar::model {

// nullopt = the raw text ("" / "none" / "verbatim", or "auto" on a checkpoint without an HF
// tokenizer or without a chat template). "auto": the checkpoint's own template
// (ChatTemplate::FromCheckpoint); a name: that family's template with the checkpoint's special
// tokens. InvalidArgument for an unknown setting, a name on a byte-tokenizer checkpoint, or a
// template that fails to parse; Unimplemented for a construct outside the interpreter's subset
// (the message names it).
absl::StatusOr<std::optional<ChatTemplate>> ResolveChatTemplateSetting(
    const std::string& setting, const std::string& checkpoint_dir);

}  // namespace spar::model
