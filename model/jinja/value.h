// The values a chat template computes with, as Python and Jinja2 see them: undefined, None, bool,
// int, float, str, list (or tuple), dict (insertion-ordered, string keys), a mutable namespace, and
// callables (built-in functions, bound methods, macros). Containers are shared, as Python's are.
// Internal to model/jinja; see template.h for the interface.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nlohmann/json_fwd.hpp"

namespace spar::jinja {

class Value;
struct Dict;
struct Callable;
struct Generator;
using List = std::vector<Value>;

// Thrown inside the interpreter and turned into an absl::Status at template.cc's edge.
struct Error {
  enum Kind { kSyntax, kUnsupported, kRaised, kRuntime } kind;
  std::string message;
};
[[noreturn]] void Fail(Error::Kind kind, std::string message);

class Value {
 public:
  enum class Type {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kDict,
    kNamespace,
    kCallable,
    kGenerator
  };

  Value() = default;  // undefined
  static Value Undefined(std::string hint = "") {
    Value v;
    v.str_ = std::move(hint);
    return v;
  }
  static Value None() { return Value(Type::kNone); }
  static Value Bool(bool b) {
    Value v(Type::kBool);
    v.int_ = b ? 1 : 0;
    return v;
  }
  static Value Int(int64_t i) {
    Value v(Type::kInt);
    v.int_ = i;
    return v;
  }
  static Value Float(double d) {
    Value v(Type::kFloat);
    v.float_ = d;
    return v;
  }
  static Value String(std::string s) {
    Value v(Type::kString);
    v.str_ = std::move(s);
    return v;
  }
  static Value MakeList(List items, bool tuple = false);
  // A list Python would not print as one (dict views, range): printing it is refused.
  static Value MakeOpaqueList(List items, std::string python_type);
  // A Python generator or iterator (what select/reject/map/items and reverse return): computed
  // when first consumed (`produce` may throw then), consumed once, always true, no len(), and
  // printing it is refused (Python prints its address).
  static Value MakeGenerator(std::string python_type, std::function<List()> produce);
  static Value MakeDict(std::shared_ptr<Dict> dict);
  static Value MakeNamespace(std::shared_ptr<Dict> dict);
  static Value MakeCallable(std::shared_ptr<Callable> fn);
  // JSON as Python's json.loads gives it (objects keep their order).
  static Value FromJson(const nlohmann::ordered_json& j);

  Type type() const { return type_; }
  bool is_undefined() const { return type_ == Type::kUndefined; }
  bool is_none() const { return type_ == Type::kNone; }
  bool is_bool() const { return type_ == Type::kBool; }
  bool is_int() const { return type_ == Type::kInt; }
  bool is_float() const { return type_ == Type::kFloat; }
  bool is_number() const { return is_int() || is_float() || is_bool(); }
  bool is_string() const { return type_ == Type::kString; }
  bool is_list() const { return type_ == Type::kList; }
  bool is_tuple() const { return type_ == Type::kList && tuple_; }
  bool is_dict() const { return type_ == Type::kDict; }
  bool is_namespace() const { return type_ == Type::kNamespace; }
  bool is_mapping() const { return is_dict() || is_namespace(); }
  bool is_callable() const { return type_ == Type::kCallable; }
  bool is_generator() const { return type_ == Type::kGenerator; }

  bool as_bool() const { return int_ != 0; }
  int64_t as_int() const { return int_; }
  double as_double() const { return is_float() ? float_ : static_cast<double>(int_); }
  const std::string& as_string() const { return str_; }
  // The undefined value's name, for error messages ("'x' is undefined").
  const std::string& undefined_hint() const { return str_; }
  List& list() const { return *list_; }
  Dict& dict() const { return *dict_; }
  Callable& callable() const { return *fn_; }
  const std::shared_ptr<Dict>& dict_ptr() const { return dict_; }
  const std::shared_ptr<Callable>& callable_ptr() const { return fn_; }
  Generator& generator() const { return *gen_; }
  const std::shared_ptr<Generator>& gen_ptr() const { return gen_; }

  // Python's bool(x) (undefined is false).
  bool Truthy() const;
  // Python's str(x) ({{ x }} output; undefined prints nothing).
  std::string Str() const;
  // Python's repr(x) (inside containers' str).
  std::string Repr() const;
  // The Python type name, for error messages ("str", "dict", "NoneType", ...).
  std::string TypeName() const;
  // json.dumps(x, ensure_ascii=False, indent=..., separators=..., sort_keys=...): transformers'
  // tojson filter. indent < 0 = none.
  std::string ToJson(int indent, const std::string& item_sep, const std::string& key_sep,
                     bool sort_keys) const;

 private:
  explicit Value(Type t) : type_(t) {}
  Type type_ = Type::kUndefined;
  bool tuple_ = false;
  int64_t int_ = 0;
  double float_ = 0;
  std::string str_;
  std::shared_ptr<List> list_;
  std::shared_ptr<Dict> dict_;
  std::shared_ptr<Callable> fn_;
  std::shared_ptr<Generator> gen_;
};

// A generator's items, made on first use and handed out once, as Python's iterators.
struct Generator {
  std::string python_type;
  std::function<List()> produce;
  bool made = false;
  List items;
  size_t next = 0;
  // The items not yet consumed (consumed by this call).
  List Rest();
  // The next item; false when exhausted.
  bool Next(Value* out);
};

// Insertion-ordered string-keyed mapping (Python's dict as templates use it).
struct Dict {
  std::vector<std::pair<std::string, Value>> items;
  const Value* Find(const std::string& key) const;
  void Set(const std::string& key, Value value);
};

struct CallArgs {
  List positional;
  std::vector<std::pair<std::string, Value>> keyword;
  // The keyword `name`, else positional `index`, else nullptr.
  const Value* Get(size_t index, const std::string& name) const;
};

struct Callable {
  std::string name;
  std::function<Value(const CallArgs&)> fn;
};

// Python's ==, and <, for the comparisons templates make (numbers, strings, lists).
bool Equals(const Value& a, const Value& b);
bool Less(const Value& a, const Value& b);

}  // namespace spar::jinja
