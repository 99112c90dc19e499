// The one redaction for text that came from outside (a judge's or a generation engine's error
// bodies, unparsable answers, response headers): safe to put in a Status, a log line, a job's
// error, events.jsonl or a protobuf string. A peer may echo the request's Authorization header or
// key in its error body (issue #12 item 3, #24 item 10), and may send any bytes (a Latin-1 page,
// UTF-8 cut inside a character): the key is redacted, and the result is valid UTF-8 cut on a
// character boundary. Pure functions, thread-safe.
#pragma once

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace spar {

// `text` with every occurrence of `api_key` (when non-empty), every "Bearer <token>" and every
// "Authorization: <scheme> <value>" value replaced by "<redacted>". Case-insensitive on the
// words "bearer" and "authorization"; the key itself is matched exactly.
std::string RedactSecrets(absl::string_view text, absl::string_view api_key);

// `text` with every occurrence of `api_key` (when non-empty) replaced by "<redacted>" and
// nothing else: for a judge's answer, whose prose may well say "bearer".
std::string RedactKey(absl::string_view text, absl::string_view api_key);

// The longest prefix of `utf8` (assumed valid UTF-8) of at most `max_bytes` bytes that ends on a
// character boundary, plus "..." when anything was cut.
std::string TruncateUtf8(absl::string_view utf8, size_t max_bytes);

// SanitizeUtf8, then RedactSecrets, then TruncateUtf8: what every string a judge or an engine
// supplied goes through before it is stored, logged or returned.
std::string SafeOutsideText(absl::string_view raw, absl::string_view api_key,
                            size_t max_bytes = 200);

}  // namespace spar
