#include "model/jinja/interpreter.h"

#include <ctime>
#include <map>
#include <set>

#include "model/jinja/builtins.h"

namespace spar::jinja {
namespace {

constexpr size_t kMaxOutputBytes = 64u << 20;
constexpr int kMaxCallDepth = 100;
constexpr int64_t kMaxRange = 100000;  // Jinja's sandbox limit

struct Frame {
  std::map<std::string, Value> vars;
  std::shared_ptr<Frame> parent;
  const Value* Find(const std::string& name) const {
    for (const Frame* f = this; f != nullptr; f = f->parent.get()) {
      auto it = f->vars.find(name);
      if (it != f->vars.end()) return &it->second;
    }
    return nullptr;
  }
};
using FramePtr = std::shared_ptr<Frame>;

enum class Flow { kNormal, kBreak, kContinue };

Value Builtin(const std::string& name, std::function<Value(const CallArgs&)> fn) {
  return Value::MakeCallable(std::make_shared<Callable>(Callable{name, std::move(fn)}));
}

Value Range(const CallArgs& a) {
  int64_t start = 0, stop = 0, step = 1;
  auto num = [](const Value& v) {
    if (!v.is_int() && !v.is_bool())
      Fail(Error::kRuntime, "range() expects integers, got " + v.TypeName());
    return v.as_int();
  };
  if (a.positional.size() == 1) {
    stop = num(a.positional[0]);
  } else if (a.positional.size() == 2 || a.positional.size() == 3) {
    start = num(a.positional[0]);
    stop = num(a.positional[1]);
    if (a.positional.size() == 3) step = num(a.positional[2]);
  } else {
    Fail(Error::kRuntime, "range expected 1 to 3 arguments");
  }
  if (step == 0) Fail(Error::kRuntime, "range() arg 3 must not be zero");
  List out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    if (static_cast<int64_t>(out.size()) >= kMaxRange) {
      Fail(Error::kRuntime, "range too big, the sandbox allows at most 100000 items");
    }
    out.push_back(Value::Int(i));
  }
  return Value::MakeOpaqueList(std::move(out), "range");
}

// raise_exception, strftime_now, namespace, dict, range: chat_template_utils.py's globals.
FramePtr Globals() {
  auto g = std::make_shared<Frame>();
  g->vars["raise_exception"] = Builtin("raise_exception", [](const CallArgs& a) -> Value {
    const Value* msg = a.Get(0, "message");
    Fail(Error::kRaised, msg ? msg->Str() : std::string());
  });
  g->vars["strftime_now"] = Builtin("strftime_now", [](const CallArgs& a) {
    const Value* fmt = a.Get(0, "format");
    if (fmt == nullptr || !fmt->is_string())
      Fail(Error::kRuntime, "strftime_now expects a format string");
    const std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    char buf[256];
    const size_t n = std::strftime(buf, sizeof(buf), fmt->as_string().c_str(), &local);
    return Value::String(std::string(buf, n));
  });
  auto make_dict = [](const CallArgs& a, bool ns) {
    auto d = std::make_shared<Dict>();
    for (const Value& p : a.positional) {
      if (!p.is_mapping()) Fail(Error::kRuntime, "namespace()/dict() takes a mapping");
      for (const auto& kv : p.dict().items) d->Set(kv.first, kv.second);
    }
    for (const auto& kv : a.keyword) {
      if (ns && !kv.first.empty() && kv.first[0] == '_') {
        Fail(Error::kRuntime,
             "Chat templates cannot store underscore-prefixed attributes on a namespace");
      }
      d->Set(kv.first, kv.second);
    }
    return ns ? Value::MakeNamespace(std::move(d)) : Value::MakeDict(std::move(d));
  };
  g->vars["namespace"] =
      Builtin("namespace", [make_dict](const CallArgs& a) { return make_dict(a, true); });
  g->vars["dict"] = Builtin("dict", [make_dict](const CallArgs& a) { return make_dict(a, false); });
  g->vars["range"] = Builtin("range", Range);
  return g;
}

class Interpreter {
 public:
  std::string Run(const Body& body, const Dict& variables) {
    auto context = std::make_shared<Frame>();
    context->parent = Globals();
    for (const auto& kv : variables.items) context->vars[kv.first] = kv.second;
    root_ = std::make_shared<Frame>();
    root_->parent = context;
    CollectRootAssigned(body);
    std::string out;
    Exec(body, root_, out);
    return out;
  }

 private:
  void Append(std::string& out, const std::string& text) const {
    if (out.size() + text.size() > kMaxOutputBytes)
      Fail(Error::kRuntime, "rendered text exceeds 64 MiB");
    out += text;
  }

  Flow Exec(const Body& body, const FramePtr& frame, std::string& out) {
    for (const auto& stmt : body) {
      const Flow flow = ExecOne(*stmt, frame, out);
      if (flow != Flow::kNormal) return flow;
    }
    return Flow::kNormal;
  }

  Flow ExecOne(const Stmt& s, const FramePtr& frame, std::string& out) {
    switch (s.kind) {
      case Stmt::kText:
        Append(out, s.text);
        return Flow::kNormal;
      case Stmt::kPrint:
        Append(out, Eval(*s.expr, frame).Str());
        return Flow::kNormal;
      case Stmt::kIf:
        for (const auto& branch : s.branches) {
          if (Eval(*branch.first, frame).Truthy()) return Exec(branch.second, frame, out);
        }
        return Exec(s.else_body, frame, out);
      case Stmt::kFor:
        return ExecFor(s, frame, out);
      case Stmt::kSet:
        Assign(s.target, Eval(*s.expr, frame), *frame);
        return Flow::kNormal;
      case Stmt::kSetBlock: {
        std::string text;
        Exec(s.body, frame, text);
        Value v = Value::String(std::move(text));
        for (const auto& f : s.block_filters) v = ApplyFilter(f->name, v, Args(*f, 1, frame));
        Assign(s.target, std::move(v), *frame);
        return Flow::kNormal;
      }
      case Stmt::kMacro:
        frame->vars[s.name] = MakeMacro(s, frame);
        return Flow::kNormal;
      case Stmt::kBreak:
        return Flow::kBreak;
      case Stmt::kContinue:
        return Flow::kContinue;
      case Stmt::kScope:
        return Exec(s.body, frame, out);
    }
    return Flow::kNormal;
  }

  void Assign(const Target& t, Value v, Frame& frame) {
    if (!t.attribute.empty()) {
      const Value* ns = frame.Find(t.names[0]);
      if (ns == nullptr || !ns->is_namespace()) {
        Fail(Error::kRuntime,
             "cannot assign attribute on non-namespace object '" + t.names[0] + "'");
      }
      if (t.attribute[0] == '_') {
        Fail(Error::kRuntime,
             "Chat templates cannot store underscore-prefixed attributes on a namespace");
      }
      ns->dict().Set(t.attribute, std::move(v));
      return;
    }
    if (t.names.size() == 1) {
      frame.vars[t.names[0]] = std::move(v);
      return;
    }
    List items = Iterate(v);
    if (items.size() != t.names.size()) {
      Fail(Error::kRuntime, "cannot unpack " + std::to_string(items.size()) + " values into " +
                                std::to_string(t.names.size()));
    }
    for (size_t i = 0; i < items.size(); ++i) frame.vars[t.names[i]] = items[i];
  }

  Flow ExecFor(const Stmt& s, const FramePtr& frame, std::string& out) {
    const Value iterable = Eval(*s.expr, frame);
    List items = Iterate(iterable);
    if (s.filter) {
      List kept;
      for (const Value& item : items) {
        auto probe = std::make_shared<Frame>();
        probe->parent = frame;
        Assign(s.target, item, *probe);
        if (Eval(*s.filter, probe).Truthy()) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      auto child = std::make_shared<Frame>();
      child->parent = frame;
      Exec(s.else_body, child, out);
      return Flow::kNormal;
    }
    const int64_t n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      auto child = std::make_shared<Frame>();
      child->parent = frame;
      Assign(s.target, items[i], *child);
      child->vars["loop"] = LoopValue(items, i);
      if (Exec(s.body, child, out) == Flow::kBreak) break;
    }
    return Flow::kNormal;
  }

  static Value LoopValue(const List& items, int64_t i) {
    const int64_t n = static_cast<int64_t>(items.size());
    auto d = std::make_shared<Dict>();
    d->Set("index", Value::Int(i + 1));
    d->Set("index0", Value::Int(i));
    d->Set("revindex", Value::Int(n - i));
    d->Set("revindex0", Value::Int(n - i - 1));
    d->Set("first", Value::Bool(i == 0));
    d->Set("last", Value::Bool(i == n - 1));
    d->Set("length", Value::Int(n));
    d->Set("depth", Value::Int(1));
    d->Set("depth0", Value::Int(0));
    d->Set("previtem", i > 0 ? items[i - 1] : Value::Undefined("previtem"));
    d->Set("nextitem", i + 1 < n ? items[i + 1] : Value::Undefined("nextitem"));
    d->Set("cycle", Builtin("loop.cycle", [i](const CallArgs& a) {
             if (a.positional.empty()) Fail(Error::kRuntime, "no items for cycling given");
             return a.positional[i % a.positional.size()];
           }));
    return Value::MakeDict(std::move(d));
  }

  // The macro holds its defining frame weakly: the frame holds the macro.
  Value MakeMacro(const Stmt& s, const FramePtr& defining_frame) {
    const Stmt* macro = &s;
    std::weak_ptr<Frame> weak = defining_frame;
    return Builtin(s.name, [this, macro, weak](const CallArgs& a) {
      FramePtr defining = weak.lock();
      if (!defining) Fail(Error::kRuntime, "macro '" + macro->name + "' called outside its scope");
      if (a.positional.size() > macro->params.size()) {
        Fail(Error::kUnsupported, "unsupported Jinja construct: macro '" + macro->name +
                                      "' called with more arguments than it declares (varargs)");
      }
      auto frame = std::make_shared<Frame>();
      frame->parent = defining;
      for (size_t i = 0; i < macro->params.size(); ++i) {
        const auto& [name, def] = macro->params[i];
        const Value* given = a.Get(i, name);
        frame->vars[name] = given ? *given : def ? Eval(*def, frame) : Value::Undefined(name);
      }
      for (const auto& kv : a.keyword) {
        bool known = false;
        for (const auto& p : macro->params) known = known || p.first == kv.first;
        if (!known) {
          Fail(Error::kUnsupported, "unsupported Jinja construct: macro '" + macro->name +
                                        "' called with unknown keyword '" + kv.first +
                                        "' (kwargs)");
        }
      }
      if (++depth_ > kMaxCallDepth) Fail(Error::kRuntime, "macro recursion deeper than 100");
      std::string text;
      Exec(macro->body, frame, text);
      --depth_;
      return Value::String(std::move(text));
    });
  }

  CallArgs Args(const Expr& e, size_t first, const FramePtr& frame) {
    CallArgs a;
    for (size_t i = first; i < e.args.size(); ++i) a.positional.push_back(Eval(*e.args[i], frame));
    for (const auto& kv : e.kwargs) a.keyword.emplace_back(kv.first, Eval(*kv.second, frame));
    return a;
  }

  Value Eval(const Expr& e, const FramePtr& frame) {
    switch (e.kind) {
      case Expr::kConst:
        return e.value;
      case Expr::kName:
        return Lookup(e.name, frame);
      case Expr::kList: {
        List items;
        for (const auto& a : e.args) items.push_back(Eval(*a, frame));
        return Value::MakeList(std::move(items), e.is_tuple);
      }
      case Expr::kDict: {
        auto d = std::make_shared<Dict>();
        for (const auto& [k, v] : e.dict_items) {
          const Value key = Eval(*k, frame);
          if (!key.is_string())
            Fail(Error::kUnsupported,
                 "unsupported Jinja construct: a dict key that is not a string");
          d->Set(key.as_string(), Eval(*v, frame));
        }
        return Value::MakeDict(std::move(d));
      }
      case Expr::kGetAttr:
        return GetAttr(Eval(*e.args[0], frame), e.name);
      case Expr::kGetItem:
        return GetItem(Eval(*e.args[0], frame), Eval(*e.args[1], frame));
      case Expr::kSlice: {
        auto part = [&](size_t i) { return e.args[i] ? Eval(*e.args[i], frame) : Value::None(); };
        return GetSlice(Eval(*e.args[0], frame), part(1), part(2), part(3));
      }
      case Expr::kCall:
        return Call(e, frame);
      case Expr::kFilter:
        return ApplyFilter(e.name, Eval(*e.args[0], frame), Args(e, 1, frame));
      case Expr::kTest:
        return Value::Bool(ApplyTest(e.name, Eval(*e.args[0], frame), Args(e, 1, frame)) !=
                           e.negated);
      case Expr::kUnary:
        return Unary(e, frame);
      case Expr::kBinary:
        return EvalBinary(e, frame);
      case Expr::kCompare:
        return Compare(e, frame);
      case Expr::kCond:
        if (Eval(*e.args[0], frame).Truthy()) return Eval(*e.args[1], frame);
        return e.args[2] ? Eval(*e.args[2], frame) : Value::Undefined();
    }
    return Value();
  }

  Value Call(const Expr& e, const FramePtr& frame) {
    const Value callee = Eval(*e.args[0], frame);
    if (callee.is_undefined()) {
      Fail(Error::kRuntime,
           "'" +
               (callee.undefined_hint().empty() ? std::string("value") : callee.undefined_hint()) +
               "' is undefined (called)");
    }
    if (!callee.is_callable())
      Fail(Error::kRuntime, "'" + callee.TypeName() + "' object is not callable");
    return callee.callable().fn(Args(e, 1, frame));
  }

  Value Unary(const Expr& e, const FramePtr& frame) {
    const Value v = Eval(*e.args[0], frame);
    if (e.name == "not") return Value::Bool(!v.Truthy());
    if (!v.is_number())
      Fail(Error::kRuntime, "bad operand type for unary " + e.name + ": '" + v.TypeName() + "'");
    if (e.name == "+") return v.is_float() ? v : Value::Int(v.as_int());
    return v.is_float() ? Value::Float(-v.as_double()) : Value::Int(-v.as_int());
  }

  Value EvalBinary(const Expr& e, const FramePtr& frame) {
    const Value a = Eval(*e.args[0], frame);
    if (e.name == "and") return a.Truthy() ? Eval(*e.args[1], frame) : a;
    if (e.name == "or") return a.Truthy() ? a : Eval(*e.args[1], frame);
    const Value b = Eval(*e.args[1], frame);
    if (e.name == "~") return Value::String(a.Str() + b.Str());
    return BinaryOp(e.name, a, b);
  }

  Value Compare(const Expr& e, const FramePtr& frame) {
    Value left = Eval(*e.args[0], frame);
    for (size_t i = 0; i < e.ops.size(); ++i) {
      Value right = Eval(*e.args[i + 1], frame);
      const std::string& op = e.ops[i];
      bool ok;
      if (op == "==")
        ok = Equals(left, right);
      else if (op == "!=")
        ok = !Equals(left, right);
      else if (op == "<")
        ok = Less(left, right);
      else if (op == ">")
        ok = Less(right, left);
      else if (op == "<=")
        ok = !Less(right, left);
      else if (op == ">=")
        ok = !Less(left, right);
      else if (op == "in")
        ok = Contains(right, left);
      else
        ok = !Contains(right, left);
      if (!ok) return Value::Bool(false);
      left = std::move(right);
    }
    return Value::Bool(true);
  }

  // Names the template assigns directly at its top level (set, block set, macro; not in if
  // bodies, loops or macros). As Jinja compiles them, these are template locals from the start:
  // code in a loop or macro that reads one before its assignment gets undefined, not the
  // variable of the same name the template was given (top-level code still sees that one).
  void CollectRootAssigned(const Body& body) {
    for (const auto& s : body) {
      if ((s->kind == Stmt::kSet || s->kind == Stmt::kSetBlock) && s->target.attribute.empty()) {
        root_assigned_.insert(s->target.names.begin(), s->target.names.end());
      } else if (s->kind == Stmt::kMacro) {
        root_assigned_.insert(s->name);
      }
    }
  }

  Value Lookup(const std::string& name, const FramePtr& frame) const {
    for (const Frame* f = frame.get(); f != nullptr; f = f->parent.get()) {
      auto it = f->vars.find(name);
      if (it != f->vars.end()) return it->second;
      if (f == root_.get() && frame != root_ && root_assigned_.count(name)) break;
    }
    return Value::Undefined(name);
  }

  FramePtr root_;
  std::set<std::string> root_assigned_;
  int depth_ = 0;
};

}  // namespace

std::string Render(const Body& body, const Dict& variables) {
  return Interpreter().Run(body, variables);
}

}  // namespace spar::jinja
