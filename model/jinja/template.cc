#include "model/jinja/template.h"

#include "model/jinja/ast.h"
#include "model/jinja/interpreter.h"
#include "model/jinja/lexer.h"
#include "model/jinja/parser.h"
#include "nlohmann/json.hpp"

namespace spar::jinja {

struct Template::Parsed {
  std::vector<std::unique_ptr<Stmt>> body;
};

namespace {

absl::Status ToStatus(const Error& e) {
  switch (e.kind) {
    case Error::kSyntax:
      return absl::InvalidArgumentError("chat template syntax error: " + e.message);
    case Error::kUnsupported:
      return absl::UnimplementedError(e.message);
    case Error::kRaised:
      return absl::FailedPreconditionError("chat template raised: " + e.message);
    case Error::kRuntime:
      break;
  }
  return absl::InvalidArgumentError("chat template error: " + e.message);
}

}  // namespace

absl::StatusOr<Template> Template::Parse(std::string_view source) {
  try {
    auto parsed = std::make_shared<Parsed>();
    parsed->body = jinja::Parse(Lex(source));
    Template t;
    t.parsed_ = std::move(parsed);
    return t;
  } catch (const Error& e) {
    return ToStatus(e);
  }
}

absl::StatusOr<std::string> Template::Render(const nlohmann::ordered_json& variables) const {
  if (!variables.is_object())
    return absl::InvalidArgumentError("template variables must be a JSON object");
  try {
    const Value v = Value::FromJson(variables);
    return jinja::Render(parsed_->body, v.dict());
  } catch (const Error& e) {
    return ToStatus(e);
  }
}

}  // namespace spar::jinja
