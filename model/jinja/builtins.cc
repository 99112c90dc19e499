#include "model/jinja/builtins.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "model/jinja/text.h"

namespace spar::jinja {
namespace {

[[noreturn]] void TypeError(const std::string& what) { Fail(Error::kRuntime, what); }

void NeedDefined(const Value& v, const std::string& what) {
  if (v.is_undefined()) {
    Fail(Error::kRuntime,
         (v.undefined_hint().empty() ? std::string("value") : "'" + v.undefined_hint() + "'") +
             " is undefined (" + what + ")");
  }
}

const std::string& NeedString(const Value& v, const std::string& what) {
  if (!v.is_string()) TypeError(what + ": expected a str, got " + v.TypeName());
  return v.as_string();
}

int64_t NeedInt(const Value& v, const std::string& what) {
  if (!v.is_int() && !v.is_bool()) TypeError(what + ": expected an int, got " + v.TypeName());
  return v.as_int();
}

Value Bound(const std::string& name, std::function<Value(const CallArgs&)> fn) {
  return Value::MakeCallable(std::make_shared<Callable>(Callable{name, std::move(fn)}));
}

Value DictMethod(const Value& obj, const std::string& name) {
  if (name == "items" || name == "keys" || name == "values") {
    return Bound("dict." + name, [obj, name](const CallArgs&) {
      List out;
      for (const auto& kv : obj.dict().items) {
        if (name == "items") {
          out.push_back(Value::MakeList({Value::String(kv.first), kv.second}, /*tuple=*/true));
        } else {
          out.push_back(name == "keys" ? Value::String(kv.first) : kv.second);
        }
      }
      return Value::MakeOpaqueList(std::move(out), "dict_" + name);
    });
  }
  if (name == "get") {
    return Bound("dict.get", [obj](const CallArgs& a) {
      const Value* key = a.Get(0, "key");
      if (key == nullptr) TypeError("get expected at least 1 argument");
      const Value* found = key->is_string() ? obj.dict().Find(key->as_string()) : nullptr;
      if (found != nullptr) return *found;
      const Value* def = a.Get(1, "default");
      return def != nullptr ? *def : Value::None();
    });
  }
  static const std::set<std::string> kMutating = {
      "update", "pop", "popitem", "setdefault", "clear", "append", "extend", "insert", "remove"};
  if (kMutating.count(name)) {
    Fail(Error::kRuntime, "access to attribute '" + name + "' of 'dict' object is unsafe");
  }
  return Value();
}

// list.count(x) / list.index(x) (the methods that do not change the list).
Value ListMethod(const Value& obj, const std::string& name) {
  return Bound("list." + name, [obj, name](const CallArgs& a) {
    const Value* x = a.Get(0, "");
    if (x == nullptr) TypeError(name + "() takes exactly one argument");
    int64_t count = 0;
    for (size_t i = 0; i < obj.list().size(); ++i) {
      if (!Equals(obj.list()[i], *x)) continue;
      if (name == "index") return Value::Int(static_cast<int64_t>(i));
      ++count;
    }
    if (name == "index") Fail(Error::kRuntime, x->Repr() + " is not in list");
    return Value::Int(count);
  });
}

int64_t NormIndex(int64_t i, size_t n) { return i < 0 ? i + static_cast<int64_t>(n) : i; }

}  // namespace

List Iterate(const Value& v) {
  switch (v.type()) {
    case Value::Type::kUndefined:
      return {};
    case Value::Type::kList:
      return v.list();
    case Value::Type::kString: {
      List out;
      for (char32_t c : Decode(v.as_string()))
        out.push_back(Value::String(Encode(std::u32string(1, c))));
      return out;
    }
    case Value::Type::kDict: {
      List out;
      for (const auto& kv : v.dict().items) out.push_back(Value::String(kv.first));
      return out;
    }
    case Value::Type::kGenerator:
      return v.generator().Rest();
    default:
      TypeError("'" + v.TypeName() + "' object is not iterable");
  }
}

Value GetAttr(const Value& obj, const std::string& name) {
  NeedDefined(obj, "attribute '" + name + "'");
  switch (obj.type()) {
    case Value::Type::kString:
      return StringMethod(obj.as_string(), name);
    case Value::Type::kDict: {
      Value method = DictMethod(obj, name);
      if (!method.is_undefined()) return method;
      const Value* found = obj.dict().Find(name);
      return found ? *found : Value::Undefined(name);
    }
    case Value::Type::kNamespace: {
      const Value* found = obj.dict().Find(name);
      return found ? *found : Value::Undefined(name);
    }
    case Value::Type::kList:
      if (name == "append" || name == "extend" || name == "pop" || name == "insert" ||
          name == "remove" || name == "sort" || name == "reverse" || name == "clear") {
        Fail(Error::kRuntime, "access to attribute '" + name + "' of 'list' object is unsafe");
      }
      if (name == "count" || name == "index") return ListMethod(obj, name);
      return Value::Undefined();
    default:
      return Value::Undefined();
  }
}

Value GetItem(const Value& obj, const Value& key) {
  NeedDefined(obj, "subscript");
  if (obj.is_mapping() && key.is_string()) {
    const Value* found = obj.dict().Find(key.as_string());
    if (found) return *found;
    return obj.is_dict() ? DictMethod(obj, key.as_string()) : Value::Undefined();
  }
  if ((obj.is_list() || obj.is_string()) && (key.is_int() || key.is_bool())) {
    if (obj.is_list()) {
      const int64_t i = NormIndex(key.as_int(), obj.list().size());
      if (i < 0 || i >= static_cast<int64_t>(obj.list().size())) return Value::Undefined();
      return obj.list()[i];
    }
    const std::u32string cps = Decode(obj.as_string());
    const int64_t i = NormIndex(key.as_int(), cps.size());
    if (i < 0 || i >= static_cast<int64_t>(cps.size())) return Value::Undefined();
    return Value::String(Encode(std::u32string(1, cps[i])));
  }
  if (obj.is_string() && key.is_string()) return GetAttr(obj, key.as_string());
  return Value::Undefined();
}

Value GetSlice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  NeedDefined(obj, "slice");
  const int64_t st = step.is_undefined() || step.is_none() ? 1 : NeedInt(step, "slice step");
  if (st == 0) TypeError("slice step cannot be zero");
  std::vector<size_t> picks;
  const bool is_str = obj.is_string();
  if (!is_str && !obj.is_list()) TypeError("'" + obj.TypeName() + "' object is not subscriptable");
  const std::u32string cps = is_str ? Decode(obj.as_string()) : std::u32string();
  const int64_t n = is_str ? cps.size() : obj.list().size();
  auto bound = [&](const Value& v, int64_t def) {
    if (v.is_undefined() || v.is_none()) return def;
    int64_t i = NeedInt(v, "slice index");
    if (i < 0) i += n;
    if (st > 0) return std::clamp<int64_t>(i, 0, n);
    return std::clamp<int64_t>(i, -1, n - 1);
  };
  const int64_t b = bound(start, st > 0 ? 0 : n - 1), e = bound(stop, st > 0 ? n : -1);
  for (int64_t i = b; st > 0 ? i < e : i > e; i += st) picks.push_back(static_cast<size_t>(i));
  if (is_str) {
    std::u32string out;
    for (size_t i : picks) out.push_back(cps[i]);
    return Value::String(Encode(out));
  }
  List out;
  for (size_t i : picks) out.push_back(obj.list()[i]);
  return Value::MakeList(std::move(out), obj.is_tuple());
}

bool Contains(const Value& container, const Value& item) {
  if (container.is_string()) {
    return container.as_string().find(NeedString(item, "'in <string>'")) != std::string::npos;
  }
  if (container.is_mapping()) {
    if ((item.is_list() && !item.is_tuple()) || item.is_dict() || item.is_namespace()) {
      TypeError("unhashable type: '" + item.TypeName() + "'");
    }
    return item.is_string() && container.dict().Find(item.as_string());
  }
  if (container.is_list()) {
    for (const Value& v : container.list()) {
      if (Equals(v, item)) return true;
    }
    return false;
  }
  if (container.is_generator()) {  // consumed up to the match, as Python's `in`
    Value v;
    while (container.generator().Next(&v)) {
      if (Equals(v, item)) return true;
    }
    return false;
  }
  if (container.is_undefined()) return false;
  TypeError("argument of type '" + container.TypeName() + "' is not iterable");
}

Value BinaryOp(const std::string& op, const Value& a, const Value& b) {
  if (op == "%" && a.is_string()) {
    Fail(Error::kUnsupported, "unsupported Jinja construct: '%' string formatting");
  }
  NeedDefined(a, "operator " + op);
  NeedDefined(b, "operator " + op);
  if (op == "+") {
    if (a.is_string() && b.is_string()) return Value::String(a.as_string() + b.as_string());
    if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
      List out = a.list();
      out.insert(out.end(), b.list().begin(), b.list().end());
      return Value::MakeList(std::move(out), a.is_tuple());
    }
  }
  if (op == "*" && (a.is_string() || a.is_list() || b.is_string() || b.is_list())) {
    const Value& seq = a.is_int() || a.is_bool() ? b : a;
    const Value& times = a.is_int() || a.is_bool() ? a : b;
    if ((times.is_int() || times.is_bool()) && (seq.is_string() || seq.is_list())) {
      const int64_t n = std::max<int64_t>(0, times.as_int());
      if (n > 100000) Fail(Error::kRuntime, "repetition too large");
      if (seq.is_string()) {
        std::string out;
        for (int64_t i = 0; i < n; ++i) out += seq.as_string();
        return Value::String(out);
      }
      List out;
      for (int64_t i = 0; i < n; ++i) out.insert(out.end(), seq.list().begin(), seq.list().end());
      return Value::MakeList(std::move(out), seq.is_tuple());
    }
  }
  if (!a.is_number() || !b.is_number()) {
    TypeError("unsupported operand type(s) for " + op + ": '" + a.TypeName() + "' and '" +
              b.TypeName() + "'");
  }
  const bool ints = !a.is_float() && !b.is_float();
  const double x = a.as_double(), y = b.as_double();
  if ((op == "/" || op == "//" || op == "%") && y == 0) Fail(Error::kRuntime, "division by zero");
  if (op == "+") return ints ? Value::Int(a.as_int() + b.as_int()) : Value::Float(x + y);
  if (op == "-") return ints ? Value::Int(a.as_int() - b.as_int()) : Value::Float(x - y);
  if (op == "*") return ints ? Value::Int(a.as_int() * b.as_int()) : Value::Float(x * y);
  if (op == "/") return Value::Float(x / y);
  if (op == "//") {
    if (ints) {
      int64_t q = a.as_int() / b.as_int();
      if ((a.as_int() % b.as_int() != 0) && ((a.as_int() < 0) != (b.as_int() < 0))) --q;
      return Value::Int(q);
    }
    return Value::Float(std::floor(x / y));
  }
  if (op == "%") {
    if (ints) {
      int64_t r = a.as_int() % b.as_int();
      if (r != 0 && ((r < 0) != (b.as_int() < 0))) r += b.as_int();
      return Value::Int(r);
    }
    double r = std::fmod(x, y);
    if (r != 0 && ((r < 0) != (y < 0))) r += y;
    return Value::Float(r);
  }
  if (op == "**") {
    if (ints && b.as_int() >= 0) {
      int64_t r = 1;
      for (int64_t i = 0; i < b.as_int() && i < 64; ++i) r *= a.as_int();
      return Value::Int(r);
    }
    return Value::Float(std::pow(x, y));
  }
  TypeError("unknown operator " + op);
}

}  // namespace spar::jinja
