// A Hugging Face `tokenizer.json` BPE tokenizer in plain C++ (no Python, no torch), equal to the
// `tokenizers` library (tests/model/hf_tokenizer_parity.py checks it against the library): the
// byte-level family (GPT-2/Llama-3/Qwen, tiktoken conversions), the SentencePiece family
// (Llama-2/Mistral: Prepend+Replace or Metaspace, byte_fallback) and word-level setups.
// Normalizers: NFC/NFKC/NFD/NFKD, Lowercase, Strip, StripAccents, Replace, Prepend, ByteLevel,
// Sequence. Pre-tokenizers: Split (every behaviour, with and without invert), ByteLevel,
// Metaspace, Digits, Punctuation, Whitespace, WhitespaceSplit, BertPreTokenizer,
// CharDelimiterSplit, Sequence (model/internal/hf_normalizer.h, hf_pre_tokenizer.h).
// Added tokens are found first (leftmost, longest; those marked normalized in the normalized
// text), the rest is normalized, pre-tokenized and BPE-merged by merge rank, as the library does.
// `tokenizer_config.json` supplies bos/eos/pad/unk and add_bos_token/add_eos_token (its
// chat_template is read by ChatTemplate::FromCheckpoint).
// Used by model/policy.cc, the sampler, and `spar tokenize`. Immutable after Load: thread-safe.
// Unicode normalization, character classes and the regex engine are ICU's (hidden in the .cc).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace spar::model {

struct EncodeOptions {
  // Adds the post-processor's specials (tokenizer.json TemplateProcessing, else add_bos_token /
  // add_eos_token from tokenizer_config.json), as transformers' add_special_tokens=True.
  bool add_special_tokens = false;
  // When false, added tokens marked "special" in the text are encoded as plain text
  // (transformers' split_special_tokens=True); non-special added tokens are still matched.
  bool parse_special_tokens = true;
};

struct DecodeOptions {
  bool skip_special_tokens = false;  // drop ids of added tokens marked "special"
};

struct HfAddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool lstrip = false;       // absorbs whitespace on its left when matched
  bool rstrip = false;       // absorbs whitespace on its right when matched
  bool single_word = false;  // matched only where not inside a word
  bool normalized = false;   // matched in the normalized text (else in the raw text)
};

class HfTokenizer {
 public:
  struct Impl;
  ~HfTokenizer();
  HfTokenizer(const HfTokenizer&) = delete;
  HfTokenizer& operator=(const HfTokenizer&) = delete;

  // Reads <dir>/tokenizer.json and, when present, <dir>/tokenizer_config.json. NotFound when
  // tokenizer.json is missing; InvalidArgument naming an unsupported model/normalizer/
  // pre-tokenizer/decoder type or a malformed field.
  static absl::StatusOr<std::unique_ptr<HfTokenizer>> Load(const std::string& dir);
  // The same from file contents; `tokenizer_config_json` may be empty.
  static absl::StatusOr<std::unique_ptr<HfTokenizer>> FromJson(
      std::string_view tokenizer_json, std::string_view tokenizer_config_json);

  // Token ids of `text` (UTF-8). InvalidArgument when a character has no token and the model has
  // neither byte_fallback nor an unk token.
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              const EncodeOptions& options = {}) const;
  // Text of `ids` through the tokenizer.json decoder. InvalidArgument for an id out of range.
  absl::StatusOr<std::string> Decode(const std::vector<int32_t>& ids,
                                     const DecodeOptions& options = {}) const;

  // One past the largest id (model vocabulary and added tokens).
  int32_t vocab_size() const;
  std::optional<int32_t> TokenToId(std::string_view token) const;
  // The token string (byte-level tokens in their mapped form, e.g. "Ġthe"); nullopt when unused.
  std::optional<std::string> IdToToken(int32_t id) const;
  bool IsSpecial(int32_t id) const;
  const std::vector<HfAddedToken>& added_tokens() const;

  // From tokenizer_config.json (nullopt when unset or not a known token).
  std::optional<int32_t> bos_token_id() const;
  std::optional<int32_t> eos_token_id() const;
  std::optional<int32_t> pad_token_id() const;
  std::optional<std::string> bos_token() const;
  std::optional<std::string> eos_token() const;
  bool add_bos_token() const;

 private:
  explicit HfTokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace spar::model
