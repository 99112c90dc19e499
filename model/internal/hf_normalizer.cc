#include "model/internal/hf_normalizer.h"

#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "model/internal/hf_json.h"

namespace spar::model::internal {
namespace {

using nlohmann::json;

std::string UnicodeNormalize(const icu::Normalizer2* norm, std::string s) {
  UErrorCode status = U_ZERO_ERROR;
  if (norm == nullptr || (norm->isNormalizedUTF8(s, status) && U_SUCCESS(status))) return s;
  status = U_ZERO_ERROR;
  std::string out;
  icu::StringByteSink<std::string> sink(&out);
  norm->normalizeUTF8(0, s, sink, nullptr, status);
  return U_SUCCESS(status) ? out : s;
}

// Rust's char::to_lowercase per code point: full, context-free mappings (no final sigma).
std::string Lowercase(const std::string& s) {
  std::string out;
  for (size_t i = 0, len = 0; i < s.size(); i += len) {
    uint32_t cp = DecodeUtf8(s, i, &len);
    icu::UnicodeString ch(static_cast<UChar32>(cp));
    ch.toLower(icu::Locale::getRoot());
    ch.toUTF8String(out);
  }
  return out;
}

std::string Strip(const std::string& s, bool left, bool right) {
  size_t begin = 0, end = s.size();
  for (size_t len = 0; left && begin < end && IsWhitespace(DecodeUtf8(s, begin, &len));) {
    begin += len;
  }
  while (right && end > begin) {
    size_t start = end - 1;
    while (start > begin && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    size_t len = 0;
    if (!IsWhitespace(DecodeUtf8(s, start, &len))) break;
    end = start;
  }
  return s.substr(begin, end - begin);
}

std::string StripAccents(const std::string& s) {
  std::string out;
  for (size_t i = 0, len = 0; i < s.size(); i += len) {
    uint32_t cp = DecodeUtf8(s, i, &len);
    if ((U_GET_GC_MASK(static_cast<UChar32>(cp)) & U_GC_M_MASK) == 0) out.append(s, i, len);
  }
  return out;
}

}  // namespace

absl::Status HfNormalizer::Parse(const json& j) {
  if (j.is_null()) return absl::OkStatus();
  std::string type = JsonString(j, "type");
  Step step;
  if (type == "Sequence") {
    for (const json& n : j.value("normalizers", json::array())) SPAR_RETURN_IF_ERROR(Parse(n));
    return absl::OkStatus();
  } else if (type == "NFC") {
    step.kind = Kind::kNfc;
  } else if (type == "NFKC") {
    step.kind = Kind::kNfkc;
  } else if (type == "NFD") {
    step.kind = Kind::kNfd;
  } else if (type == "NFKD") {
    step.kind = Kind::kNfkd;
  } else if (type == "Lowercase") {
    step.kind = Kind::kLowercase;
  } else if (type == "Strip") {
    step.kind = Kind::kStrip;
    step.left = JsonBool(j, "strip_left", true);
    step.right = JsonBool(j, "strip_right", true);
  } else if (type == "StripAccents") {
    step.kind = Kind::kStripAccents;
  } else if (type == "Prepend") {
    step.kind = Kind::kPrepend;
    step.content = JsonString(j, "prepend");
  } else if (type == "ByteLevel") {
    step.kind = Kind::kByteLevel;
  } else if (type == "Replace") {
    step.kind = Kind::kReplace;
    step.content = JsonString(j, "content");
    const json& pattern = j.value("pattern", json::object());
    if (pattern.contains("Regex")) {
      SPAR_ASSIGN_OR_RETURN(step.pattern, Pattern::Regex(JsonString(pattern, "Regex")));
    } else if (pattern.contains("String")) {
      SPAR_ASSIGN_OR_RETURN(step.pattern, Pattern::Literal(JsonString(pattern, "String")));
    } else {
      return absl::InvalidArgumentError("tokenizer.json: Replace normalizer without a pattern");
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer.json: unsupported normalizer ", DumpJson(j)));
  }
  steps_.push_back(std::move(step));
  return absl::OkStatus();
}

std::string HfNormalizer::Normalize(std::string s) const {
  UErrorCode status = U_ZERO_ERROR;
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Kind::kNfc:
        s = UnicodeNormalize(icu::Normalizer2::getNFCInstance(status), std::move(s));
        break;
      case Kind::kNfkc:
        s = UnicodeNormalize(icu::Normalizer2::getNFKCInstance(status), std::move(s));
        break;
      case Kind::kNfd:
        s = UnicodeNormalize(icu::Normalizer2::getNFDInstance(status), std::move(s));
        break;
      case Kind::kNfkd:
        s = UnicodeNormalize(icu::Normalizer2::getNFKDInstance(status), std::move(s));
        break;
      case Kind::kLowercase:
        s = Lowercase(s);
        break;
      case Kind::kStrip:
        s = Strip(s, step.left, step.right);
        break;
      case Kind::kStripAccents:
        s = StripAccents(s);
        break;
      case Kind::kReplace:
        s = ReplaceAll(*step.pattern, s, step.content);
        break;
      case Kind::kPrepend:
        if (!s.empty()) s = step.content + s;
        break;
      case Kind::kByteLevel: {
        std::string mapped;
        for (unsigned char c : s) mapped += ByteLevel().byte_to_char[c];
        s = std::move(mapped);
        break;
      }
    }
  }
  return s;
}

}  // namespace spar::model::internal
