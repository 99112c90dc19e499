// tokenizer.json's "pre_tokenizer": Split (every behaviour, with and without invert), ByteLevel
// (add_prefix_space, use_regex), Metaspace (prepend_scheme always/first/never, split), Digits,
// Punctuation, Whitespace, WhitespaceSplit, BertPreTokenizer, CharDelimiterSplit and Sequence,
// as the `tokenizers` library applies them. Private to model/; built once by HfTokenizer, then
// immutable (thread-safe).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "model/internal/hf_pattern.h"
#include "nlohmann/json.hpp"

namespace spar::model::internal {

class HfPreTokenizer {
 public:
  // Appends the steps described by `j` (null: none). InvalidArgument naming an unsupported type
  // or a malformed field.
  absl::Status Parse(const nlohmann::json& j);
  // The words of one normalized segment, in order. `at_origin`: the segment starts at offset 0
  // of the input (Metaspace's prepend_scheme "first" applies to that piece only).
  std::vector<std::string> PreTokenize(std::string segment, bool at_origin) const;

 private:
  enum class Kind { kSplit, kByteLevel, kMetaspace };
  struct Step {
    Kind kind = Kind::kSplit;
    std::optional<Pattern> pattern;  // kSplit; kByteLevel with use_regex
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool invert = false;
    bool add_prefix_space = false;          // kByteLevel
    std::string replacement;                // kMetaspace
    std::string prepend_scheme = "always";  // kMetaspace: always | first | never
    bool split = true;                      // kMetaspace
  };
  struct Piece {
    std::string text;
    bool at_origin = false;
  };
  static absl::StatusOr<Step> ParseMetaspace(const nlohmann::json& j);
  absl::Status AddSplit(absl::StatusOr<Pattern> pattern, SplitBehavior behavior, bool invert);
  void Apply(const Step& step, Piece piece, std::vector<Piece>* out) const;

  std::vector<Step> steps_;
};

}  // namespace spar::model::internal
