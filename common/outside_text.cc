#include "common/outside_text.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "common/utf8.h"

namespace spar {
namespace {

constexpr char kRedacted[] = "<redacted>";

bool IsTokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         absl::string_view("-._~+/=:").find(c) != absl::string_view::npos;
}

bool StartsWithWordAt(absl::string_view s, size_t i, absl::string_view word) {
  return s.size() - i >= word.size() && absl::EqualsIgnoreCase(s.substr(i, word.size()), word);
}

// Appends text[*i..) up to the end of the credential that follows a "bearer"/"authorization"
// keyword at *i, with the credential replaced; false (nothing consumed) when there is none.
bool RedactAfterKeyword(absl::string_view text, size_t* i, std::string* out) {
  size_t j = *i;
  bool header = false;  // "authorization" followed by ':' or '=' (a header or JSON field)
  if (StartsWithWordAt(text, j, "authorization")) {
    j += 13;
    while (j < text.size() &&
           absl::string_view("\"': =\\").find(text[j]) != absl::string_view::npos) {
      header = header || text[j] == ':' || text[j] == '=';
      ++j;
    }
  }
  bool scheme_seen = false;
  for (absl::string_view scheme : {"bearer", "basic", "token"}) {
    if (StartsWithWordAt(text, j, scheme) && j + scheme.size() < text.size() &&
        text[j + scheme.size()] == ' ') {
      j += scheme.size();
      while (j < text.size() && text[j] == ' ') ++j;
      scheme_seen = true;
      break;
    }
  }
  size_t end = j;
  while (end < text.size() && IsTokenChar(text[end])) ++end;
  if (end == j || !(header || scheme_seen)) return false;
  out->append(text.data() + *i, j - *i);
  out->append(kRedacted);
  *i = end;
  return true;
}

}  // namespace

std::string RedactKey(absl::string_view text, absl::string_view api_key) {
  return api_key.empty() ? std::string(text) : absl::StrReplaceAll(text, {{api_key, kRedacted}});
}

std::string RedactSecrets(absl::string_view text, absl::string_view api_key) {
  std::string keyless = RedactKey(text, api_key);
  std::string out;
  out.reserve(keyless.size());
  absl::string_view s = keyless;
  for (size_t i = 0; i < s.size();) {
    const bool word_start = i == 0 || !absl::ascii_isalnum(static_cast<unsigned char>(s[i - 1]));
    if (word_start &&
        (StartsWithWordAt(s, i, "bearer") || StartsWithWordAt(s, i, "authorization")) &&
        RedactAfterKeyword(s, &i, &out)) {
      continue;
    }
    out += s[i++];
  }
  return out;
}

std::string TruncateUtf8(absl::string_view utf8, size_t max_bytes) {
  if (utf8.size() <= max_bytes) return std::string(utf8);
  size_t cut = max_bytes;
  // Back up over continuation bytes (10xxxxxx) to the start of the character that does not fit.
  while (cut > 0 && (static_cast<unsigned char>(utf8[cut]) & 0xC0) == 0x80) --cut;
  return std::string(utf8.substr(0, cut)) + "...";
}

std::string SafeOutsideText(absl::string_view raw, absl::string_view api_key, size_t max_bytes) {
  return TruncateUtf8(RedactSecrets(SanitizeUtf8(raw), api_key), max_bytes);
}

}  // namespace spar
