// Internal to oracle_client: makes text that came from the judge (error bodies, unparsable
// answers, response headers) safe to put in a Status, a log line, judgments.jsonl or a protobuf
// string. A judge may echo the request's Authorization header in its error body (issue #12 item
// 3), and may send any bytes (item 9): the key is redacted, and the result is valid UTF-8 cut on
// a character boundary. Pure functions, thread-safe.
#pragma once

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace spar::oracle::internal {

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

// SanitizeUtf8, then RedactSecrets, then TruncateUtf8: what every judge-supplied string goes
// through before it is stored, logged or returned.
std::string SafeJudgeText(absl::string_view raw, absl::string_view api_key, size_t max_bytes = 200);

}  // namespace spar::oracle::internal
