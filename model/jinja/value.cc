#include "model/jinja/value.h"

#include <algorithm>
#include <cmath>

#include "model/jinja/text.h"
#include "nlohmann/json.hpp"

namespace spar::jinja {

void Fail(Error::Kind kind, std::string message) { throw Error{kind, std::move(message)}; }

namespace {

// Python prints these as "<generator object ... at 0x...>", "dict_items([...])", ...: text that
// is not worth copying and that no chat template means to print.
[[noreturn]] void Unprintable(const std::string& python_type) {
  Fail(Error::kUnsupported,
       "unsupported Jinja construct: printing a " + python_type + " object (use |list)");
}

}  // namespace

Value Value::MakeList(List items, bool tuple) {
  Value v(Type::kList);
  v.list_ = std::make_shared<List>(std::move(items));
  v.tuple_ = tuple;
  return v;
}

Value Value::MakeOpaqueList(List items, std::string python_type) {
  Value v = MakeList(std::move(items));
  v.str_ = std::move(python_type);
  return v;
}

Value Value::MakeGenerator(std::string python_type, std::function<List()> produce) {
  Value v(Type::kGenerator);
  v.gen_ = std::make_shared<Generator>();
  v.gen_->python_type = std::move(python_type);
  v.gen_->produce = std::move(produce);
  return v;
}

List Generator::Rest() {
  if (!made) {
    made = true;
    items = produce();
  }
  List rest(items.begin() + static_cast<std::ptrdiff_t>(next), items.end());
  next = items.size();
  return rest;
}

bool Generator::Next(Value* out) {
  if (!made) {
    made = true;
    items = produce();
  }
  if (next >= items.size()) return false;
  *out = items[next++];
  return true;
}

Value Value::MakeDict(std::shared_ptr<Dict> dict) {
  Value v(Type::kDict);
  v.dict_ = std::move(dict);
  return v;
}

Value Value::MakeNamespace(std::shared_ptr<Dict> dict) {
  Value v(Type::kNamespace);
  v.dict_ = std::move(dict);
  return v;
}

Value Value::MakeCallable(std::shared_ptr<Callable> fn) {
  Value v(Type::kCallable);
  v.fn_ = std::move(fn);
  return v;
}

Value Value::FromJson(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return None();
    case nlohmann::ordered_json::value_t::boolean:
      return Bool(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Int(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned:
      return Int(static_cast<int64_t>(j.get<uint64_t>()));
    case nlohmann::ordered_json::value_t::number_float:
      return Float(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return String(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      List items;
      for (const auto& e : j) items.push_back(FromJson(e));
      return MakeList(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      auto d = std::make_shared<Dict>();
      for (auto it = j.begin(); it != j.end(); ++it) d->Set(it.key(), FromJson(it.value()));
      return MakeDict(std::move(d));
    }
    default:
      return None();
  }
}

bool Value::Truthy() const {
  switch (type_) {
    case Type::kUndefined:
    case Type::kNone:
      return false;
    case Type::kBool:
    case Type::kInt:
      return int_ != 0;
    case Type::kFloat:
      return float_ != 0;
    case Type::kString:
      return !str_.empty();
    case Type::kList:
      return !list_->empty();
    case Type::kDict:
      return !dict_->items.empty();
    default:
      return true;
  }
}

std::string Value::TypeName() const {
  switch (type_) {
    case Type::kUndefined:
      return "Undefined";
    case Type::kNone:
      return "NoneType";
    case Type::kBool:
      return "bool";
    case Type::kInt:
      return "int";
    case Type::kFloat:
      return "float";
    case Type::kString:
      return "str";
    case Type::kList:
      return tuple_ ? "tuple" : "list";
    case Type::kDict:
      return "dict";
    case Type::kNamespace:
      return "Namespace";
    case Type::kGenerator:
      return gen_->python_type;
    default:
      return "function";
  }
}

std::string Value::Str() const {
  switch (type_) {
    case Type::kUndefined:
      return "";
    case Type::kString:
      return str_;
    default:
      return Repr();
  }
}

std::string Value::Repr() const {
  switch (type_) {
    case Type::kUndefined:
      return "";
    case Type::kNone:
      return "None";
    case Type::kBool:
      return int_ ? "True" : "False";
    case Type::kInt:
      return std::to_string(int_);
    case Type::kFloat:
      return PyFloatRepr(float_);
    case Type::kString:
      return PyStringRepr(str_);
    case Type::kList: {
      if (!str_.empty()) Unprintable(str_);
      std::string out = tuple_ ? "(" : "[";
      for (size_t i = 0; i < list_->size(); ++i) out += (i ? ", " : "") + (*list_)[i].Repr();
      if (tuple_ && list_->size() == 1) out += ",";
      return out + (tuple_ ? ")" : "]");
    }
    case Type::kDict: {
      std::string out = "{";
      for (size_t i = 0; i < dict_->items.size(); ++i) {
        out += (i ? ", " : "") + PyStringRepr(dict_->items[i].first) + ": " +
               dict_->items[i].second.Repr();
      }
      return out + "}";
    }
    case Type::kGenerator:
      Unprintable(gen_->python_type);
    default:
      Unprintable(TypeName());
  }
}

std::string Value::ToJson(int indent, const std::string& item_sep, const std::string& key_sep,
                          bool sort_keys) const {
  // Python's json.dumps, recursing with the current depth.
  std::function<std::string(const Value&, int)> dump = [&](const Value& v, int depth) {
    const std::string nl = indent >= 0 ? "\n" + std::string((depth + 1) * indent, ' ') : "";
    const std::string close = indent >= 0 ? "\n" + std::string(depth * indent, ' ') : "";
    switch (v.type_) {
      case Type::kNone:
        return std::string("null");
      case Type::kBool:
        return std::string(v.int_ ? "true" : "false");
      case Type::kInt:
        return std::to_string(v.int_);
      case Type::kFloat:
        if (std::isnan(v.float_)) return std::string("NaN");
        if (std::isinf(v.float_)) return std::string(v.float_ > 0 ? "Infinity" : "-Infinity");
        return PyFloatRepr(v.float_);
      case Type::kString:
        return JsonQuote(v.str_);
      case Type::kList: {
        if (v.list_->empty()) return std::string("[]");
        std::string out = "[";
        for (size_t i = 0; i < v.list_->size(); ++i) {
          out += (i ? item_sep : "") + nl + dump((*v.list_)[i], depth + 1);
        }
        return out + close + "]";
      }
      case Type::kDict:
      case Type::kNamespace: {
        if (v.dict_->items.empty()) return std::string("{}");
        std::vector<const std::pair<std::string, Value>*> items;
        for (const auto& kv : v.dict_->items) items.push_back(&kv);
        if (sort_keys) {
          std::stable_sort(items.begin(), items.end(),
                           [](auto* a, auto* b) { return Decode(a->first) < Decode(b->first); });
        }
        std::string out = "{";
        for (size_t i = 0; i < items.size(); ++i) {
          out += (i ? item_sep : "") + nl + JsonQuote(items[i]->first) + key_sep +
                 dump(items[i]->second, depth + 1);
        }
        return out + close + "}";
      }
      default:
        Fail(Error::kRuntime, "Object of type " + v.TypeName() + " is not JSON serializable");
    }
  };
  return dump(*this, 0);
}

const Value* Dict::Find(const std::string& key) const {
  for (const auto& kv : items) {
    if (kv.first == key) return &kv.second;
  }
  return nullptr;
}

void Dict::Set(const std::string& key, Value value) {
  for (auto& kv : items) {
    if (kv.first == key) {
      kv.second = std::move(value);
      return;
    }
  }
  items.emplace_back(key, std::move(value));
}

const Value* CallArgs::Get(size_t index, const std::string& name) const {
  for (const auto& kv : keyword) {
    if (kv.first == name) return &kv.second;
  }
  return index < positional.size() ? &positional[index] : nullptr;
}

bool Equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.type() != b.type() || a.is_tuple() != b.is_tuple()) return false;
  switch (a.type()) {
    case Value::Type::kUndefined:
    case Value::Type::kNone:
      return true;
    case Value::Type::kString:
      return a.as_string() == b.as_string();
    case Value::Type::kList: {
      if (a.list().size() != b.list().size()) return false;
      for (size_t i = 0; i < a.list().size(); ++i) {
        if (!Equals(a.list()[i], b.list()[i])) return false;
      }
      return true;
    }
    case Value::Type::kDict: {
      if (a.dict().items.size() != b.dict().items.size()) return false;
      for (const auto& kv : a.dict().items) {
        const Value* other = b.dict().Find(kv.first);
        if (other == nullptr || !Equals(kv.second, *other)) return false;
      }
      return true;
    }
    default:
      return a.dict_ptr() == b.dict_ptr() && a.callable_ptr() == b.callable_ptr() &&
             a.gen_ptr() == b.gen_ptr();
  }
}

bool Less(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() < b.as_double();
    return a.as_int() < b.as_int();
  }
  if (a.is_string() && b.is_string()) return Decode(a.as_string()) < Decode(b.as_string());
  if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
    const size_t n = std::min(a.list().size(), b.list().size());
    for (size_t i = 0; i < n; ++i) {
      if (!Equals(a.list()[i], b.list()[i])) return Less(a.list()[i], b.list()[i]);
    }
    return a.list().size() < b.list().size();
  }
  Fail(Error::kRuntime,
       "'<' not supported between instances of '" + a.TypeName() + "' and '" + b.TypeName() + "'");
}

}  // namespace spar::jinja
