// The Jinja text and special tokens of the chat templates the named chat_template settings
// select (a family's reference checkpoint template). Torch-free.
#pragma once

#include <string_view>

#include "model/chat_template.h"

namespace spar::model {

struct BuiltinChatTemplate {
  std::string_view name;
  std::string_view bos_token;  // "" = the reference checkpoint has none
  std::string_view eos_token;
  std::string_view jinja;
};

const BuiltinChatTemplate& GetBuiltinChatTemplate(ChatTemplateKind kind);

}  // namespace spar::model
