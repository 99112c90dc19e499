// A Jinja2 template as Hugging Face chat templates are written, rendered as transformers 5 renders
// them (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, the
// {% generation %} tag, and the globals raise_exception / strftime_now / namespace / dict), by an
// interpreter written here: no Python at run time. Supported: {% if/elif/else %}, {% for %} (with
// else, loop filters, unpacking, loop.*), {% set %} (also namespaces and block sets),
// {% macro %}, {% break/continue %}, {% raw %}, comments, whitespace control; Python's operators,
// literals, slicing, conditional expressions; the filters and tests of builtins.h and the str /
// dict methods templates call. Anything else is refused by name and line (Unimplemented), never
// rendered another way. Thread-safe once parsed; copies share the parsed form.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace spar::jinja {

class Template {
 public:
  // InvalidArgument for a syntax error, Unimplemented for a construct outside the subset; the
  // message names it and its line.
  static absl::StatusOr<Template> Parse(std::string_view source);

  // The text for `variables` (a JSON object: the template's top-level names). Errors:
  // FailedPrecondition when the template raises (raise_exception: its message), Unimplemented for
  // a construct met only at run time (a str method, case mapping of non-ASCII text...),
  // InvalidArgument for Python's TypeErrors and undefined values used as Jinja refuses them.
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& variables) const;

 private:
  struct Parsed;
  std::shared_ptr<const Parsed> parsed_;
};

}  // namespace spar::jinja
