// tokenizer.json's "normalizer": NFC/NFKC/NFD/NFKD (ICU), Lowercase, Strip, StripAccents,
// Replace (string or regex), Prepend, ByteLevel and Sequence, applied as the `tokenizers`
// library applies them. Private to model/; built once by HfTokenizer, then immutable
// (thread-safe).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "model/internal/hf_pattern.h"
#include "nlohmann/json.hpp"

namespace spar::model::internal {

class HfNormalizer {
 public:
  // Appends the steps described by `j` (null: none). InvalidArgument naming an unsupported type.
  absl::Status Parse(const nlohmann::json& j);
  // `text` (UTF-8) after every step.
  std::string Normalize(std::string text) const;
  bool empty() const { return steps_.empty(); }

 private:
  enum class Kind {
    kNfc,
    kNfkc,
    kNfd,
    kNfkd,
    kLowercase,
    kStrip,
    kStripAccents,
    kReplace,
    kPrepend,
    kByteLevel
  };
  struct Step {
    Kind kind;
    std::string content;               // kReplace: replacement; kPrepend: prefix
    std::optional<Pattern> pattern;    // kReplace
    bool left = false, right = false;  // kStrip
  };
  std::vector<Step> steps_;
};

}  // namespace spar::model::internal
