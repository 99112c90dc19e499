// Jinja2's built-in filters and tests (the subset chat templates use) and transformers' tojson.
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>

#include "model/jinja/builtins.h"
#include "model/jinja/text.h"

namespace spar::jinja {
namespace {

using FilterFn = std::function<Value(const Value&, const CallArgs&)>;
using TestFn = std::function<bool(const Value&, const CallArgs&)>;

Value Arg(const CallArgs& a, size_t i, const std::string& name, const Value& def) {
  const Value* v = a.Get(i, name);
  return v ? *v : def;
}

bool BoolArg(const CallArgs& a, size_t i, const std::string& name, bool def) {
  const Value* v = a.Get(i, name);
  return v ? v->Truthy() : def;
}

int64_t Length(const Value& v) {
  if (v.is_string()) return static_cast<int64_t>(Decode(v.as_string()).size());
  if (v.is_list()) return static_cast<int64_t>(v.list().size());
  if (v.is_mapping()) return static_cast<int64_t>(v.dict().items.size());
  if (v.is_undefined()) return 0;
  Fail(Error::kRuntime, "object of type '" + v.TypeName() + "' has no len()");
}

// Jinja's attribute getter for filters: "a.b" or "0", each part by item first.
Value Attribute(const Value& item, const std::string& path) {
  Value cur = item;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const bool digits = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
    cur = GetItem(cur, digits ? Value::Int(std::stoll(part)) : Value::String(part));
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

Value ToJson(const Value& v, const CallArgs& a) {
  const Value indent = Arg(a, 1, "indent", Value::None());
  const Value separators = Arg(a, 2, "separators", Value::None());
  if (BoolArg(a, 0, "ensure_ascii", false)) {
    Fail(Error::kUnsupported, "unsupported Jinja construct: tojson(ensure_ascii=True)");
  }
  int width = -1;
  if (indent.is_int())
    width = static_cast<int>(indent.as_int());
  else if (!indent.is_none())
    Fail(Error::kUnsupported, "unsupported Jinja construct: tojson indent that is not an int");
  std::string item_sep = width >= 0 ? "," : ", ", key_sep = ": ";
  if (separators.is_list() && separators.list().size() == 2 && separators.list()[0].is_string() &&
      separators.list()[1].is_string()) {
    item_sep = separators.list()[0].as_string();
    key_sep = separators.list()[1].as_string();
  } else if (!separators.is_none()) {
    Fail(Error::kRuntime, "tojson: separators must be a pair of strings");
  }
  return Value::String(v.ToJson(width, item_sep, key_sep, BoolArg(a, 3, "sort_keys", false)));
}

Value Indent(const Value& v, const CallArgs& a) {
  // Jinja appends "\n" to the value first: anything but a str is a TypeError there.
  if (!v.is_string()) {
    Fail(Error::kRuntime, "unsupported operand type(s) for +=: '" + v.TypeName() + "' and 'str'");
  }
  const Value w = Arg(a, 0, "width", Value::Int(4));
  const std::string pad =
      w.is_string() ? w.as_string() : std::string(std::max<int64_t>(0, w.as_int()), ' ');
  const bool first = BoolArg(a, 1, "first", false), blank = BoolArg(a, 2, "blank", false);
  const std::string s = v.Str() + "";
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t nl; (nl = s.find('\n', start)) != std::string::npos; start = nl + 1) {
    lines.push_back(s.substr(start, nl - start));
  }
  lines.push_back(s.substr(start));
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i) out += "\n";
    const bool pad_it = (i > 0 || first) && (blank || !lines[i].empty() || i == 0);
    out += (pad_it ? pad : "") + lines[i];
  }
  return Value::String(out);
}

List Selected(const Value& seq, const CallArgs& a, bool attr, bool select) {
  List out;
  const size_t skip = attr ? 1 : 0;
  const std::string attr_name = attr && !a.positional.empty() ? a.positional[0].Str() : "";
  CallArgs test_args;
  std::string test;
  if (a.positional.size() > skip) {
    test = a.positional[skip].Str();
    test_args.positional.assign(a.positional.begin() + skip + 1, a.positional.end());
  }
  if (!test.empty() && !IsTest(test)) Fail(Error::kRuntime, "no test named '" + test + "'");
  if (!seq.Truthy()) return out;  // Jinja's `if value:` before iterating
  for (const Value& item : Iterate(seq)) {
    const Value probe = attr ? Attribute(item, attr_name) : item;
    const bool hit = test.empty() ? probe.Truthy() : ApplyTest(test, probe, test_args);
    if (hit == select) out.push_back(item);
  }
  return out;
}

// Jinja's select/reject/selectattr/rejectattr and map are generators: lazy, single-pass.
Value SelectOrReject(const Value& seq, const CallArgs& a, bool attr, bool select) {
  return Value::MakeGenerator("generator",
                              [seq, a, attr, select] { return Selected(seq, a, attr, select); });
}

List Mapped(const Value& seq, const CallArgs& a) {
  List out;
  if (!seq.Truthy()) return out;  // Jinja's `if value:` before iterating
  const Value* attribute = nullptr;
  for (const auto& kv : a.keyword) {
    if (kv.first == "attribute") attribute = &kv.second;
  }
  for (const Value& item : Iterate(seq)) {
    if (attribute != nullptr) {
      Value v = Attribute(item, attribute->Str());
      const Value* def = nullptr;
      for (const auto& kv : a.keyword) {
        if (kv.first == "default") def = &kv.second;
      }
      out.push_back(v.is_undefined() && def ? *def : v);
    } else {
      if (a.positional.empty()) Fail(Error::kRuntime, "map requires a filter argument");
      const std::string filter = a.positional[0].Str();
      if (!IsFilter(filter)) Fail(Error::kRuntime, "no filter named '" + filter + "'");
      CallArgs rest;
      rest.positional.assign(a.positional.begin() + 1, a.positional.end());
      out.push_back(ApplyFilter(filter, item, rest));
    }
  }
  return out;
}

Value Map(const Value& seq, const CallArgs& a) {
  return Value::MakeGenerator("generator", [seq, a] { return Mapped(seq, a); });
}

Value Sort(const Value& seq, const CallArgs& a) {
  List items = Iterate(seq);
  const bool reverse = BoolArg(a, 0, "reverse", false);
  const bool case_sensitive = BoolArg(a, 1, "case_sensitive", false);
  const Value attribute = Arg(a, 2, "attribute", Value::None());
  auto key = [&](const Value& v) {
    Value k = attribute.is_none() ? v : Attribute(v, attribute.Str());
    if (!case_sensitive && k.is_string()) {
      if (HasNonAscii(k.as_string()))
        Fail(Error::kUnsupported, "unsupported Jinja construct: sort of non-ASCII text");
      return Value::String(AsciiLower(k.as_string()));
    }
    return k;
  };
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    return reverse ? Less(key(y), key(x)) : Less(key(x), key(y));
  });
  return Value::MakeList(std::move(items));
}

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

Value CaseFilter(const Value& v, const std::string& name, std::string (*fn)(std::string_view)) {
  const std::string s = v.Str();
  if (HasNonAscii(s))
    Fail(Error::kUnsupported,
         "unsupported Jinja construct: filter '" + name + "' of non-ASCII text");
  return Value::String(fn(s));
}

Value Trim(const Value& v, const CallArgs& a) {
  const Value* chars = a.Get(0, "chars");
  const bool given = chars != nullptr && !chars->is_none();
  const std::string set = given ? chars->Str() : "";
  return Value::String(PyStrip(v.Str(), given ? &set : nullptr, true, true));
}

Value Default(const Value& v, const CallArgs& a) {
  if (v.is_undefined() || (BoolArg(a, 1, "boolean", false) && !v.Truthy())) {
    return Arg(a, 0, "default_value", Value::String(""));
  }
  return v;
}

Value FirstOrLast(const Value& v, bool first) {
  if (v.is_generator()) {
    if (!first) Fail(Error::kRuntime, "'" + v.TypeName() + "' object is not reversible");
    Value item;
    return v.generator().Next(&item) ? item : Value::Undefined("first");
  }
  List items = Iterate(v);
  if (items.empty()) return Value::Undefined(first ? "first" : "last");
  return first ? items.front() : items.back();
}

Value JoinFilter(const Value& v, const CallArgs& a) {
  const std::string sep = Arg(a, 0, "d", Value::String("")).Str();
  const Value* attribute = a.Get(1, "attribute");
  std::string out;
  bool first = true;
  for (const Value& item : Iterate(v)) {
    out += (first ? "" : sep) + (attribute ? Attribute(item, attribute->Str()) : item).Str();
    first = false;
  }
  return Value::String(out);
}

// A generator, as Jinja's do_items: a value that is no mapping fails when it is consumed.
Value Items(const Value& v, const CallArgs&) {
  return Value::MakeGenerator("generator", [v] {
    List out;
    if (v.is_undefined()) return out;
    if (!v.is_mapping()) Fail(Error::kRuntime, "Can only get item pairs from a mapping.");
    for (const auto& kv : v.dict().items) {
      out.push_back(Value::MakeList({Value::String(kv.first), kv.second}, /*tuple=*/true));
    }
    return out;
  });
}

Value ReplaceFilter(const Value& v, const CallArgs& a) {
  const Value* count = a.Get(2, "count");
  return Value::String(PyReplace(v.Str(), Arg(a, 0, "old", Value::String("")).Str(),
                                 Arg(a, 1, "new", Value::String("")).Str(),
                                 count && !count->is_none() ? count->as_int() : -1));
}

Value Reverse(const Value& v, const CallArgs&) {
  if (v.is_string()) {
    std::u32string cps = Decode(v.as_string());
    std::reverse(cps.begin(), cps.end());
    return Value::String(Encode(cps));
  }
  // reversed(value) for a sequence (an iterator), else list(value) reversed.
  const bool sequence = v.is_list() || v.is_dict() || v.is_undefined();
  List items = Iterate(v);
  std::reverse(items.begin(), items.end());
  if (!sequence) return Value::MakeList(std::move(items));
  return Value::MakeGenerator(v.is_dict() ? "dict_reversekeyiterator" : "list_reverseiterator",
                              [items] { return items; });
}

// int / float: numbers converted, strings parsed (else the default), as Jinja's filters.
Value ToNumber(const Value& v, const CallArgs& a, bool integer) {
  if (v.is_undefined()) Fail(Error::kRuntime, "'" + v.undefined_hint() + "' is undefined");
  if (v.is_number()) {
    return integer ? Value::Int(v.is_float() ? static_cast<int64_t>(v.as_double()) : v.as_int())
                   : Value::Float(v.as_double());
  }
  if (v.is_string()) {
    const std::string s = PyStrip(v.as_string(), nullptr, true, true);
    char* end = nullptr;
    if (integer) {
      const long long i = std::strtoll(s.c_str(), &end, 10);
      if (!s.empty() && end && *end == '\0') return Value::Int(i);
    } else {
      const double d = std::strtod(s.c_str(), &end);
      if (!s.empty() && end && *end == '\0') return Value::Float(d);
    }
  }
  return Arg(a, 0, "default", integer ? Value::Int(0) : Value::Float(0));
}

Value Abs(const Value& v, const CallArgs&) {
  if (v.is_int() || v.is_bool()) return Value::Int(std::llabs(v.as_int()));
  if (v.is_float()) return Value::Float(std::fabs(v.as_double()));
  Fail(Error::kRuntime, "bad operand type for abs(): '" + v.TypeName() + "'");
}

// A generator, as Jinja's do_unique: strings compared case-insensitively unless case_sensitive.
Value Unique(const Value& v, const CallArgs& a) {
  const bool case_sensitive = BoolArg(a, 0, "case_sensitive", false);
  const Value attribute = Arg(a, 1, "attribute", Value::None());
  return Value::MakeGenerator("generator", [v, case_sensitive, attribute] {
    List out, keys;
    for (const Value& item : Iterate(v)) {
      Value key = attribute.is_none() ? item : Attribute(item, attribute.Str());
      if (!case_sensitive && key.is_string()) key = CaseFilter(key, "unique", AsciiLower);
      if ((key.is_list() && !key.is_tuple()) || key.is_mapping()) {  // Python keeps a set
        Fail(Error::kRuntime, "unhashable type: '" + key.TypeName() + "'");
      }
      if (std::any_of(keys.begin(), keys.end(), [&](const Value& k) { return Equals(k, key); })) {
        continue;
      }
      keys.push_back(key);
      out.push_back(item);
    }
    return out;
  });
}

// Jinja's min/max: strings compared case-insensitively unless case_sensitive; first of equals.
Value MinOrMax(const Value& v, const CallArgs& a, bool min) {
  const bool case_sensitive = BoolArg(a, 0, "case_sensitive", false);
  const Value attribute = Arg(a, 1, "attribute", Value::None());
  auto key = [&](const Value& item) {
    Value k = attribute.is_none() ? item : Attribute(item, attribute.Str());
    return !case_sensitive && k.is_string() ? CaseFilter(k, min ? "min" : "max", AsciiLower) : k;
  };
  List items = Iterate(v);
  if (items.empty()) return Value::Undefined(min ? "min" : "max");
  size_t best = 0;
  for (size_t i = 1; i < items.size(); ++i) {
    if (min ? Less(key(items[i]), key(items[best])) : Less(key(items[best]), key(items[i]))) {
      best = i;
    }
  }
  return items[best];
}

Value Sum(const Value& v, const CallArgs& a) {
  Value total = Arg(a, 1, "start", Value::Int(0));
  for (const Value& item : Iterate(v)) total = BinaryOp("+", total, item);
  return total;
}

const std::map<std::string, FilterFn>& Filters() {
  using A = const CallArgs&;
  static const auto* filters = new std::map<std::string, FilterFn>{
      {"trim", Trim},
      {"tojson", ToJson},
      {"length", [](const Value& v, A) { return Value::Int(Length(v)); }},
      {"count", [](const Value& v, A) { return Value::Int(Length(v)); }},
      {"string", [](const Value& v, A) { return Value::String(v.Str()); }},
      {"lower", [](const Value& v, A) { return CaseFilter(v, "lower", AsciiLower); }},
      {"upper", [](const Value& v, A) { return CaseFilter(v, "upper", AsciiUpper); }},
      {"capitalize", [](const Value& v, A) { return CaseFilter(v, "capitalize", PyCapitalize); }},
      {"default", Default},
      {"d", Default},
      {"first", [](const Value& v, A) { return FirstOrLast(v, true); }},
      {"last", [](const Value& v, A) { return FirstOrLast(v, false); }},
      {"join", JoinFilter},
      {"list", [](const Value& v, A) { return Value::MakeList(Iterate(v)); }},
      {"items", Items},
      {"selectattr", [](const Value& v, A a) { return SelectOrReject(v, a, true, true); }},
      {"rejectattr", [](const Value& v, A a) { return SelectOrReject(v, a, true, false); }},
      {"select", [](const Value& v, A a) { return SelectOrReject(v, a, false, true); }},
      {"reject", [](const Value& v, A a) { return SelectOrReject(v, a, false, false); }},
      {"map", Map},
      {"replace", ReplaceFilter},
      {"reverse", Reverse},
      // Markup(value): a str from here on.
      {"safe", [](const Value& v, A) { return Value::String(v.Str()); }},
      {"escape", [](const Value& v, A) { return Value::String(Escape(v.Str())); }},
      {"e", [](const Value& v, A) { return Value::String(Escape(v.Str())); }},
      {"int", [](const Value& v, A a) { return ToNumber(v, a, true); }},
      {"float", [](const Value& v, A a) { return ToNumber(v, a, false); }},
      {"abs", Abs},
      {"unique", Unique},
      {"sort", Sort},
      {"indent", Indent},
      {"min", [](const Value& v, A a) { return MinOrMax(v, a, true); }},
      {"max", [](const Value& v, A a) { return MinOrMax(v, a, false); }},
      {"sum", Sum},
  };
  return *filters;
}

bool IsMapping(const Value& v) { return v.is_dict(); }

// str(value).islower() / .isupper(): a cased letter, none of the other case (ASCII only).
bool IsCase(const Value& v, bool upper) {
  const std::string s = v.Str();
  if (HasNonAscii(s)) {
    Fail(Error::kUnsupported, std::string("unsupported Jinja construct: test '") +
                                  (upper ? "upper" : "lower") + "' of non-ASCII text");
  }
  bool cased = false;
  for (char c : s) {
    const bool lo = c >= 'a' && c <= 'z', up = c >= 'A' && c <= 'Z';
    if ((upper && lo) || (!upper && up)) return false;
    cased = cased || lo || up;
  }
  return cased;
}

// value % n as Python computes it for the odd/even/divisibleby tests (a TypeError for a str or
// list, as Python's); compared as a number.
double Mod(const Value& v, const Value& n) { return BinaryOp("%", v, n).as_double(); }

const std::map<std::string, TestFn>& Tests() {
  auto cmp = [](std::function<bool(const Value&, const Value&)> f) {
    return [f](const Value& v, const CallArgs& a) {
      if (a.positional.empty()) Fail(Error::kRuntime, "test needs an argument");
      return f(v, a.positional[0]);
    };
  };
  static const auto* tests = new std::map<std::string, TestFn>{
      {"defined", [](const Value& v, const CallArgs&) { return !v.is_undefined(); }},
      {"undefined", [](const Value& v, const CallArgs&) { return v.is_undefined(); }},
      {"none", [](const Value& v, const CallArgs&) { return v.is_none(); }},
      {"boolean", [](const Value& v, const CallArgs&) { return v.is_bool(); }},
      {"true", [](const Value& v, const CallArgs&) { return v.is_bool() && v.as_bool(); }},
      {"false", [](const Value& v, const CallArgs&) { return v.is_bool() && !v.as_bool(); }},
      {"integer", [](const Value& v, const CallArgs&) { return v.is_int(); }},
      {"float", [](const Value& v, const CallArgs&) { return v.is_float(); }},
      {"number", [](const Value& v, const CallArgs&) { return v.is_number(); }},
      {"string", [](const Value& v, const CallArgs&) { return v.is_string(); }},
      {"mapping", [](const Value& v, const CallArgs&) { return IsMapping(v); }},
      {"iterable",
       [](const Value& v, const CallArgs&) {
         return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict() || v.is_generator();
       }},
      {"sequence",
       [](const Value& v, const CallArgs&) {
         return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict();
       }},
      {"callable", [](const Value& v, const CallArgs&) { return v.is_callable(); }},
      {"odd", [](const Value& v, const CallArgs&) { return Mod(v, Value::Int(2)) == 1; }},
      {"even", [](const Value& v, const CallArgs&) { return Mod(v, Value::Int(2)) == 0; }},
      {"divisibleby", cmp([](const Value& v, const Value& n) { return Mod(v, n) == 0; })},
      {"lower", [](const Value& v, const CallArgs&) { return IsCase(v, false); }},
      {"upper", [](const Value& v, const CallArgs&) { return IsCase(v, true); }},
      {"sameas", cmp([](const Value& v, const Value& o) {
         if (v.is_none() || v.is_bool() || v.is_undefined())
           return v.type() == o.type() && Equals(v, o);
         return (v.is_mapping() && o.is_mapping() && v.dict_ptr() == o.dict_ptr());
       })},
      {"eq", cmp(Equals)},
      {"equalto", cmp(Equals)},
      {"==", cmp(Equals)},
      {"ne", cmp([](const Value& a, const Value& b) { return !Equals(a, b); })},
      {"!=", cmp([](const Value& a, const Value& b) { return !Equals(a, b); })},
      {"lt", cmp(Less)},
      {"lessthan", cmp(Less)},
      {"<", cmp(Less)},
      {"gt", cmp([](const Value& a, const Value& b) { return Less(b, a); })},
      {"greaterthan", cmp([](const Value& a, const Value& b) { return Less(b, a); })},
      {">", cmp([](const Value& a, const Value& b) { return Less(b, a); })},
      {"le", cmp([](const Value& a, const Value& b) { return !Less(b, a); })},
      {"<=", cmp([](const Value& a, const Value& b) { return !Less(b, a); })},
      {"ge", cmp([](const Value& a, const Value& b) { return !Less(a, b); })},
      {">=", cmp([](const Value& a, const Value& b) { return !Less(a, b); })},
      {"in", cmp([](const Value& v, const Value& c) { return Contains(c, v); })},
  };
  return *tests;
}

}  // namespace

bool IsFilter(const std::string& name) { return Filters().count(name) > 0; }
bool IsTest(const std::string& name) { return Tests().count(name) > 0; }

bool IsKnownUnsupportedFilter(const std::string& name) {
  static const std::set<std::string> kJinja = {
      "attr",     "batch",     "center", "dictsort",  "filesizeformat", "forceescape", "format",
      "groupby",  "pprint",    "random", "round",     "slice",          "striptags",   "title",
      "truncate", "urlencode", "urlize", "wordcount", "wordwrap",       "xmlattr"};
  return kJinja.count(name) > 0;
}

Value ApplyFilter(const std::string& name, const Value& input, const CallArgs& args) {
  auto it = Filters().find(name);
  if (it == Filters().end()) Fail(Error::kSyntax, "no filter named '" + name + "'");
  return it->second(input, args);
}

bool ApplyTest(const std::string& name, const Value& input, const CallArgs& args) {
  auto it = Tests().find(name);
  if (it == Tests().end()) Fail(Error::kSyntax, "no test named '" + name + "'");
  return it->second(input, args);
}

}  // namespace spar::jinja
