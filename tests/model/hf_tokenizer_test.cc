#include "model/hf_tokenizer.h"

#include <string>
#include <vector>

#include "common/file_util.h"
#include "common/status_macros.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"

namespace spar::model {
namespace {

using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;
using ::testing::ElementsAre;

// ctest runs from the source root (tests/CMakeLists.txt: WORKING_DIRECTORY).
const char kTokenizers[] = "tests/data/tokenizers";

std::unique_ptr<HfTokenizer> LoadOrDie(const std::string& name) {
  auto tok = HfTokenizer::Load(JoinPath(kTokenizers, name));
  EXPECT_THAT(tok, IsOk());
  return tok.ok() ? *std::move(tok) : nullptr;
}

class GoldenTest : public ::testing::TestWithParam<std::string> {};

// Every line of golden.jsonl: encode(text) == ids (no special tokens added, added tokens matched
// in the text), decode(ids) == decoded (the NFC form for the byte-level tokenizer), and
// decode(encode(x)) == x whenever the text is already normalized.
TEST_P(GoldenTest, EncodesAndDecodesEveryLine) {
  auto tok = LoadOrDie(GetParam());
  ASSERT_NE(tok, nullptr);
  auto rows = ReadJsonl(JoinPath(JoinPath(kTokenizers, GetParam()), "golden.jsonl"));
  ASSERT_THAT(rows, IsOk());
  ASSERT_GE(rows->size(), 250u);
  int encode_ok = 0, decode_ok = 0;
  for (size_t i = 0; i < rows->size(); ++i) {
    const nlohmann::json& row = (*rows)[i];
    std::string text = row["text"].get<std::string>();
    std::vector<int32_t> want = row["ids"].get<std::vector<int32_t>>();
    auto ids = tok->Encode(text);
    ASSERT_THAT(ids, IsOk());
    EXPECT_EQ(*ids, want) << "line " << i + 1 << ": " << row["text"].dump();
    encode_ok += *ids == want;
    auto decoded = tok->Decode(*ids);
    ASSERT_THAT(decoded, IsOk());
    EXPECT_EQ(*decoded, row["decoded"].get<std::string>()) << "line " << i + 1;
    decode_ok += *decoded == row["decoded"].get<std::string>();
  }
  std::printf("[golden %s] encode %d/%zu, decode %d/%zu\n", GetParam().c_str(), encode_ok,
              rows->size(), decode_ok, rows->size());
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, GoldenTest, ::testing::Values("qwen3", "spm-bpe-32k"));

TEST(HfTokenizerTest, RoundTripsNormalizedText) {
  for (const char* name : {"qwen3", "spm-bpe-32k"}) {
    auto tok = LoadOrDie(name);
    ASSERT_NE(tok, nullptr);
    for (const std::string text : {"Hello, world!", "  two  spaces ", "naïve café 中文 🤖",
                                   "<|im_start|>user\nhi<|im_end|>", "line\nbreak\r\n\ttab", ""}) {
      auto ids = tok->Encode(text);
      ASSERT_TRUE(ids.ok());
      auto back = tok->Decode(*ids);
      ASSERT_TRUE(back.ok());
      EXPECT_EQ(*back, text) << name;
    }
  }
}

TEST(HfTokenizerTest, QwenSpecialTokensAndConfig) {
  auto tok = LoadOrDie("qwen3");
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->eos_token_id(), 151645);  // <|im_end|>
  EXPECT_EQ(tok->pad_token_id(), 151643);  // <|endoftext|>
  EXPECT_EQ(tok->bos_token_id(), std::nullopt);
  EXPECT_FALSE(tok->add_bos_token());
  EXPECT_EQ(tok->vocab_size(), 151669);
  EXPECT_TRUE(tok->IsSpecial(151644));
  EXPECT_FALSE(tok->IsSpecial(151667));  // <think> is added but not special

  // Special tokens matched in text, or encoded as text when parsing them is off.
  auto ids = tok->Encode("<|im_start|>hi");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->front(), 151644);
  EncodeOptions as_text;
  as_text.parse_special_tokens = false;
  auto text_ids = tok->Encode("<|im_start|>hi<think>", as_text);
  ASSERT_TRUE(text_ids.ok());
  EXPECT_NE(text_ids->front(), 151644);
  EXPECT_EQ(text_ids->back(), 151667);  // non-special added tokens are still matched

  DecodeOptions skip;
  skip.skip_special_tokens = true;
  auto decoded = tok->Decode({151644, 6023, 151645, 151667}, skip);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, "hi<think>");
  // add_special_tokens adds nothing for Qwen (ByteLevel post-processor).
  EncodeOptions with_specials;
  with_specials.add_special_tokens = true;
  EXPECT_EQ(*tok->Encode("A", with_specials), std::vector<int32_t>{32});
}

TEST(HfTokenizerTest, SentencePieceBosAndByteFallback) {
  auto tok = LoadOrDie("spm-bpe-32k");
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->bos_token_id(), 1);
  EXPECT_EQ(tok->eos_token_id(), 2);
  EXPECT_TRUE(tok->add_bos_token());
  EncodeOptions with_specials;
  with_specials.add_special_tokens = true;
  auto ids = tok->Encode("A", with_specials);
  ASSERT_TRUE(ids.ok());
  EXPECT_THAT(*ids, ElementsAre(1, 330));
  // 🤖 is not in the vocabulary: its four UTF-8 bytes as <0xXX> tokens (id = byte + 3).
  auto robot = tok->Encode("🤖");
  ASSERT_TRUE(robot.ok());
  EXPECT_THAT(*robot, ElementsAre(28705, 0xF0 + 3, 0x9F + 3, 0xA4 + 3, 0x96 + 3));
  // A lone continuation byte decodes to U+FFFD.
  EXPECT_EQ(*tok->Decode({0x9F + 3}), "\xEF\xBF\xBD");
}

TEST(HfTokenizerTest, ErrorsAreClear) {
  EXPECT_THAT(HfTokenizer::Load("/nonexistent"), StatusIs(absl::StatusCode::kNotFound));
  auto bad = HfTokenizer::FromJson(R"({"model": {"type": "Unigram", "vocab": []}})", "");
  EXPECT_THAT(bad, StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("Unigram")));
  auto tok = LoadOrDie("qwen3");
  ASSERT_NE(tok, nullptr);
  EXPECT_THAT(tok->Decode({-1}), StatusIs(absl::StatusCode::kInvalidArgument));
}

// A hand-written byte-level tokenizer: merges apply by rank, not left to right.
TEST(HfTokenizerTest, MergesByRank) {
  const char* json = R"({
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "c": 2, "bc": 3, "ab": 4, "abc": 5},
              "merges": ["b c", "a bc"]},
    "normalizer": null, "pre_tokenizer": null, "decoder": null})";
  auto tok = HfTokenizer::FromJson(json, "");
  ASSERT_THAT(tok, IsOk());
  EXPECT_THAT(*(*tok)->Encode("abc"), ElementsAre(5));
  EXPECT_THAT(*(*tok)->Encode("abcb"), ElementsAre(5, 1));
}

// "a", "b", "ab" with the merge "a b" and the pre-tokenizer `pre`: the ids show where the pieces
// split (an "ab" inside one piece merges, one split across pieces does not).
absl::StatusOr<std::vector<int32_t>> EncodeWithPreTokenizer(const std::string& pre,
                                                            const std::string& text) {
  std::string json = R"({"model": {"type": "BPE", "merges": ["a b"], "unk_token": "?",
                         "vocab": {"a": 0, "b": 1, "ab": 2, " ": 3, "!": 4, "?": 5}},
                         "pre_tokenizer": )" +
                     pre + "}";
  SPAR_ASSIGN_OR_RETURN(auto tok, HfTokenizer::FromJson(json, ""));
  return tok->Encode(text);
}

std::string Split(const std::string& pattern, const std::string& behavior, bool invert) {
  return R"({"type": "Split", "pattern": )" + pattern + R"(, "behavior": ")" + behavior +
         R"(", "invert": )" + (invert ? "true" : "false") + "}";
}

// The library's behaviours (tokenizers' NormalizedString::split); the parity test checks them
// against the library itself on many more inputs.
TEST(HfTokenizerTest, SplitBehaviors) {
  const std::string b = R"({"String": "b"})";
  EXPECT_THAT(*EncodeWithPreTokenizer(Split(b, "Isolated", false), "abab"),
              ElementsAre(0, 1, 0, 1));
  EXPECT_THAT(*EncodeWithPreTokenizer(Split(b, "Removed", false), "abab"), ElementsAre(0, 0));
  EXPECT_THAT(*EncodeWithPreTokenizer(Split(b, "Removed", true), "abab"), ElementsAre(1, 1));
  EXPECT_THAT(*EncodeWithPreTokenizer(Split(b, "MergedWithPrevious", false), "abab"),
              ElementsAre(2, 2));
  EXPECT_THAT(*EncodeWithPreTokenizer(Split(b, "MergedWithNext", false), "abab"),
              ElementsAre(0, 1, 0, 1));
  EXPECT_THAT(*EncodeWithPreTokenizer(Split(b, "MergedWithNext", true), "abab"), ElementsAre(2, 2));
  EXPECT_THAT(*EncodeWithPreTokenizer(Split(b, "Contiguous", false), "abbab"),
              ElementsAre(0, 1, 1, 0, 1));
  EXPECT_THAT(EncodeWithPreTokenizer(Split(b, "Sideways", false), "ab"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// A tiktoken conversion (Split, Removed, invert: true) keeps the regex matches and drops the
// text between them.
TEST(HfTokenizerTest, TiktokenStyleSplitKeepsMatches) {
  auto ids = EncodeWithPreTokenizer(Split(R"({"Regex": " ?a+b?"})", "Removed", true), "ab ab!!ab");
  ASSERT_THAT(ids, IsOk());
  EXPECT_THAT(*ids, ElementsAre(2, 3, 2, 2));
}

TEST(HfTokenizerTest, OtherPreTokenizers) {
  EXPECT_THAT(
      *EncodeWithPreTokenizer(R"({"type": "Punctuation", "behavior": "Contiguous"})", "ab!!ab"),
      ElementsAre(2, 4, 4, 2));
  EXPECT_THAT(*EncodeWithPreTokenizer(R"({"type": "WhitespaceSplit"})", "ab  ab"),
              ElementsAre(2, 2));
  EXPECT_THAT(*EncodeWithPreTokenizer(R"({"type": "Whitespace"})", "ab !ab"), ElementsAre(2, 4, 2));
  EXPECT_THAT(*EncodeWithPreTokenizer(R"({"type": "Digits", "individual_digits": true})", "ab"),
              ElementsAre(2));
}

}  // namespace
}  // namespace spar::model
