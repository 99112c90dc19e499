#include "model/jinja/parser.h"

#include <cstdlib>
#include <set>

#include "model/jinja/builtins.h"

namespace spar::jinja {
namespace {

class Parser {
 public:
  explicit Parser(const std::vector<Token>& tokens) : t_(tokens) {}

  Body ParseTemplate() {
    Body body = ParseBody({});
    if (Cur().type != Token::kEof) Syntax("unexpected '" + Cur().text + "'");
    return body;
  }

 private:
  const Token& Cur() const { return t_[i_]; }
  const Token& Peek(size_t n = 1) const { return t_[std::min(i_ + n, t_.size() - 1)]; }
  const Token& Next() { return t_[i_ < t_.size() - 1 ? i_++ : i_]; }
  bool IsOp(const char* op) const { return Cur().type == Token::kOp && Cur().text == op; }
  bool IsName(const char* name) const { return Cur().type == Token::kName && Cur().text == name; }
  bool SkipOp(const char* op) {
    if (!IsOp(op)) return false;
    ++i_;
    return true;
  }
  bool SkipName(const char* name) {
    if (!IsName(name)) return false;
    ++i_;
    return true;
  }
  [[noreturn]] void Syntax(const std::string& what) const {
    Fail(Error::kSyntax, what + " (line " + std::to_string(Cur().line) + ")");
  }
  [[noreturn]] void Unsupported(const std::string& what) const {
    Fail(Error::kUnsupported,
         "unsupported Jinja construct: " + what + " (line " + std::to_string(Cur().line) + ")");
  }
  void ExpectOp(const char* op) {
    if (!SkipOp(op)) Syntax(std::string("expected '") + op + "', got '" + Cur().text + "'");
  }
  std::string ExpectName() {
    if (Cur().type != Token::kName) Syntax("expected a name, got '" + Cur().text + "'");
    return Next().text;
  }
  void ExpectBlockEnd() {
    if (Cur().type != Token::kBlockEnd)
      Syntax("expected end of statement block, got '" + Cur().text + "'");
    ++i_;
  }

  // Statements until a block tag whose first name is in `ends` (left unconsumed).
  Body ParseBody(const std::set<std::string>& ends) {
    Body body;
    while (Cur().type != Token::kEof) {
      const Token& tok = Cur();
      if (tok.type == Token::kData) {
        auto s = Node(Stmt::kText);
        s->text = Next().text;
        body.push_back(std::move(s));
      } else if (tok.type == Token::kVarBegin) {
        ++i_;
        auto s = Node(Stmt::kPrint);
        s->expr = ParseTuple();
        if (Cur().type != Token::kVarEnd) Syntax("expected '}}', got '" + Cur().text + "'");
        ++i_;
        body.push_back(std::move(s));
      } else if (tok.type == Token::kBlockBegin) {
        if (Peek().type == Token::kName && ends.count(Peek().text)) return body;
        ++i_;
        body.push_back(ParseStatement());
      } else {
        Syntax("unexpected '" + tok.text + "'");
      }
    }
    if (!ends.empty()) Syntax("unexpected end of template, expected '" + *ends.begin() + "'");
    return body;
  }

  std::unique_ptr<Stmt> Node(Stmt::Kind kind) const {
    auto s = std::make_unique<Stmt>();
    s->kind = kind;
    s->line = Cur().line;
    return s;
  }

  // After ParseBody stopped at `{% name`: consumes the tag.
  void EndTag(const char* name) {
    ++i_;  // block begin
    if (!SkipName(name)) Syntax(std::string("expected '") + name + "'");
    ExpectBlockEnd();
  }

  std::unique_ptr<Stmt> ParseStatement() {
    if (Cur().type != Token::kName) Syntax("tag name expected");
    const std::string name = Cur().text;
    if (name == "if") return ParseIf();
    if (name == "for") return ParseFor();
    if (name == "set") return ParseSet();
    if (name == "macro") return ParseMacro();
    if (name == "break" || name == "continue") {
      auto s = Node(name == "break" ? Stmt::kBreak : Stmt::kContinue);
      ++i_;
      ExpectBlockEnd();
      return s;
    }
    if (name == "generation") {
      auto s = Node(Stmt::kScope);
      ++i_;
      ExpectBlockEnd();
      s->body = ParseBody({"endgeneration"});
      EndTag("endgeneration");
      return s;
    }
    static const std::set<std::string> kUnsupported = {
        "call",    "filter", "with",       "include", "import", "from",
        "extends", "block",  "autoescape", "do",      "trans",  "pluralize"};
    if (kUnsupported.count(name)) Unsupported("{% " + name + " %}");
    Syntax("unknown tag '" + name + "'");
  }

  std::unique_ptr<Stmt> ParseIf() {
    auto s = Node(Stmt::kIf);
    ++i_;
    while (true) {
      ExprPtr cond = ParseTuple();
      ExpectBlockEnd();
      Body body = ParseBody({"elif", "else", "endif"});
      s->branches.emplace_back(std::move(cond), std::move(body));
      ++i_;  // block begin
      const std::string tag = Next().text;
      if (tag == "elif") continue;
      if (tag == "else") {
        ExpectBlockEnd();
        s->else_body = ParseBody({"endif"});
        EndTag("endif");
      } else {
        ExpectBlockEnd();
      }
      return s;
    }
  }

  Target ParseTarget(bool allow_attribute) {
    Target target;
    target.names.push_back(ExpectName());
    if (allow_attribute && SkipOp(".")) {
      target.attribute = ExpectName();
      return target;
    }
    while (SkipOp(",")) {
      if (Cur().type != Token::kName) break;
      target.names.push_back(ExpectName());
    }
    return target;
  }

  std::unique_ptr<Stmt> ParseFor() {
    auto s = Node(Stmt::kFor);
    ++i_;
    const bool paren = SkipOp("(");
    s->target = ParseTarget(false);
    if (paren) ExpectOp(")");
    if (!SkipName("in")) Syntax("expected 'in'");
    s->expr = ParseTuple(/*with_condexpr=*/false);
    if (SkipName("if")) s->filter = ParseTuple();
    if (IsName("recursive")) Unsupported("recursive for loop");
    ExpectBlockEnd();
    s->body = ParseBody({"endfor", "else"});
    ++i_;
    if (Next().text == "else") {
      ExpectBlockEnd();
      s->else_body = ParseBody({"endfor"});
      EndTag("endfor");
    } else {
      ExpectBlockEnd();
    }
    return s;
  }

  std::unique_ptr<Stmt> ParseSet() {
    ++i_;
    Target target = ParseTarget(true);
    if (SkipOp("=")) {
      auto s = Node(Stmt::kSet);
      s->target = std::move(target);
      s->expr = ParseTuple();
      ExpectBlockEnd();
      return s;
    }
    auto s = Node(Stmt::kSetBlock);
    s->target = std::move(target);
    while (SkipOp("|")) s->block_filters.push_back(ParseFilter(nullptr));
    ExpectBlockEnd();
    s->body = ParseBody({"endset"});
    EndTag("endset");
    return s;
  }

  std::unique_ptr<Stmt> ParseMacro() {
    auto s = Node(Stmt::kMacro);
    ++i_;
    s->name = ExpectName();
    ExpectOp("(");
    while (!IsOp(")")) {
      if (!s->params.empty()) ExpectOp(",");
      if (IsOp(")")) break;
      std::string param = ExpectName();
      ExprPtr def;
      if (SkipOp("=")) def = ParseExpression();
      s->params.emplace_back(std::move(param), std::move(def));
    }
    ExpectOp(")");
    ExpectBlockEnd();
    s->body = ParseBody({"endmacro"});
    EndTag("endmacro");
    return s;
  }

  // ---- expressions ----------------------------------------------------------------------------

  ExprPtr Make(Expr::Kind kind) const {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = Cur().line;
    return e;
  }

  // `a, b` becomes a tuple where Jinja's parse_tuple allows it.
  ExprPtr ParseTuple(bool with_condexpr = true) {
    ExprPtr first = with_condexpr ? ParseExpression() : ParseOr();
    if (!IsOp(",")) return first;
    auto tuple = Make(Expr::kList);
    tuple->is_tuple = true;
    tuple->args.push_back(std::move(first));
    while (SkipOp(",")) {
      if (Cur().type == Token::kBlockEnd || Cur().type == Token::kVarEnd || IsOp(")") ||
          IsName("in") || IsName("if")) {
        break;
      }
      tuple->args.push_back(with_condexpr ? ParseExpression() : ParseOr());
    }
    return tuple;
  }

  ExprPtr ParseExpression() {
    ExprPtr expr = ParseOr();
    while (SkipName("if")) {
      auto cond = Make(Expr::kCond);
      cond->args.push_back(ParseOr());
      cond->args.push_back(std::move(expr));
      cond->args.push_back(SkipName("else") ? ParseExpression() : nullptr);
      expr = std::move(cond);
    }
    return expr;
  }

  ExprPtr Binary(const std::string& op, ExprPtr a, ExprPtr b) const {
    auto e = Make(Expr::kBinary);
    e->name = op;
    e->args.push_back(std::move(a));
    e->args.push_back(std::move(b));
    return e;
  }

  ExprPtr ParseOr() {
    ExprPtr left = ParseAnd();
    while (SkipName("or")) left = Binary("or", std::move(left), ParseAnd());
    return left;
  }
  ExprPtr ParseAnd() {
    ExprPtr left = ParseNot();
    while (SkipName("and")) left = Binary("and", std::move(left), ParseNot());
    return left;
  }
  ExprPtr ParseNot() {
    if (SkipName("not")) {
      auto e = Make(Expr::kUnary);
      e->name = "not";
      e->args.push_back(ParseNot());
      return e;
    }
    return ParseCompare();
  }

  ExprPtr ParseCompare() {
    ExprPtr first = ParseMath1();
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (Cur().type == Token::kOp &&
          (Cur().text == "==" || Cur().text == "!=" || Cur().text == "<" || Cur().text == ">" ||
           Cur().text == "<=" || Cur().text == ">=")) {
        op = Next().text;
      } else if (SkipName("in")) {
        op = "in";
      } else if (IsName("not") && Peek().type == Token::kName && Peek().text == "in") {
        i_ += 2;
        op = "notin";
      } else {
        break;
      }
      if (!cmp) {
        cmp = Make(Expr::kCompare);
        cmp->args.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->args.push_back(ParseMath1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }

  ExprPtr ParseMath1() {
    ExprPtr left = ParseConcat();
    while (IsOp("+") || IsOp("-")) {
      const std::string op = Next().text;
      left = Binary(op, std::move(left), ParseConcat());
    }
    return left;
  }
  ExprPtr ParseConcat() {
    ExprPtr left = ParseMath2();
    while (SkipOp("~")) left = Binary("~", std::move(left), ParseMath2());
    return left;
  }
  ExprPtr ParseMath2() {
    ExprPtr left = ParsePow();
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      const std::string op = Next().text;
      left = Binary(op, std::move(left), ParsePow());
    }
    return left;
  }
  ExprPtr ParsePow() {
    ExprPtr left = ParseUnary(true);
    while (SkipOp("**")) left = Binary("**", std::move(left), ParseUnary(true));
    return left;
  }

  ExprPtr ParseUnary(bool with_filter) {
    ExprPtr node;
    if (IsOp("-") || IsOp("+")) {
      node = Make(Expr::kUnary);
      node->name = Next().text;
      node->args.push_back(ParseUnary(false));
    } else {
      node = ParsePostfix(ParsePrimary());
    }
    return with_filter ? ParseFilterExpr(std::move(node)) : std::move(node);
  }

  ExprPtr ParsePrimary() {
    const Token& tok = Cur();
    auto e = Make(Expr::kConst);
    switch (tok.type) {
      case Token::kName:
        ++i_;
        if (tok.text == "true" || tok.text == "True") {
          e->value = Value::Bool(true);
        } else if (tok.text == "false" || tok.text == "False") {
          e->value = Value::Bool(false);
        } else if (tok.text == "none" || tok.text == "None") {
          e->value = Value::None();
        } else {
          e->kind = Expr::kName;
          e->name = tok.text;
        }
        return e;
      case Token::kString: {
        std::string s;
        while (Cur().type == Token::kString) s += Next().text;
        e->value = Value::String(std::move(s));
        return e;
      }
      case Token::kInt:
        ++i_;
        e->value = Value::Int(std::strtoll(tok.text.c_str(), nullptr, 10));
        return e;
      case Token::kFloat:
        ++i_;
        e->value = Value::Float(std::strtod(tok.text.c_str(), nullptr));
        return e;
      default:
        break;
    }
    if (SkipOp("(")) {
      if (SkipOp(")")) {
        e->kind = Expr::kList;
        e->is_tuple = true;
        return e;
      }
      ExprPtr inner = ParseTuple();
      ExpectOp(")");
      return inner;
    }
    if (SkipOp("[")) {
      e->kind = Expr::kList;
      while (!IsOp("]")) {
        if (!e->args.empty()) ExpectOp(",");
        if (IsOp("]")) break;
        e->args.push_back(ParseExpression());
      }
      ExpectOp("]");
      return e;
    }
    if (SkipOp("{")) {
      e->kind = Expr::kDict;
      while (!IsOp("}")) {
        if (!e->dict_items.empty()) ExpectOp(",");
        if (IsOp("}")) break;
        ExprPtr key = ParseExpression();
        ExpectOp(":");
        e->dict_items.emplace_back(std::move(key), ParseExpression());
      }
      ExpectOp("}");
      return e;
    }
    Syntax("unexpected '" + tok.text + "'");
  }

  ExprPtr ParsePostfix(ExprPtr node) {
    while (true) {
      if (SkipOp(".")) {
        auto e = Make(Expr::kGetAttr);
        if (Cur().type == Token::kInt) {
          e->kind = Expr::kGetItem;
          e->args.push_back(std::move(node));
          auto idx = Make(Expr::kConst);
          idx->value = Value::Int(std::strtoll(Next().text.c_str(), nullptr, 10));
          e->args.push_back(std::move(idx));
        } else {
          e->name = ExpectName();
          e->args.push_back(std::move(node));
        }
        node = std::move(e);
      } else if (SkipOp("[")) {
        node = ParseSubscript(std::move(node));
      } else if (IsOp("(")) {
        node = ParseCall(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr ParseSubscript(ExprPtr node) {
    ExprPtr parts[3];
    bool slice = false;
    if (IsOp("]")) {  // x[]: an empty tuple key, as Jinja parses it
      parts[0] = Make(Expr::kList);
      parts[0]->is_tuple = true;
    }
    for (int k = 0; k < 3; ++k) {
      if (!IsOp(":") && !IsOp("]") && !(k == 0 && parts[0])) parts[k] = ParseExpression();
      if (k < 2 && SkipOp(":")) {
        slice = true;
        continue;
      }
      break;
    }
    if (!slice && parts[0] && IsOp(",")) {  // x[a, b]: a tuple key, as Jinja parses it
      auto tuple = Make(Expr::kList);
      tuple->is_tuple = true;
      tuple->args.push_back(std::move(parts[0]));
      while (SkipOp(",") && !IsOp("]")) tuple->args.push_back(ParseExpression());
      parts[0] = std::move(tuple);
    }
    ExpectOp("]");
    auto e = Make(slice ? Expr::kSlice : Expr::kGetItem);
    e->args.push_back(std::move(node));
    if (!slice && !parts[0]) Syntax("expected an expression in '[]'");
    for (int k = 0; k < (slice ? 3 : 1); ++k) e->args.push_back(std::move(parts[k]));
    return e;
  }

  // `(args, name=value)` appended to e's args / kwargs.
  void ParseArgs(Expr& e) {
    ExpectOp("(");
    bool first = true;
    while (!IsOp(")")) {
      if (!first) ExpectOp(",");
      first = false;
      if (IsOp(")")) break;
      if (IsOp("*") || IsOp("**")) Unsupported("*args / **kwargs in a call");
      if (Cur().type == Token::kName && Peek().type == Token::kOp && Peek().text == "=") {
        std::string key = Next().text;
        ++i_;
        e.kwargs.emplace_back(std::move(key), ParseExpression());
      } else {
        if (!e.kwargs.empty()) Syntax("positional argument after a keyword argument");
        e.args.push_back(ParseExpression());
      }
    }
    ExpectOp(")");
  }

  ExprPtr ParseCall(ExprPtr callee) {
    auto e = Make(Expr::kCall);
    e->args.push_back(std::move(callee));
    ParseArgs(*e);
    return e;
  }

  std::string DottedName() {
    std::string name = ExpectName();
    while (IsOp(".") && Peek().type == Token::kName) {
      ++i_;
      name += "." + Next().text;
    }
    return name;
  }

  ExprPtr ParseFilter(ExprPtr input) {
    auto e = Make(Expr::kFilter);
    e->name = DottedName();
    if (!IsFilter(e->name)) {
      if (IsKnownUnsupportedFilter(e->name)) Unsupported("filter '" + e->name + "'");
      Syntax("no filter named '" + e->name + "'");
    }
    e->args.push_back(std::move(input));
    if (IsOp("(")) ParseArgs(*e);
    return e;
  }

  ExprPtr ParseFilterExpr(ExprPtr node) {
    while (true) {
      if (SkipOp("|")) {
        node = ParseFilter(std::move(node));
      } else if (SkipName("is")) {
        node = ParseTest(std::move(node));
      } else if (IsOp("(")) {
        node = ParseCall(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr ParseTest(ExprPtr input) {
    auto e = Make(Expr::kTest);
    e->negated = SkipName("not");
    e->name = DottedName();
    if (!IsTest(e->name)) Syntax("no test named '" + e->name + "'");
    e->args.push_back(std::move(input));
    if (IsOp("(")) {
      ParseArgs(*e);
    } else if ((Cur().type == Token::kName || Cur().type == Token::kString ||
                Cur().type == Token::kInt || Cur().type == Token::kFloat || IsOp("(") ||
                IsOp("[") || IsOp("{")) &&
               !IsName("else") && !IsName("or") && !IsName("and")) {
      if (IsName("is")) Syntax("you cannot chain multiple tests with is");
      e->args.push_back(ParsePostfix(ParsePrimary()));
    }
    return e;
  }

  const std::vector<Token>& t_;
  size_t i_ = 0;
};

}  // namespace

Body Parse(const std::vector<Token>& tokens) { return Parser(tokens).ParseTemplate(); }

}  // namespace spar::jinja
