#include "model/internal/hf_added_tokens.h"

#include <unicode/uchar.h>

#include <algorithm>

#include "model/internal/hf_pattern.h"

namespace spar::model::internal {
namespace {

// The code point ending at s[end) (s non-empty before `end`) and where it starts.
uint32_t LastChar(std::string_view s, size_t end, size_t* start) {
  size_t i = end - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  *start = i;
  size_t len = 0;
  return DecodeUtf8(s, i, &len);
}

// tokenizers' word test for single_word tokens: the regex crate's \w (UTS #18: Alphabetic,
// Mark, Decimal_Number, Connector_Punctuation, Join_Control).
bool IsWordChar(uint32_t cp) {
  UChar32 c = static_cast<UChar32>(cp);
  return u_isUAlphabetic(c) || (U_GET_GC_MASK(c) & (U_GC_M_MASK | U_GC_ND_MASK | U_GC_PC_MASK)) ||
         u_hasBinaryProperty(c, UCHAR_JOIN_CONTROL);
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(
    std::vector<std::pair<std::string, const HfAddedToken*>> patterns) {
  for (auto& p : patterns) {
    if (p.first.empty()) continue;
    by_first_byte_[static_cast<unsigned char>(p.first[0])].push_back(patterns_.size());
    patterns_.push_back(std::move(p));
  }
}

const std::pair<std::string, const HfAddedToken*>* AddedTokenMatcher::LongestAt(
    std::string_view text, size_t pos) const {
  const std::pair<std::string, const HfAddedToken*>* best = nullptr;
  for (size_t i : by_first_byte_[static_cast<unsigned char>(text[pos])]) {
    const auto& p = patterns_[i];
    if (text.compare(pos, p.first.size(), p.first) == 0 &&
        (best == nullptr || p.first.size() > best->first.size())) {
      best = &p;
    }
  }
  return best;
}

std::vector<AddedSplit> AddedTokenMatcher::Split(std::string_view text, bool parse_special) const {
  std::vector<AddedSplit> out;
  size_t start_offset = 0;
  for (size_t pos = 0; pos < text.size();) {
    const auto* found = patterns_.empty() ? nullptr : LongestAt(text, pos);
    if (found == nullptr) {
      ++pos;
      continue;
    }
    const HfAddedToken& token = *found->second;
    size_t start = pos, stop = pos + found->first.size();
    pos = stop;  // the search resumes after the match, used or not
    if (token.special && !parse_special) continue;
    if (token.single_word) {
      size_t unused = 0, len = 0;
      bool word_before = start > 0 && IsWordChar(LastChar(text, start, &unused));
      bool word_after = stop < text.size() && IsWordChar(DecodeUtf8(text, stop, &len));
      if (word_before || word_after) continue;
    }
    if (token.lstrip) {
      size_t new_start = start, char_start = 0;
      while (new_start > 0 && IsWhitespace(LastChar(text, new_start, &char_start))) {
        new_start = char_start;
      }
      start = std::max(new_start, start_offset);
    }
    if (token.rstrip) {
      for (size_t len = 0; stop < text.size() && IsWhitespace(DecodeUtf8(text, stop, &len));) {
        stop += len;
      }
    }
    if (start_offset < start) out.push_back({start_offset, start, nullptr});
    out.push_back({start, stop, &token});
    start_offset = stop;
  }
  if (start_offset < text.size()) out.push_back({start_offset, text.size(), nullptr});
  return out;
}

}  // namespace spar::model::internal
