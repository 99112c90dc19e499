// Python's str semantics on UTF-8 text, as chat templates use them: code points, whitespace
// (str.isspace), strip/split, case mapping, float repr and string repr. Internal to model/jinja.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace spar::jinja {

// Code points of valid UTF-8 (the interpreter only sees valid text); and back.
std::u32string Decode(std::string_view utf8);
std::string Encode(std::u32string_view cps);

bool IsPySpace(char32_t c);
// str.strip/lstrip/rstrip: with `chars` null, Python whitespace; else any code point of *chars.
std::string PyStrip(std::string_view s, const std::string* chars, bool left, bool right);
// str.split(sep, maxsplit): sep null = runs of whitespace, dropping empty ends.
std::vector<std::string> PySplit(std::string_view s, const std::string* sep, long maxsplit);
std::vector<std::string> PyRSplit(std::string_view s, const std::string& sep, long maxsplit);
// str.upper/lower/title/capitalize: exact for ASCII; other letters are refused by the caller
// (HasCasedNonAscii) rather than mapped differently from Python.
std::string AsciiUpper(std::string_view s);
std::string AsciiLower(std::string_view s);
std::string PyTitle(std::string_view s);
std::string PyCapitalize(std::string_view s);
bool HasNonAscii(std::string_view s);
// str.replace(old, new[, count]).
std::string PyReplace(std::string_view s, std::string_view from, std::string_view to, long count);

// repr(float) (the shortest text that reads back, "1.0", "1e-05", "1e+20", "inf", "nan").
std::string PyFloatRepr(double d);
// repr(str) (quotes and escapes as CPython chooses them).
std::string PyStringRepr(std::string_view s);
// json.dumps of a string with ensure_ascii False.
std::string JsonQuote(std::string_view s);

}  // namespace spar::jinja
