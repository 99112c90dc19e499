// Renders a parsed template: Jinja2's statement semantics (scopes per loop iteration, loop
// variables, namespaces, macros, break/continue) and the globals transformers gives chat
// templates (raise_exception, strftime_now, namespace, dict, range). Internal to model/jinja.
#pragma once

#include <string>

#include "model/jinja/ast.h"

namespace spar::jinja {

// Throws Error. `variables` are the template's top-level names.
std::string Render(const Body& body, const Dict& variables);

}  // namespace spar::jinja
