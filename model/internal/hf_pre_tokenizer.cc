#include "model/internal/hf_pre_tokenizer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/internal/hf_json.h"

namespace spar::model::internal {
namespace {

using nlohmann::json;

// GPT-2's pattern, used by ByteLevel with use_regex (the Rust library's constant).
const char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// A pattern matching the one character `s` holds; nullopt when `s` is not one character.
std::optional<Pattern> OneCharPattern(const std::string& s) {
  size_t len = 0;
  if (s.empty()) return std::nullopt;
  uint32_t cp = DecodeUtf8(s, 0, &len);
  if (len != s.size()) return std::nullopt;
  return Pattern::Chars([cp](uint32_t c) { return c == cp; });
}

}  // namespace

absl::Status HfPreTokenizer::AddSplit(absl::StatusOr<Pattern> pattern, SplitBehavior behavior,
                                      bool invert) {
  SPAR_RETURN_IF_ERROR(pattern.status());
  Step step;
  step.pattern = *std::move(pattern);
  step.behavior = behavior;
  step.invert = invert;
  steps_.push_back(std::move(step));
  return absl::OkStatus();
}

absl::StatusOr<HfPreTokenizer::Step> HfPreTokenizer::ParseMetaspace(const json& j) {
  Step step;
  step.kind = Kind::kMetaspace;
  step.replacement = JsonString(j, "replacement", "\u2581");
  step.split = JsonBool(j, "split", true);
  if (j.contains("prepend_scheme")) {
    step.prepend_scheme = JsonString(j, "prepend_scheme", "always");
  } else {  // before tokenizers 0.15
    step.prepend_scheme = JsonBool(j, "add_prefix_space", true) ? "always" : "never";
  }
  if (step.prepend_scheme != "always" && step.prepend_scheme != "first" &&
      step.prepend_scheme != "never") {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: Metaspace.prepend_scheme \"",
                                                   step.prepend_scheme, "\" is unknown"));
  }
  step.pattern = OneCharPattern(step.replacement);
  if (!step.pattern) {
    return absl::InvalidArgumentError(
        "tokenizer.json: Metaspace.replacement must be one character");
  }
  return step;
}

absl::Status HfPreTokenizer::Parse(const json& j) {
  if (j.is_null()) return absl::OkStatus();
  const std::string type = JsonString(j, "type");
  if (type == "Sequence") {
    for (const json& p : j.value("pretokenizers", json::array())) SPAR_RETURN_IF_ERROR(Parse(p));
    return absl::OkStatus();
  }
  if (type == "Split") {
    SPAR_ASSIGN_OR_RETURN(SplitBehavior behavior, ParseSplitBehavior(JsonString(j, "behavior")));
    const json& pattern = j.value("pattern", json::object());
    if (!pattern.contains("Regex") && !pattern.contains("String")) {
      return absl::InvalidArgumentError("tokenizer.json: Split pre-tokenizer without a pattern");
    }
    return AddSplit(pattern.contains("Regex") ? Pattern::Regex(JsonString(pattern, "Regex"))
                                              : Pattern::Literal(JsonString(pattern, "String")),
                    behavior, JsonBool(j, "invert", false));
  }
  if (type == "Whitespace") {
    return AddSplit(Pattern::Regex(R"(\w+|[^\w\s]+)", RegexDialect::kRustRegex),
                    SplitBehavior::kRemoved, /*invert=*/true);
  }
  if (type == "WhitespaceSplit") {
    return AddSplit(Pattern::Chars(IsWhitespace), SplitBehavior::kRemoved, false);
  }
  if (type == "BertPreTokenizer") {
    SPAR_RETURN_IF_ERROR(AddSplit(Pattern::Chars(IsWhitespace), SplitBehavior::kRemoved, false));
    return AddSplit(Pattern::Chars(IsPunctuation), SplitBehavior::kIsolated, false);
  }
  if (type == "Punctuation") {
    SPAR_ASSIGN_OR_RETURN(SplitBehavior behavior,
                          ParseSplitBehavior(JsonString(j, "behavior", "Isolated")));
    return AddSplit(Pattern::Chars(IsPunctuation), behavior, false);
  }
  if (type == "Digits") {
    return AddSplit(Pattern::Chars(IsNumeric),
                    JsonBool(j, "individual_digits", false) ? SplitBehavior::kIsolated
                                                            : SplitBehavior::kContiguous,
                    false);
  }
  if (type == "CharDelimiterSplit") {
    std::optional<Pattern> delimiter = OneCharPattern(JsonString(j, "delimiter"));
    if (!delimiter) {
      return absl::InvalidArgumentError(
          "tokenizer.json: CharDelimiterSplit.delimiter must be one character");
    }
    return AddSplit(*std::move(delimiter), SplitBehavior::kRemoved, false);
  }
  Step step;
  if (type == "ByteLevel") {
    step.kind = Kind::kByteLevel;
    step.add_prefix_space = JsonBool(j, "add_prefix_space", true);
    if (JsonBool(j, "use_regex", true)) {
      SPAR_ASSIGN_OR_RETURN(step.pattern, Pattern::Regex(kGpt2Pattern));
    }
  } else if (type == "Metaspace") {
    SPAR_ASSIGN_OR_RETURN(step, ParseMetaspace(j));
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer.json: unsupported pre_tokenizer type \"", type, "\""));
  }
  steps_.push_back(std::move(step));
  return absl::OkStatus();
}

void HfPreTokenizer::Apply(const Step& step, Piece piece, std::vector<Piece>* out) const {
  auto emit_split = [&](const std::string& text, SplitBehavior behavior, bool invert) {
    for (auto [begin, end] : SplitPieces(*step.pattern, text, behavior, invert)) {
      out->push_back({text.substr(begin, end - begin), piece.at_origin && begin == 0});
    }
  };
  switch (step.kind) {
    case Kind::kSplit:
      emit_split(piece.text, step.behavior, step.invert);
      return;
    case Kind::kByteLevel: {
      if (step.add_prefix_space && piece.text.compare(0, 1, " ") != 0) {
        piece.text.insert(0, " ");
      }
      size_t first = out->size();
      if (step.pattern) {
        emit_split(piece.text, SplitBehavior::kIsolated, false);
      } else if (!piece.text.empty()) {
        out->push_back(piece);
      }
      const ByteLevelTables& tables = ByteLevel();
      for (size_t i = first; i < out->size(); ++i) {
        std::string mapped;
        for (unsigned char c : (*out)[i].text) mapped += tables.byte_to_char[c];
        (*out)[i].text = std::move(mapped);
      }
      return;
    }
    case Kind::kMetaspace: {
      std::string text;
      for (char c : piece.text) {
        if (c == ' ') {
          text += step.replacement;
        } else {
          text.push_back(c);
        }
      }
      const bool prepend =
          step.prepend_scheme == "always" || (step.prepend_scheme == "first" && piece.at_origin);
      if (prepend && text.compare(0, step.replacement.size(), step.replacement) != 0) {
        text.insert(0, step.replacement);
      }
      if (step.split) {
        emit_split(text, SplitBehavior::kMergedWithNext, false);
      } else if (!text.empty()) {
        out->push_back({std::move(text), piece.at_origin});
      }
      return;
    }
  }
}

std::vector<std::string> HfPreTokenizer::PreTokenize(std::string segment, bool at_origin) const {
  std::vector<Piece> pieces;
  if (!segment.empty()) pieces.push_back({std::move(segment), at_origin});
  for (const Step& step : steps_) {
    std::vector<Piece> next;
    for (Piece& piece : pieces) Apply(step, std::move(piece), &next);
    pieces = std::move(next);
  }
  std::vector<std::string> words;
  words.reserve(pieces.size());
  for (Piece& piece : pieces) words.push_back(std::move(piece.text));
  return words;
}

}  // namespace spar::model::internal
