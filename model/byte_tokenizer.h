// Byte-level tokenizer of the built-in model: ids 0..255 are the bytes, then BOS, EOS, PAD.
// Stateless and thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace spar::model {

class ByteTokenizer {
 public:
  static constexpr int32_t kBos = 256;
  static constexpr int32_t kEos = 257;
  static constexpr int32_t kPad = 258;
  static constexpr int32_t kVocabSize = 259;

  // The bytes of `text` as ids (no specials added).
  static std::vector<int32_t> Encode(const std::string& text);
  // Bytes of ids < 256, in order; special and out-of-range ids are skipped.
  static std::string Decode(const std::vector<int32_t>& ids);
};

}  // namespace spar::model
