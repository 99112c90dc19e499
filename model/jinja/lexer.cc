#include "model/jinja/lexer.h"

#include <cctype>

#include "model/jinja/text.h"
#include "model/jinja/value.h"

namespace spar::jinja {
namespace {

using Str32 = std::u32string;

bool IsDigit(char32_t c) { return c >= '0' && c <= '9'; }
bool IsNameStart(char32_t c) { return c == '_' || (c < 0x80 && std::isalpha(static_cast<int>(c))); }
bool IsNameChar(char32_t c) { return IsNameStart(c) || IsDigit(c); }

// Newlines normalized to "\n" and one trailing newline dropped (keep_trailing_newline False).
Str32 Normalize(std::string_view source) {
  Str32 in = Decode(source), out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\r') {
      if (i + 1 < in.size() && in[i + 1] == '\n') ++i;
      out.push_back('\n');
    } else {
      out.push_back(in[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string_view source) : src_(Normalize(source)) {}

  std::vector<Token> Run() {
    while (pos_ < src_.size()) LexRoot();
    Emit(Token::kEof, "");
    return std::move(tokens_);
  }

 private:
  bool At(size_t p, std::u32string_view s) const { return src_.compare(p, s.size(), s) == 0; }
  void Emit(Token::Type type, std::string text) {
    tokens_.push_back({type, std::move(text), line_});
  }
  void Count(size_t from, size_t to) {
    for (size_t i = from; i < to; ++i) line_ += src_[i] == '\n';
  }
  [[noreturn]] void Syntax(const std::string& what) const {
    Fail(Error::kSyntax, what + " (line " + std::to_string(line_) + ")");
  }

  // Emits the text before a tag, whitespace control applied: '-' strips all trailing
  // whitespace; lstrip_blocks strips a block's indentation when only spaces precede it on its line.
  void EmitData(Str32 text, char32_t sign, bool is_variable) {
    if (sign == '-') {
      size_t e = text.size();
      while (e > 0 && IsPySpace(text[e - 1])) --e;
      text.resize(e);
    } else if (sign != '+' && !is_variable) {
      const size_t nl = text.rfind('\n');
      const size_t l_pos = nl == Str32::npos ? 0 : nl + 1;
      if ((l_pos > 0 || line_starting_) && l_pos < text.size()) {
        bool all_space = true;
        for (size_t i = l_pos; i < text.size(); ++i) all_space = all_space && IsPySpace(text[i]);
        if (all_space) text.resize(l_pos);
      }
    }
    if (!text.empty()) Emit(Token::kData, Encode(text));
  }

  // After a tag's end marker: '-' eats all following whitespace; trim_blocks one newline.
  void EndTag(bool strip_after, bool trim_newline) {
    const size_t start = pos_;
    if (strip_after) {
      while (pos_ < src_.size() && IsPySpace(src_[pos_])) ++pos_;
    } else if (trim_newline && pos_ < src_.size() && src_[pos_] == '\n') {
      ++pos_;
    }
    Count(start, pos_);
    line_starting_ = pos_ > 0 && src_[pos_ - 1] == '\n';
  }

  void LexRoot() {
    size_t tag = pos_;
    while (tag < src_.size() &&
           !(src_[tag] == '{' && tag + 1 < src_.size() &&
             (src_[tag + 1] == '{' || src_[tag + 1] == '%' || src_[tag + 1] == '#'))) {
      ++tag;
    }
    Str32 text = src_.substr(pos_, tag - pos_);
    if (tag == src_.size()) {
      Count(pos_, tag);
      if (!text.empty()) Emit(Token::kData, Encode(text));
      pos_ = tag;
      return;
    }
    const char32_t kind = src_[tag + 1];
    char32_t sign = tag + 2 < src_.size() ? src_[tag + 2] : 0;
    if (sign != '-' && sign != '+') sign = 0;
    const size_t body = tag + 2 + (sign ? 1 : 0);
    EmitData(std::move(text), sign, kind == '{');
    Count(pos_, body);
    pos_ = body;
    line_starting_ = false;
    if (kind == '#') return LexComment();
    if (kind == '%' && LexRaw()) return;
    LexTag(kind == '{');
  }

  void LexComment() {
    const size_t end = src_.find(U"#}", pos_);
    if (end == Str32::npos) Syntax("missing end of comment tag");
    const char32_t sign = end > pos_ ? src_[end - 1] : 0;
    Count(pos_, end + 2);
    pos_ = end + 2;
    EndTag(sign == '-', sign != '+');
  }

  size_t SkipSpace(size_t p) const {
    while (p < src_.size() && IsPySpace(src_[p])) ++p;
    return p;
  }

  // {% raw %}...{% endraw %}: the text between, verbatim.
  bool LexRaw() {
    size_t p = SkipSpace(pos_);
    if (!At(p, U"raw")) return false;
    p = SkipSpace(p + 3);
    if (At(p, U"-%}")) {
      p = SkipSpace(p + 3);
    } else if (At(p, U"%}")) {
      p += 2;
    } else {
      return false;
    }
    for (size_t q = src_.find(U"{%", p); q != Str32::npos; q = src_.find(U"{%", q + 2)) {
      char32_t sign = q + 2 < src_.size() ? src_[q + 2] : 0;
      if (sign != '-' && sign != '+') sign = 0;
      size_t r = SkipSpace(q + 2 + (sign ? 1 : 0));
      if (!At(r, U"endraw")) continue;
      r = SkipSpace(r + 6);
      const char32_t end_sign = src_[r] == '-' || src_[r] == '+' ? src_[r] : 0;
      if (!At(r + (end_sign ? 1 : 0), U"%}")) continue;
      Count(pos_, r + (end_sign ? 1 : 0) + 2);
      line_starting_ = false;
      EmitData(src_.substr(p, q - p), sign, false);
      pos_ = r + (end_sign ? 1 : 0) + 2;
      EndTag(end_sign == '-', end_sign != '+');
      return true;
    }
    Syntax("missing end of raw directive");
  }

  void LexTag(bool variable) {
    Emit(variable ? Token::kVarBegin : Token::kBlockBegin, "");
    std::vector<char32_t> balance;
    while (true) {
      const size_t p = SkipSpace(pos_);
      Count(pos_, p);
      pos_ = p;
      if (pos_ >= src_.size())
        Syntax(variable ? "unexpected end of template, expected '}}'"
                        : "unexpected end of template, expected '%}'");
      if (balance.empty() && LexTagEnd(variable)) return;
      LexExprToken(balance);
    }
  }

  bool LexTagEnd(bool variable) {
    auto end_at = [&](size_t p) { return At(p, variable ? U"}}" : U"%}"); };
    if (src_[pos_] == '-' && end_at(pos_ + 1)) {
      pos_ += 3;
      Emit(variable ? Token::kVarEnd : Token::kBlockEnd, "");
      EndTag(true, false);
      return true;
    }
    if (!variable && src_[pos_] == '+' && end_at(pos_ + 1)) {
      pos_ += 3;
      Emit(Token::kBlockEnd, "");
      EndTag(false, false);
      return true;
    }
    if (end_at(pos_)) {
      pos_ += 2;
      Emit(variable ? Token::kVarEnd : Token::kBlockEnd, "");
      EndTag(false, !variable);
      return true;
    }
    return false;
  }

  void LexExprToken(std::vector<char32_t>& balance) {
    const char32_t c = src_[pos_];
    if (IsDigit(c)) return LexNumber();
    if (IsNameStart(c)) {
      size_t e = pos_;
      while (e < src_.size() && IsNameChar(src_[e])) ++e;
      Emit(Token::kName, Encode(src_.substr(pos_, e - pos_)));
      pos_ = e;
      return;
    }
    if (c == '\'' || c == '"') return LexString(c);
    static const char32_t* const kOps[] = {
        U"//", U"**", U"==", U"!=", U">=", U"<=", U"+", U"-", U"/", U"*", U"%", U"~", U"[",
        U"]",  U"(",  U")",  U"{",  U"}",  U">",  U"<", U"=", U".", U":", U"|", U",", U";"};
    for (const char32_t* op : kOps) {
      const std::u32string_view v(op);
      if (!At(pos_, v)) continue;
      if (v == U"(" || v == U"[" || v == U"{")
        balance.push_back(v == U"(" ? ')' : v == U"[" ? ']' : '}');
      if (v == U")" || v == U"]" || v == U"}") {
        if (balance.empty() || balance.back() != v[0]) Syntax("unexpected '" + Encode(v) + "'");
        balance.pop_back();
      }
      Emit(Token::kOp, Encode(v));
      pos_ += v.size();
      return;
    }
    Syntax("unexpected char " + PyStringRepr(Encode(Str32(1, c))));
  }

  void LexNumber() {
    size_t e = pos_;
    auto digits = [&] {
      while (e < src_.size() && (IsDigit(src_[e]) ||
                                 (src_[e] == '_' && e + 1 < src_.size() && IsDigit(src_[e + 1])))) {
        ++e;
      }
    };
    digits();
    bool is_float = false;
    if (e + 1 < src_.size() && src_[e] == '.' && IsDigit(src_[e + 1])) {
      ++e;
      digits();
      is_float = true;
    }
    if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
      size_t f = e + 1;
      if (f < src_.size() && (src_[f] == '+' || src_[f] == '-')) ++f;
      if (f < src_.size() && IsDigit(src_[f])) {
        e = f;
        digits();
        is_float = true;
      }
    }
    std::string text;
    for (char32_t ch : src_.substr(pos_, e - pos_)) {
      if (ch != '_') text.push_back(static_cast<char>(ch));
    }
    Emit(is_float ? Token::kFloat : Token::kInt, text);
    pos_ = e;
  }

  // A quoted literal, its escapes decoded as Python's "unicode-escape" codec does.
  void LexString(char32_t quote) {
    Str32 out;
    size_t p = pos_ + 1;
    for (;; ++p) {
      if (p >= src_.size()) Syntax("unexpected end of string");
      const char32_t c = src_[p];
      if (c == quote) break;
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (++p >= src_.size()) Syntax("unexpected end of string");
      p = Unescape(p, out);
    }
    Count(pos_, p + 1);
    pos_ = p + 1;
    Emit(Token::kString, Encode(out));
  }

  // The escape whose letter is at `p`; returns the index of its last character.
  size_t Unescape(size_t p, Str32& out) const {
    const char32_t e = src_[p];
    auto hex = [&](size_t n) {
      char32_t v = 0;
      for (size_t k = 1; k <= n; ++k) {
        if (p + k >= src_.size() || !std::isxdigit(static_cast<int>(src_[p + k] & 0x7f)) ||
            src_[p + k] > 0x7f) {
          Syntax("truncated \\" + Encode(Str32(1, e)) + " escape in a string literal");
        }
        const int d = static_cast<int>(src_[p + k]);
        v = v * 16 +
            static_cast<char32_t>(std::isdigit(d) ? d - '0' : (std::tolower(d) - 'a' + 10));
      }
      return v;
    };
    switch (e) {
      case '\n':
        return p;
      case '\\':
      case '\'':
      case '"':
        out.push_back(e);
        return p;
      case 'a':
        out.push_back('\a');
        return p;
      case 'b':
        out.push_back('\b');
        return p;
      case 'f':
        out.push_back('\f');
        return p;
      case 'n':
        out.push_back('\n');
        return p;
      case 'r':
        out.push_back('\r');
        return p;
      case 't':
        out.push_back('\t');
        return p;
      case 'v':
        out.push_back('\v');
        return p;
      case 'x':
        out.push_back(hex(2));
        return p + 2;
      case 'u':
        out.push_back(hex(4));
        return p + 4;
      case 'U':
        out.push_back(hex(8));
        return p + 8;
      default:
        if (e >= '0' && e <= '7') {
          char32_t v = 0;
          size_t k = p;
          for (; k < p + 3 && k < src_.size() && src_[k] >= '0' && src_[k] <= '7'; ++k) {
            v = v * 8 + (src_[k] - '0');
          }
          out.push_back(v);
          return k - 1;
        }
        out.push_back('\\');
        out.push_back(e);
        return p;
    }
  }

  Str32 src_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> Lex(std::string_view source) { return Lexer(source).Run(); }

}  // namespace spar::jinja
