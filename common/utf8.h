// UTF-8 validation for text that crosses a protocol boundary: proto3 `string` fields and JSON
// must be valid UTF-8, but a byte-level model can emit any byte sequence.
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace spar {

// Returns `s` with every ill-formed UTF-8 sequence replaced by U+FFFD (the WHATWG/Python
// errors="replace" policy: one replacement per maximal invalid subpart). Valid input is returned
// unchanged.
std::string SanitizeUtf8(absl::string_view s);

// The byte offset where `s` stops being well-formed UTF-8 (the same rules), or npos when it is.
size_t FirstInvalidUtf8(absl::string_view s);

// `s` for an error message or log line: printable ASCII is kept, every other byte (control
// characters, and every byte >= 0x80, valid UTF-8 or not) is written as "\xNN". No raw input
// byte reaches a message, whatever the input's encoding.
std::string EscapeBytes(absl::string_view s);

}  // namespace spar
