// Text primitives shared by the tokenizer.json pipeline (model/hf_tokenizer.cc and the
// normalizers and pre-tokenizers under model/internal/): UTF-8 stepping, GPT-2's byte-to-char
// table, and the `tokenizers` library's Pattern (regex, literal or character class) with its
// split behaviours. Regexes run on ICU with Oniguruma's semantics (the Rust library's engine):
// \s is Unicode White_Space, \w is Letter|Mark|Number|Connector_Punctuation, and an empty match
// right after the previous match is skipped. Private to model/. Immutable after creation:
// thread-safe.
#pragma once

#include <unicode/uversion.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

U_NAMESPACE_BEGIN
class RegexPattern;
U_NAMESPACE_END

namespace spar::model::internal {

// Debian's Abseil has its own string_view type; heterogeneous lookup and StrCat want it.
inline absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Byte length of the UTF-8 sequence starting with `c` (1 for an invalid lead byte).
size_t Utf8Len(unsigned char c);
// The code point at s[pos] and its byte length (U+FFFD, 1 for an invalid sequence).
uint32_t DecodeUtf8(std::string_view s, size_t pos, size_t* len);
std::vector<std::string_view> SplitChars(std::string_view s);
void AppendUtf8(uint32_t cp, std::string* out);

// Character classes as Rust's char methods define them.
bool IsWhitespace(uint32_t cp);   // char::is_whitespace (White_Space)
bool IsNumeric(uint32_t cp);      // char::is_numeric (Nd, Nl, No)
bool IsPunctuation(uint32_t cp);  // tokenizers' is_punc: ASCII punctuation or Unicode P*

// GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 onwards.
struct ByteLevelTables {
  std::array<std::string, 256> byte_to_char;
  absl::flat_hash_map<std::string, uint8_t> char_to_byte;
  ByteLevelTables();
};
const ByteLevelTables& ByteLevel();

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
// "Removed", "Isolated", ... as tokenizer.json spells them; InvalidArgument otherwise.
absl::StatusOr<SplitBehavior> ParseSplitBehavior(std::string_view name);

// A run of the input [begin, end) and whether the pattern matched it.
struct Span {
  size_t begin = 0;
  size_t end = 0;
  bool match = false;
};

// Regex dialects: the Rust library compiles Split/Replace patterns with Oniguruma and its built-in
// Whitespace pre-tokenizer with the `regex` crate (UTS #18 classes, which are ICU's own).
enum class RegexDialect { kOniguruma, kRustRegex };

class Pattern {
 public:
  // InvalidArgument naming the pattern when ICU cannot compile it.
  static absl::StatusOr<Pattern> Regex(std::string_view regex,
                                       RegexDialect dialect = RegexDialect::kOniguruma);
  // A literal string (tokenizer.json's {"String": ...}), compiled as an escaped regex as the Rust
  // library does.
  static absl::StatusOr<Pattern> Literal(std::string_view text);
  // Each character for which `pred` holds is one match.
  static Pattern Chars(std::function<bool(uint32_t)> pred);

  // Matches and the gaps between them, in order, covering `text` (tokenizers' find_matches;
  // {{0, 0, false}} for empty text).
  std::vector<Span> FindMatches(std::string_view text) const;

 private:
  std::shared_ptr<const icu::RegexPattern> regex_;
  std::function<bool(uint32_t)> pred_;
};

// The non-empty pieces [begin, end) of `text` that `pattern` with `behavior` keeps, as
// tokenizers' NormalizedString::split (with `invert`, matches and gaps swap roles).
std::vector<std::pair<size_t, size_t>> SplitPieces(const Pattern& pattern, std::string_view text,
                                                   SplitBehavior behavior, bool invert);

// `text` with every match of `pattern` replaced by `content` (literally; no group references).
std::string ReplaceAll(const Pattern& pattern, std::string_view text, std::string_view content);

}  // namespace spar::model::internal
