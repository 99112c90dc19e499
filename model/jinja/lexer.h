// Jinja2's lexer as transformers configures it (trim_blocks, lstrip_blocks, no trailing newline
// kept, newlines normalized): template text becomes data and tag tokens, whitespace control
// applied. Internal to model/jinja.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace spar::jinja {

struct Token {
  enum Type {
    kData,
    kVarBegin,
    kVarEnd,
    kBlockBegin,
    kBlockEnd,
    kName,
    kString,
    kInt,
    kFloat,
    kOp,
    kEof
  };
  Type type;
  std::string text;  // data, name, operator, or a literal's value (strings unescaped)
  int line;
};

// Throws Error{kSyntax} for an unclosed tag, comment or string, or a character no token starts.
std::vector<Token> Lex(std::string_view source);

}  // namespace spar::jinja
