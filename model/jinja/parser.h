// Jinja2's grammar for the subset chat templates use: tokens become a statement tree. Unknown
// filters and tests, and constructs outside the subset ({% include %}, {% call %}, ...), are
// refused here, by name and line, so a template is never rendered another way. Internal.
#pragma once

#include <vector>

#include "model/jinja/ast.h"
#include "model/jinja/lexer.h"

namespace spar::jinja {

// Throws Error{kSyntax} or Error{kUnsupported}.
Body Parse(const std::vector<Token>& tokens);

}  // namespace spar::jinja
