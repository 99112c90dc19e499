// The parsed form of a chat template: expressions and statements as Jinja2's parser builds them
// (the subset Hugging Face chat templates use). Internal to model/jinja.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/jinja/value.h"

namespace spar::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum Kind {
    kConst,    // value
    kName,     // name
    kList,     // args (tuple: is_tuple)
    kDict,     // kwargs-like pairs in dict_items
    kGetAttr,  // args[0].name
    kGetItem,  // args[0][args[1]]
    kSlice,    // args[0][args[1]:args[2]:args[3]] (null parts absent)
    kCall,     // args[0](args[1..], kwargs)
    kFilter,   // args[0] | name(args[1..], kwargs)
    kTest,     // args[0] is [not] name(args[1..], kwargs)
    kUnary,    // name ("-", "+", "not") args[0]
    kBinary,   // args[0] name args[1]: + - * / // % ** ~ and or
    kCompare,  // args[0] then (ops[i], args[i+1]): == != < > <= >= in notin
    kCond,     // args[1] if args[0] else args[2] (absent: undefined)
  };
  Kind kind;
  int line = 0;
  Value value;
  std::string name;
  bool negated = false;
  bool is_tuple = false;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::pair<ExprPtr, ExprPtr>> dict_items;
  std::vector<std::string> ops;
};

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;

// An assignment target: names (more than one unpacks), or a namespace attribute.
struct Target {
  std::vector<std::string> names;
  std::string attribute;  // set: `ns.attribute`, names[0] the namespace
};

struct Stmt {
  enum Kind {
    kText,      // text
    kPrint,     // expr
    kIf,        // branches (conditions/bodies), else_body
    kFor,       // target, expr (iterable), filter (optional), body, else_body
    kSet,       // target, expr
    kSetBlock,  // target, body, filters applied to the rendered body
    kMacro,     // name, params, body
    kBreak,
    kContinue,
    kScope,  // body rendered in place ({% generation %})
  };
  Kind kind;
  int line = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr filter;
  Target target;
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body;
  Body else_body;
  std::string name;
  std::vector<std::pair<std::string, ExprPtr>> params;  // default null = required
  std::vector<ExprPtr> block_filters;                   // kFilter exprs with args[0] null
};

}  // namespace spar::jinja
