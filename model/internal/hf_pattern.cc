#include "model/internal/hf_pattern.h"

#include <unicode/regex.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/utext.h>

#include <algorithm>
#include <cctype>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"

namespace spar::model::internal {

size_t Utf8Len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c >> 5) == 0x6) return 2;
  if ((c >> 4) == 0xE) return 3;
  if ((c >> 3) == 0x1E) return 4;
  return 1;
}

uint32_t DecodeUtf8(std::string_view s, size_t pos, size_t* len) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  size_t n = std::min(Utf8Len(byte(pos)), s.size() - pos);
  *len = n;
  if (n == 1) return byte(pos) < 0x80 ? byte(pos) : 0xFFFD;
  uint32_t cp = byte(pos) & (0xFF >> (n + 1));
  for (size_t i = 1; i < n; ++i) {
    if ((byte(pos + i) & 0xC0) != 0x80) {
      *len = 1;
      return 0xFFFD;
    }
    cp = (cp << 6) | (byte(pos + i) & 0x3F);
  }
  return cp;
}

std::vector<std::string_view> SplitChars(std::string_view s) {
  std::vector<std::string_view> out;
  for (size_t i = 0; i < s.size();) {
    size_t n = std::min(Utf8Len(static_cast<unsigned char>(s[i])), s.size() - i);
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool IsWhitespace(uint32_t cp) { return u_isUWhiteSpace(static_cast<UChar32>(cp)); }

bool IsNumeric(uint32_t cp) {
  int8_t type = u_charType(static_cast<UChar32>(cp));
  return type == U_DECIMAL_DIGIT_NUMBER || type == U_LETTER_NUMBER || type == U_OTHER_NUMBER;
}

bool IsPunctuation(uint32_t cp) {
  if (cp < 0x80) return std::ispunct(static_cast<int>(cp)) != 0;
  return u_ispunct(static_cast<UChar32>(cp));
}

ByteLevelTables::ByteLevelTables() {
  std::array<bool, 256> direct{};
  for (int b = '!'; b <= '~'; ++b) direct[b] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    uint32_t cp = direct[b] ? static_cast<uint32_t>(b) : static_cast<uint32_t>(256 + n++);
    AppendUtf8(cp, &byte_to_char[b]);
    char_to_byte[byte_to_char[b]] = static_cast<uint8_t>(b);
  }
}

const ByteLevelTables& ByteLevel() {
  static const ByteLevelTables* tables = new ByteLevelTables();
  return *tables;
}

absl::StatusOr<SplitBehavior> ParseSplitBehavior(std::string_view name) {
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  return absl::InvalidArgumentError(
      absl::StrCat("tokenizer.json: unknown split behavior \"", AV(name), "\""));
}

namespace {

// Rewrites the class escapes whose meaning differs between the dialect and ICU. Sets written as
// nested [...] are valid both inside and outside a character class in ICU.
std::string ToIcuPattern(std::string_view pattern, RegexDialect dialect) {
  std::string out;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '\\' || i + 1 == pattern.size()) {
      out.push_back(pattern[i]);
      continue;
    }
    char c = pattern[++i];
    const bool onig = dialect == RegexDialect::kOniguruma;
    if (c == 's') {
      out += "\\p{White_Space}";  // ICU's \s omits U+000B and U+0085
    } else if (c == 'S') {
      out += "\\P{White_Space}";
    } else if (onig && c == 'w') {
      out += "[\\p{L}\\p{M}\\p{N}\\p{Pc}]";
    } else if (onig && c == 'W') {
      out += "[^\\p{L}\\p{M}\\p{N}\\p{Pc}]";
    } else if (onig && c == 'h') {
      out += "[0-9a-fA-F]";
    } else if (onig && c == 'H') {
      out += "[^0-9a-fA-F]";
    } else {
      out.push_back('\\');
      out.push_back(c);
    }
  }
  return out;
}

std::string EscapeRegex(std::string_view text) {
  std::string out;
  for (char c : text) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x80 && !std::isalnum(u)) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

// Oniguruma's find_iter over `text`: (begin, end) byte offsets of successive matches.
std::vector<std::pair<size_t, size_t>> FindRegex(const icu::RegexPattern& regex,
                                                 std::string_view text) {
  std::vector<std::pair<size_t, size_t>> out;
  UErrorCode status = U_ZERO_ERROR;
  UText* utext = utext_openUTF8(nullptr, text.data(), static_cast<int64_t>(text.size()), &status);
  std::unique_ptr<icu::RegexMatcher> matcher(regex.matcher(status));
  if (U_FAILURE(status)) {
    utext_close(utext);
    return out;
  }
  matcher->reset(utext);
  size_t search_from = 0;
  std::optional<size_t> last_match_end;
  while (search_from <= text.size() && matcher->find(static_cast<int64_t>(search_from), status) &&
         U_SUCCESS(status)) {
    size_t begin = static_cast<size_t>(matcher->start64(status));
    size_t end = static_cast<size_t>(matcher->end64(status));
    if (begin == end && last_match_end == end) {
      // No empty match right after the previous one: step one character.
      search_from += search_from < text.size()
                         ? std::min(Utf8Len(static_cast<unsigned char>(text[search_from])),
                                    text.size() - search_from)
                         : 1;
      continue;
    }
    search_from = end;
    last_match_end = end;
    out.emplace_back(begin, end);
  }
  utext_close(utext);
  return out;
}

}  // namespace

absl::StatusOr<Pattern> Pattern::Regex(std::string_view regex, RegexDialect dialect) {
  UErrorCode status = U_ZERO_ERROR;
  UParseError parse_error;
  icu::UnicodeString upattern = icu::UnicodeString::fromUTF8(ToIcuPattern(regex, dialect));
  std::shared_ptr<const icu::RegexPattern> compiled(
      icu::RegexPattern::compile(upattern, 0, parse_error, status));
  if (U_FAILURE(status)) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: cannot compile regex \"",
                                                   AV(regex), "\": ", u_errorName(status)));
  }
  Pattern p;
  p.regex_ = std::move(compiled);
  return p;
}

absl::StatusOr<Pattern> Pattern::Literal(std::string_view text) {
  return Regex(EscapeRegex(text), RegexDialect::kRustRegex);
}

Pattern Pattern::Chars(std::function<bool(uint32_t)> pred) {
  Pattern p;
  p.pred_ = std::move(pred);
  return p;
}

std::vector<Span> Pattern::FindMatches(std::string_view text) const {
  if (text.empty()) return {{0, 0, false}};
  std::vector<Span> out;
  size_t prev = 0;
  auto add_match = [&](size_t begin, size_t end) {
    if (prev != begin) out.push_back({prev, begin, false});
    out.push_back({begin, end, true});
    prev = end;
  };
  if (regex_) {
    for (auto [begin, end] : FindRegex(*regex_, text)) add_match(begin, end);
  } else {
    for (size_t i = 0, len = 0; i < text.size(); i += len) {
      uint32_t cp = DecodeUtf8(text, i, &len);
      if (pred_(cp)) add_match(i, i + len);
    }
  }
  if (prev != text.size()) out.push_back({prev, text.size(), false});
  return out;
}

namespace {

// tokenizers' MergedWithPrevious / MergedWithNext / Contiguous folds; `spans` in text order
// (reversed for MergedWithNext). Returns the kept (begin, end) runs in the same order.
std::vector<std::pair<size_t, size_t>> Fold(const std::vector<Span>& spans,
                                            SplitBehavior behavior) {
  std::vector<std::pair<size_t, size_t>> acc;
  bool previous_match = false;
  for (const Span& s : spans) {
    bool merge = false;
    if (behavior == SplitBehavior::kContiguous) {
      merge = s.match == previous_match;
    } else {
      merge = s.match && !previous_match;
    }
    if (merge && !acc.empty()) {
      if (behavior == SplitBehavior::kMergedWithNext) {
        acc.back().first = s.begin;
      } else {
        acc.back().second = s.end;
      }
    } else {
      acc.emplace_back(s.begin, s.end);
    }
    previous_match = s.match;
  }
  return acc;
}

}  // namespace

std::vector<std::pair<size_t, size_t>> SplitPieces(const Pattern& pattern, std::string_view text,
                                                   SplitBehavior behavior, bool invert) {
  std::vector<Span> spans = pattern.FindMatches(text);
  if (invert) {
    for (Span& s : spans) s.match = !s.match;
  }
  std::vector<std::pair<size_t, size_t>> pieces;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const Span& s : spans) pieces.emplace_back(s.begin, s.end);
      break;
    case SplitBehavior::kRemoved:
      for (const Span& s : spans) {
        if (!s.match) pieces.emplace_back(s.begin, s.end);
      }
      break;
    case SplitBehavior::kMergedWithPrevious:
    case SplitBehavior::kContiguous:
      pieces = Fold(spans, behavior);
      break;
    case SplitBehavior::kMergedWithNext:
      std::reverse(spans.begin(), spans.end());
      pieces = Fold(spans, behavior);
      std::reverse(pieces.begin(), pieces.end());
      break;
  }
  pieces.erase(std::remove_if(pieces.begin(), pieces.end(),
                              [](const auto& p) { return p.first == p.second; }),
               pieces.end());
  return pieces;
}

std::string ReplaceAll(const Pattern& pattern, std::string_view text, std::string_view content) {
  std::string out;
  for (const Span& s : pattern.FindMatches(text)) {
    if (s.match) {
      out.append(content);
    } else {
      out.append(text.substr(s.begin, s.end - s.begin));
    }
  }
  return out;
}

}  // namespace spar::model::internal
