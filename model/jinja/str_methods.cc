// The methods of Python's str that chat templates call ({{ content.strip() }}, .split(...), ...),
// with Python's semantics on UTF-8 text.
#include <map>

#include "model/jinja/builtins.h"
#include "model/jinja/text.h"

namespace spar::jinja {
namespace {

using Method = Value (*)(const std::string& s, const CallArgs& a, const std::string& name);

[[noreturn]] void TypeError(const std::string& what) { Fail(Error::kRuntime, what); }
[[noreturn]] void Unsupported(const std::string& what) {
  Fail(Error::kUnsupported, "unsupported Jinja construct: " + what);
}

const std::string& Str(const Value& v, const std::string& what) {
  if (!v.is_string()) TypeError(what + ": expected a str, got " + v.TypeName());
  return v.as_string();
}

const Value& Need(const CallArgs& a, size_t i, const std::string& name) {
  const Value* v = a.Get(i, "");
  if (v == nullptr) TypeError(name + "() takes at least " + std::to_string(i + 1) + " argument(s)");
  return *v;
}

long OptionalLong(const CallArgs& a, size_t i, const std::string& key, long def) {
  const Value* v = a.Get(i, key);
  if (v == nullptr || v->is_none()) return def;
  if (!v->is_int() && !v->is_bool()) TypeError(key + ": expected an int, got " + v->TypeName());
  return static_cast<long>(v->as_int());
}

Value StrList(const std::vector<std::string>& parts) {
  List out;
  for (const std::string& p : parts) out.push_back(Value::String(p));
  return Value::MakeList(std::move(out));
}

bool HasAffix(const std::string& s, const Value& arg, bool prefix) {
  auto one = [&](const std::string& p) {
    if (p.size() > s.size()) return false;
    return s.compare(prefix ? 0 : s.size() - p.size(), p.size(), p) == 0;
  };
  if (!arg.is_list()) return one(Str(arg, prefix ? "startswith" : "endswith"));
  for (const Value& p : arg.list()) {
    if (one(Str(p, prefix ? "startswith" : "endswith"))) return true;
  }
  return false;
}

Value Strip(const std::string& s, const CallArgs& a, const std::string& name) {
  const Value* chars = a.Get(0, "chars");
  const bool given = chars != nullptr && !chars->is_none();
  return Value::String(
      PyStrip(s, given ? &Str(*chars, name) : nullptr, name != "rstrip", name != "lstrip"));
}

Value Split(const std::string& s, const CallArgs& a, const std::string& name) {
  const Value* sep_v = a.Get(0, "sep");
  const std::string* sep = sep_v == nullptr || sep_v->is_none() ? nullptr : &Str(*sep_v, name);
  if (sep != nullptr && sep->empty()) TypeError("empty separator");
  const long maxsplit = OptionalLong(a, 1, "maxsplit", -1);
  if (name == "rsplit" && sep != nullptr) return StrList(PyRSplit(s, *sep, maxsplit));
  if (name == "rsplit" && maxsplit >= 0) Unsupported("str.rsplit on whitespace with maxsplit");
  return StrList(PySplit(s, sep, maxsplit));
}

Value Affix(const std::string& s, const CallArgs& a, const std::string& name) {
  return Value::Bool(HasAffix(s, Need(a, 0, name), name == "startswith"));
}

Value Case(const std::string& s, const CallArgs&, const std::string& name) {
  // Case mapping beyond ASCII is refused rather than done differently from Python.
  if (HasNonAscii(s)) Unsupported("str." + name + " of non-ASCII text");
  if (name == "upper") return Value::String(AsciiUpper(s));
  if (name == "lower") return Value::String(AsciiLower(s));
  if (name == "title") return Value::String(PyTitle(s));
  return Value::String(PyCapitalize(s));
}

Value Replace(const std::string& s, const CallArgs& a, const std::string& name) {
  return Value::String(PyReplace(s, Str(Need(a, 0, name), name), Str(Need(a, 1, name), name),
                                 OptionalLong(a, 2, "count", -1)));
}

// find / rfind / count of a substring (code-point positions).
Value Find(const std::string& s, const CallArgs& a, const std::string& name) {
  const std::string& sub = Str(Need(a, 0, name), name);
  if (a.positional.size() > 1) Unsupported("str." + name + " with a range");
  if (name == "count") {
    if (sub.empty()) return Value::Int(static_cast<int64_t>(Decode(s).size()) + 1);
    int64_t n = 0;
    for (size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) ++n;
    return Value::Int(n);
  }
  const size_t at = name == "find" ? s.find(sub) : s.rfind(sub);
  if (at == std::string::npos) return Value::Int(-1);
  return Value::Int(static_cast<int64_t>(Decode(s.substr(0, at)).size()));
}

Value Join(const std::string& s, const CallArgs& a, const std::string& name) {
  std::string out;
  bool first = true;
  for (const Value& v : Iterate(Need(a, 0, name))) {
    out += (first ? "" : s) + Str(v, "join");
    first = false;
  }
  return Value::String(out);
}

Value Splitlines(const std::string& s, const CallArgs&, const std::string&) {
  std::vector<std::string> lines;
  const std::u32string cps = Decode(s);
  std::u32string cur;
  for (size_t i = 0; i < cps.size(); ++i) {
    const char32_t c = cps[i];
    const bool brk = c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || c == 0x1c || c == 0x1d ||
                     c == 0x1e || c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!brk) {
      cur.push_back(c);
      continue;
    }
    if (c == '\r' && i + 1 < cps.size() && cps[i + 1] == '\n') ++i;
    lines.push_back(Encode(cur));
    cur.clear();
  }
  if (!cur.empty()) lines.push_back(Encode(cur));
  return StrList(lines);
}

Value RemoveAffix(const std::string& s, const CallArgs& a, const std::string& name) {
  const Value& arg = Need(a, 0, name);
  const std::string& x = Str(arg, name);
  const bool prefix = name == "removeprefix";
  if (!HasAffix(s, arg, prefix)) return Value::String(s);
  return Value::String(prefix ? s.substr(x.size()) : s.substr(0, s.size() - x.size()));
}

// isdigit / isalpha / isalnum / isspace / islower / isupper.
Value CharClass(const std::string& s, const CallArgs&, const std::string& name) {
  if (HasNonAscii(s) && name != "isspace") Unsupported("str." + name + " of non-ASCII text");
  const std::u32string cps = Decode(s);
  if (cps.empty()) return Value::Bool(false);
  bool all = true, any_cased = false;
  for (char32_t c : cps) {
    const bool lower = c >= 'a' && c <= 'z', upper = c >= 'A' && c <= 'Z';
    const bool digit = c >= '0' && c <= '9';
    any_cased = any_cased || lower || upper;
    if (name == "isdigit") all = all && digit;
    if (name == "isalpha") all = all && (lower || upper);
    if (name == "isalnum") all = all && (lower || upper || digit);
    if (name == "isspace") all = all && IsPySpace(c);
    if (name == "islower") all = all && !upper;
    if (name == "isupper") all = all && !lower;
  }
  if (name == "islower" || name == "isupper") all = all && any_cased;
  return Value::Bool(all);
}

const std::map<std::string, Method>& Methods() {
  static const auto* methods = new std::map<std::string, Method>{{"strip", Strip},
                                                                 {"lstrip", Strip},
                                                                 {"rstrip", Strip},
                                                                 {"split", Split},
                                                                 {"rsplit", Split},
                                                                 {"startswith", Affix},
                                                                 {"endswith", Affix},
                                                                 {"upper", Case},
                                                                 {"lower", Case},
                                                                 {"title", Case},
                                                                 {"capitalize", Case},
                                                                 {"replace", Replace},
                                                                 {"find", Find},
                                                                 {"rfind", Find},
                                                                 {"count", Find},
                                                                 {"join", Join},
                                                                 {"splitlines", Splitlines},
                                                                 {"removeprefix", RemoveAffix},
                                                                 {"removesuffix", RemoveAffix},
                                                                 {"isdigit", CharClass},
                                                                 {"isalpha", CharClass},
                                                                 {"isalnum", CharClass},
                                                                 {"isspace", CharClass},
                                                                 {"islower", CharClass},
                                                                 {"isupper", CharClass}};
  return *methods;
}

}  // namespace

Value StringMethod(const std::string& s, const std::string& name) {
  auto it = Methods().find(name);
  if (it == Methods().end()) {
    if (name == "format") Unsupported("str.format");
    return Value::Undefined(name);
  }
  const Method method = it->second;
  return Value::MakeCallable(std::make_shared<Callable>(Callable{
      "str." + name, [s, name, method](const CallArgs& a) { return method(s, a, name); }}));
}

}  // namespace spar::jinja
