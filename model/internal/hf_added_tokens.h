// Finds a tokenizer.json's added tokens in text the way the `tokenizers` library's
// AddedVocabulary does: leftmost-longest, non-overlapping, honouring lstrip/rstrip/single_word,
// and skipping special tokens when they are not to be parsed. Private to model/; immutable after
// construction (thread-safe). The tokens must outlive the matcher.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "model/hf_tokenizer.h"

namespace spar::model::internal {

struct AddedSplit {
  size_t begin = 0;
  size_t end = 0;
  const HfAddedToken* token = nullptr;  // null: plain text between tokens
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // `patterns`: (text to find, token). Empty texts are ignored.
  explicit AddedTokenMatcher(std::vector<std::pair<std::string, const HfAddedToken*>> patterns);

  // Non-empty runs of `text`, in order, each plain text or one added token (whose run includes
  // the whitespace its lstrip/rstrip absorbed).
  std::vector<AddedSplit> Split(std::string_view text, bool parse_special) const;

 private:
  // Longest pattern starting at text[pos], or null.
  const std::pair<std::string, const HfAddedToken*>* LongestAt(std::string_view text,
                                                               size_t pos) const;

  std::vector<std::pair<std::string, const HfAddedToken*>> patterns_;
  std::vector<std::vector<size_t>> by_first_byte_ = std::vector<std::vector<size_t>>(256);
};

}  // namespace spar::model::internal
