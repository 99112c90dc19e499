// Jinja2's built-in filters and tests, transformers' tojson, and the Python methods of str and
// dict that chat templates call, with Python's semantics. Internal to model/jinja.
#pragma once

#include <string>

#include "model/jinja/value.h"

namespace spar::jinja {

// Whether `name` is a filter / test this interpreter implements. KnownUnsupported: a Jinja2
// built-in it does not (refused by name rather than as unknown).
bool IsFilter(const std::string& name);
bool IsTest(const std::string& name);
bool IsKnownUnsupportedFilter(const std::string& name);

Value ApplyFilter(const std::string& name, const Value& input, const CallArgs& args);
bool ApplyTest(const std::string& name, const Value& input, const CallArgs& args);

// obj.name (Jinja's getattr: the attribute or method first, then the item) and obj[key]
// (the item first). Missing: undefined; on an undefined object: Error.
Value GetAttr(const Value& obj, const std::string& name);
Value GetItem(const Value& obj, const Value& key);
// obj[start:stop:step] on a list or str, Python's rules.
Value GetSlice(const Value& obj, const Value& start, const Value& stop, const Value& step);

// A bound method of str (str_methods.cc); undefined for one str does not have.
Value StringMethod(const std::string& s, const std::string& name);

// Python's iter(x) as a list: a str's characters, a dict's keys; undefined: empty.
List Iterate(const Value& v);

// Python's operators as templates use them: + - * / // % ** and `in`.
Value BinaryOp(const std::string& op, const Value& a, const Value& b);
bool Contains(const Value& container, const Value& item);

}  // namespace spar::jinja
