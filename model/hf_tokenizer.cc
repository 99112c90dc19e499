#include "model/hf_tokenizer.h"

#include <unicode/normalizer2.h>
#include <unicode/regex.h>
#include <unicode/unistr.h>
#include <unicode/utext.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <queue>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/utf8.h"
#include "nlohmann/json.hpp"

namespace spar::model {
namespace {

using nlohmann::json;

// Debian's Abseil has its own string_view type; heterogeneous lookup and StrCat want it.
absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Byte length of the UTF-8 sequence starting with `c` (1 for an invalid lead byte).
size_t Utf8Len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c >> 5) == 0x6) return 2;
  if ((c >> 4) == 0xE) return 3;
  if ((c >> 3) == 0x1E) return 4;
  return 1;
}

std::vector<std::string_view> SplitChars(std::string_view s) {
  std::vector<std::string_view> out;
  for (size_t i = 0; i < s.size();) {
    size_t n = std::min(Utf8Len(static_cast<unsigned char>(s[i])), s.size() - i);
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 onwards.
struct ByteLevelTables {
  std::array<std::string, 256> byte_to_char;
  absl::flat_hash_map<std::string, uint8_t> char_to_byte;
  ByteLevelTables() {
    std::array<int, 256> cp{};
    std::vector<bool> direct(256, false);
    for (int b = '!'; b <= '~'; ++b) direct[b] = true;
    for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
    for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
    int n = 0;
    for (int b = 0; b < 256; ++b) cp[b] = direct[b] ? b : 256 + n++;
    for (int b = 0; b < 256; ++b) {
      AppendUtf8(static_cast<uint32_t>(cp[b]), &byte_to_char[b]);
      char_to_byte[byte_to_char[b]] = static_cast<uint8_t>(b);
    }
  }
};
const ByteLevelTables& ByteLevel() {
  static const ByteLevelTables* tables = new ByteLevelTables();
  return *tables;
}

const char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// tokenizers (Oniguruma) reads \s and \S as Unicode White_Space; ICU's \s omits U+000B and U+0085.
std::string ToIcuPattern(std::string_view pattern) {
  std::string out;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '\\' && i + 1 < pattern.size()) {
      char c = pattern[i + 1];
      if (c == 's') {
        out += "\\p{White_Space}";
      } else if (c == 'S') {
        out += "\\P{White_Space}";
      } else {
        out += pattern.substr(i, 2);
      }
      ++i;
    } else {
      out.push_back(pattern[i]);
    }
  }
  return out;
}

std::string StringOrContent(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) {
    return j["content"].get<std::string>();
  }
  return "";
}

std::string JsonString(const json& obj, const char* key, const std::string& fallback = "") {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return fallback;
  return it->get<std::string>();
}
bool JsonBool(const json& obj, const char* key, bool fallback) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_boolean()) return fallback;
  return it->get<bool>();
}

enum class NormKind { kNfc, kNfkc, kNfd, kNfkd, kPrepend, kReplace };
struct NormStep {
  NormKind kind;
  std::string a, b;  // prepend: a; replace: a -> b
};

enum class PreKind { kSplit, kByteLevel, kMetaspace };
struct PreStep {
  PreKind kind;
  std::shared_ptr<icu::RegexPattern> regex;  // kSplit, kByteLevel with use_regex
  bool removed = false;                       // kSplit behavior "Removed" (else "Isolated")
  bool add_prefix_space = false;              // kByteLevel
  std::string replacement;                    // kMetaspace
  std::string prepend_scheme = "always";      // kMetaspace: always | first | never
  bool split = true;                          // kMetaspace
};

enum class DecKind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip, kMetaspace };
struct DecStep {
  DecKind kind;
  std::string a, b;  // replace: a -> b; strip: a = content; metaspace: a = replacement
  int start = 0, stop = 0;
  bool prepend = true;  // metaspace: strip the space of the first token
};

absl::StatusOr<std::shared_ptr<icu::RegexPattern>> CompileRegex(std::string_view pattern) {
  UErrorCode status = U_ZERO_ERROR;
  UParseError parse_error;
  icu::UnicodeString upattern = icu::UnicodeString::fromUTF8(ToIcuPattern(pattern));
  std::shared_ptr<icu::RegexPattern> regex(
      icu::RegexPattern::compile(upattern, 0, parse_error, status));
  if (U_FAILURE(status)) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: cannot compile regex \"",
                                                   AV(pattern), "\": ", u_errorName(status)));
  }
  return regex;
}

}  // namespace

struct HfTokenizer::Impl {
  // Model (BPE).
  absl::flat_hash_map<std::string, int32_t> vocab;
  absl::flat_hash_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (a, b) -> (rank, merged)
  std::vector<std::string> id_to_token;
  std::optional<int32_t> unk_id;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
  std::array<int32_t, 256> byte_ids{};  // "<0xXX>" ids, -1 when absent

  std::vector<HfAddedToken> added;
  absl::flat_hash_set<int32_t> special_ids;

  std::vector<NormStep> normalizers;
  std::vector<PreStep> pre_tokenizers;
  std::vector<DecStep> decoders;
  bool has_decoder = false;
  std::vector<int32_t> prefix_ids, suffix_ids;  // post-processor

  std::optional<std::string> bos, eos, pad;
  bool add_bos = false, add_eos = false;
  std::string chat_template;

  std::optional<int32_t> Find(std::string_view token) const {
    auto it = vocab.find(AV(token));
    if (it == vocab.end()) return std::nullopt;
    return it->second;
  }

  absl::Status ParseNormalizer(const json& j);
  absl::Status ParsePreTokenizer(const json& j);
  absl::Status ParseDecoder(const json& j);
  absl::Status ParsePostProcessor(const json& j);

  std::string Normalize(std::string s) const;
  std::vector<std::string> PreTokenize(std::string s) const;
  absl::Status Bpe(const std::string& word, std::vector<int32_t>* out) const;
};

absl::Status HfTokenizer::Impl::ParseNormalizer(const json& j) {
  if (j.is_null()) return absl::OkStatus();
  std::string type = JsonString(j, "type");
  if (type == "Sequence") {
    for (const json& n : j.value("normalizers", json::array())) {
      SPAR_RETURN_IF_ERROR(ParseNormalizer(n));
    }
  } else if (type == "NFC") {
    normalizers.push_back({NormKind::kNfc, "", ""});
  } else if (type == "NFKC") {
    normalizers.push_back({NormKind::kNfkc, "", ""});
  } else if (type == "NFD") {
    normalizers.push_back({NormKind::kNfd, "", ""});
  } else if (type == "NFKD") {
    normalizers.push_back({NormKind::kNfkd, "", ""});
  } else if (type == "Prepend") {
    normalizers.push_back({NormKind::kPrepend, JsonString(j, "prepend"), ""});
  } else if (type == "Replace" && j.contains("pattern") && j["pattern"].contains("String")) {
    normalizers.push_back(
        {NormKind::kReplace, j["pattern"]["String"].get<std::string>(), JsonString(j, "content")});
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer.json: unsupported normalizer ", j.dump()));
  }
  return absl::OkStatus();
}

absl::Status HfTokenizer::Impl::ParsePreTokenizer(const json& j) {
  if (j.is_null()) return absl::OkStatus();
  std::string type = JsonString(j, "type");
  if (type == "Sequence") {
    for (const json& p : j.value("pretokenizers", json::array())) {
      SPAR_RETURN_IF_ERROR(ParsePreTokenizer(p));
    }
    return absl::OkStatus();
  }
  PreStep step;
  if (type == "Split") {
    step.kind = PreKind::kSplit;
    const json& pattern = j.value("pattern", json::object());
    std::string behavior = JsonString(j, "behavior");
    if (JsonBool(j, "invert", false) || (behavior != "Isolated" && behavior != "Removed")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tokenizer.json: unsupported Split pre-tokenizer (behavior ", behavior, ")"));
    }
    step.removed = behavior == "Removed";
    if (pattern.contains("Regex")) {
      SPAR_ASSIGN_OR_RETURN(step.regex, CompileRegex(pattern["Regex"].get<std::string>()));
    } else if (pattern.contains("String")) {
      // Literal: quote it for the regex engine.
      std::string quoted = "\\Q" + pattern["String"].get<std::string>() + "\\E";
      SPAR_ASSIGN_OR_RETURN(step.regex, CompileRegex(quoted));
    } else {
      return absl::InvalidArgumentError("tokenizer.json: Split pre-tokenizer without a pattern");
    }
  } else if (type == "ByteLevel") {
    step.kind = PreKind::kByteLevel;
    step.add_prefix_space = JsonBool(j, "add_prefix_space", false);
    if (JsonBool(j, "use_regex", true)) {
      SPAR_ASSIGN_OR_RETURN(step.regex, CompileRegex(kGpt2Pattern));
    }
  } else if (type == "Metaspace") {
    step.kind = PreKind::kMetaspace;
    step.replacement = JsonString(j, "replacement", "\u2581");
    step.split = JsonBool(j, "split", true);
    if (j.contains("prepend_scheme")) {
      step.prepend_scheme = JsonString(j, "prepend_scheme", "always");
    } else {
      step.prepend_scheme = JsonBool(j, "add_prefix_space", true) ? "always" : "never";
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer.json: unsupported pre_tokenizer type \"", type, "\""));
  }
  pre_tokenizers.push_back(std::move(step));
  return absl::OkStatus();
}

absl::Status HfTokenizer::Impl::ParseDecoder(const json& j) {
  if (j.is_null()) return absl::OkStatus();
  has_decoder = true;
  std::string type = JsonString(j, "type");
  DecStep step;
  if (type == "Sequence") {
    for (const json& d : j.value("decoders", json::array())) {
      SPAR_RETURN_IF_ERROR(ParseDecoder(d));
    }
    return absl::OkStatus();
  } else if (type == "ByteLevel") {
    step.kind = DecKind::kByteLevel;
  } else if (type == "Replace" && j.contains("pattern") && j["pattern"].contains("String")) {
    step.kind = DecKind::kReplace;
    step.a = j["pattern"]["String"].get<std::string>();
    step.b = JsonString(j, "content");
  } else if (type == "ByteFallback") {
    step.kind = DecKind::kByteFallback;
  } else if (type == "Fuse") {
    step.kind = DecKind::kFuse;
  } else if (type == "Strip") {
    step.kind = DecKind::kStrip;
    step.a = JsonString(j, "content", " ");
    step.start = j.value("start", 0);
    step.stop = j.value("stop", 0);
  } else if (type == "Metaspace") {
    step.kind = DecKind::kMetaspace;
    step.a = JsonString(j, "replacement", "\u2581");
    if (j.contains("prepend_scheme")) {
      step.prepend = JsonString(j, "prepend_scheme", "always") != "never";
    } else {
      step.prepend = JsonBool(j, "add_prefix_space", true);
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer.json: unsupported decoder type \"", type, "\""));
  }
  decoders.push_back(std::move(step));
  return absl::OkStatus();
}

absl::Status HfTokenizer::Impl::ParsePostProcessor(const json& j) {
  if (j.is_null()) return absl::OkStatus();
  std::string type = JsonString(j, "type");
  if (type == "Sequence") {
    for (const json& p : j.value("processors", json::array())) {
      SPAR_RETURN_IF_ERROR(ParsePostProcessor(p));
    }
  } else if (type == "TemplateProcessing") {
    prefix_ids.clear();
    suffix_ids.clear();
    const json& specials = j.value("special_tokens", json::object());
    bool seen_sequence = false;
    for (const json& piece : j.value("single", json::array())) {
      if (piece.contains("Sequence")) {
        seen_sequence = true;
        continue;
      }
      if (!piece.contains("SpecialToken")) continue;
      std::string name = JsonString(piece["SpecialToken"], "id");
      std::vector<int32_t> ids;
      if (specials.contains(name) && specials[name].contains("ids")) {
        ids = specials[name]["ids"].get<std::vector<int32_t>>();
      } else if (auto id = Find(name)) {
        ids = {*id};
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("tokenizer.json: post_processor names unknown token \"", name, "\""));
      }
      auto& dst = seen_sequence ? suffix_ids : prefix_ids;
      dst.insert(dst.end(), ids.begin(), ids.end());
    }
  }
  // ByteLevel, RobertaProcessing-free Llama-family tokenizers: nothing else adds ids here.
  return absl::OkStatus();
}

std::string HfTokenizer::Impl::Normalize(std::string s) const {
  for (const NormStep& step : normalizers) {
    switch (step.kind) {
      case NormKind::kNfc:
      case NormKind::kNfkc:
      case NormKind::kNfd:
      case NormKind::kNfkd: {
        UErrorCode status = U_ZERO_ERROR;
        const icu::Normalizer2* norm =
            step.kind == NormKind::kNfc    ? icu::Normalizer2::getNFCInstance(status)
            : step.kind == NormKind::kNfkc ? icu::Normalizer2::getNFKCInstance(status)
            : step.kind == NormKind::kNfd  ? icu::Normalizer2::getNFDInstance(status)
                                           : icu::Normalizer2::getNFKDInstance(status);
        if (U_FAILURE(status)) break;
        if (norm->isNormalizedUTF8(s, status) && U_SUCCESS(status)) break;
        status = U_ZERO_ERROR;
        std::string out;
        icu::StringByteSink<std::string> sink(&out);
        norm->normalizeUTF8(0, s, sink, nullptr, status);
        if (U_SUCCESS(status)) s = std::move(out);
        break;
      }
      case NormKind::kPrepend:
        if (!s.empty()) s = step.a + s;
        break;
      case NormKind::kReplace: {
        if (step.a.empty()) break;
        std::string out;
        size_t pos = 0;
        for (size_t hit; (hit = s.find(step.a, pos)) != std::string::npos;
             pos = hit + step.a.size()) {
          out.append(s, pos, hit - pos);
          out += step.b;
        }
        out.append(s, pos, std::string::npos);
        s = std::move(out);
        break;
      }
    }
  }
  return s;
}

namespace {

// Pieces of `s` split by `regex`: matches (and, unless `removed`, the gaps between them).
std::vector<std::string> RegexSplit(const icu::RegexPattern& regex, const std::string& s,
                                    bool removed) {
  std::vector<std::string> out;
  UErrorCode status = U_ZERO_ERROR;
  UText* text = utext_openUTF8(nullptr, s.data(), static_cast<int64_t>(s.size()), &status);
  std::unique_ptr<icu::RegexMatcher> matcher(regex.matcher(status));
  if (U_FAILURE(status)) {
    utext_close(text);
    out.push_back(s);
    return out;
  }
  matcher->reset(text);
  int64_t last = 0;
  while (matcher->find(status) && U_SUCCESS(status)) {
    int64_t begin = matcher->start64(status);
    int64_t end = matcher->end64(status);
    if (end == begin) continue;
    if (begin > last && !removed) out.push_back(s.substr(last, begin - last));
    out.push_back(s.substr(begin, end - begin));
    last = end;
  }
  if (last < static_cast<int64_t>(s.size()) && !removed) out.push_back(s.substr(last));
  utext_close(text);
  return out;
}

}  // namespace

std::vector<std::string> HfTokenizer::Impl::PreTokenize(std::string s) const {
  std::vector<std::string> pieces;
  pieces.push_back(std::move(s));
  for (const PreStep& step : pre_tokenizers) {
    std::vector<std::string> next;
    for (size_t p = 0; p < pieces.size(); ++p) {
      std::string& piece = pieces[p];
      switch (step.kind) {
        case PreKind::kSplit:
          for (std::string& part : RegexSplit(*step.regex, piece, step.removed)) {
            next.push_back(std::move(part));
          }
          break;
        case PreKind::kByteLevel: {
          if (step.add_prefix_space && (piece.empty() || piece[0] != ' ')) piece = " " + piece;
          std::vector<std::string> parts;
          if (step.regex) {
            parts = RegexSplit(*step.regex, piece, false);
          } else {
            parts.push_back(piece);
          }
          const ByteLevelTables& tables = ByteLevel();
          for (const std::string& part : parts) {
            std::string mapped;
            for (unsigned char c : part) mapped += tables.byte_to_char[c];
            next.push_back(std::move(mapped));
          }
          break;
        }
        case PreKind::kMetaspace: {
          std::string replaced;
          for (char c : piece) {
            if (c == ' ') {
              replaced += step.replacement;
            } else {
              replaced.push_back(c);
            }
          }
          bool prepend = step.prepend_scheme == "always" ||
                         (step.prepend_scheme == "first" && p == 0 && next.empty());
          if (prepend && replaced.compare(0, step.replacement.size(), step.replacement) != 0) {
            replaced = step.replacement + replaced;
          }
          if (!step.split) {
            next.push_back(std::move(replaced));
            break;
          }
          // MergedWithNext: each piece starts at a replacement character.
          size_t start = 0;
          for (size_t pos = replaced.find(step.replacement, 1); pos != std::string::npos;
               pos = replaced.find(step.replacement, pos + 1)) {
            if (pos > start) next.push_back(replaced.substr(start, pos - start));
            start = pos;
          }
          if (start < replaced.size()) next.push_back(replaced.substr(start));
          break;
        }
      }
    }
    pieces = std::move(next);
  }
  return pieces;
}

absl::Status HfTokenizer::Impl::Bpe(const std::string& word, std::vector<int32_t>* out) const {
  if (word.empty()) return absl::OkStatus();
  if (ignore_merges) {
    if (auto id = Find(word)) {
      out->push_back(*id);
      return absl::OkStatus();
    }
  }
  // Initial symbols: characters, else their "<0xXX>" bytes, else unk.
  std::vector<int32_t> ids;
  bool last_unk = false;
  for (std::string_view ch : SplitChars(word)) {
    if (auto id = Find(ch)) {
      ids.push_back(*id);
      last_unk = false;
      continue;
    }
    if (byte_fallback) {
      bool all = true;
      for (unsigned char c : ch) all = all && byte_ids[c] >= 0;
      if (all) {
        for (unsigned char c : ch) ids.push_back(byte_ids[c]);
        last_unk = false;
        continue;
      }
    }
    if (!unk_id) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tokenizer: no token for character \"", SanitizeUtf8(std::string(ch)),
          "\" and the model has neither byte_fallback nor an unk token"));
    }
    if (!(fuse_unk && last_unk)) ids.push_back(*unk_id);
    last_unk = true;
  }
  const int n = static_cast<int>(ids.size());
  std::vector<int> prev(n), next(n);
  for (int i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  // (rank, position) min-heap; stale entries are skipped when popped.
  struct Cand {
    int32_t rank;
    int pos;
    int32_t left, right, merged;
    bool operator>(const Cand& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push = [&](int i) {
    if (i < 0 || next[i] < 0) return;
    uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(ids[i])) << 32) |
                   static_cast<uint32_t>(ids[next[i]]);
    auto it = merges.find(key);
    if (it != merges.end()) heap.push({it->second.first, i, ids[i], ids[next[i]], it->second.second});
  };
  for (int i = 0; i < n; ++i) push(i);
  std::vector<bool> dead(n, false);
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    int i = c.pos;
    if (dead[i] || next[i] < 0 || ids[i] != c.left || ids[next[i]] != c.right) continue;
    int j = next[i];
    ids[i] = c.merged;
    dead[j] = true;
    next[i] = next[j];
    if (next[j] >= 0) prev[next[j]] = i;
    push(prev[i]);
    push(i);
  }
  for (int i = 0; i >= 0 && i < n; i = next[i]) out->push_back(ids[i]);
  return absl::OkStatus();
}

HfTokenizer::HfTokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HfTokenizer::~HfTokenizer() = default;

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::Load(const std::string& dir) {
  std::string path = JoinPath(dir, "tokenizer.json");
  if (!PathExists(path)) return absl::NotFoundError(absl::StrCat("no tokenizer.json in ", dir));
  SPAR_ASSIGN_OR_RETURN(std::string tokenizer_json, ReadFile(path));
  std::string config_json;
  std::string config_path = JoinPath(dir, "tokenizer_config.json");
  if (PathExists(config_path)) {
    SPAR_ASSIGN_OR_RETURN(config_json, ReadFile(config_path));
  }
  return FromJson(tokenizer_json, config_json);
}

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::FromJson(
    std::string_view tokenizer_json, std::string_view tokenizer_config_json) {
  auto impl = std::make_unique<Impl>();
  try {
    json tj = json::parse(tokenizer_json);
    const json& model = tj.at("model");
    std::string type = JsonString(model, "type", "BPE");
    if (type != "BPE") {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer.json: unsupported model type \"", type, "\" (only BPE)"));
    }
    if (!JsonString(model, "continuing_subword_prefix").empty() ||
        !JsonString(model, "end_of_word_suffix").empty()) {
      return absl::InvalidArgumentError(
          "tokenizer.json: continuing_subword_prefix/end_of_word_suffix are not supported");
    }
    int32_t max_id = -1;
    for (const auto& [token, id] : model.at("vocab").items()) {
      int32_t i = id.get<int32_t>();
      impl->vocab[token] = i;
      max_id = std::max(max_id, i);
    }
    for (const json& t : tj.value("added_tokens", json::array())) {
      HfAddedToken added;
      added.id = t.at("id").get<int32_t>();
      added.content = t.at("content").get<std::string>();
      added.special = JsonBool(t, "special", false);
      added.lstrip = JsonBool(t, "lstrip", false);
      added.rstrip = JsonBool(t, "rstrip", false);
      max_id = std::max(max_id, added.id);
      impl->vocab.emplace(added.content, added.id);
      if (added.special) impl->special_ids.insert(added.id);
      impl->added.push_back(std::move(added));
    }
    impl->id_to_token.assign(max_id + 1, "");
    for (const auto& [token, id] : impl->vocab) impl->id_to_token[id] = token;
    for (const HfAddedToken& t : impl->added) impl->id_to_token[t.id] = t.content;

    int32_t rank = 0;
    for (const json& m : model.at("merges")) {
      std::string a, b;
      if (m.is_string()) {
        std::string s = m.get<std::string>();
        size_t space = s.find(' ', 1);
        if (space == std::string::npos) {
          return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: bad merge \"", s, "\""));
        }
        a = s.substr(0, space);
        b = s.substr(space + 1);
      } else {
        a = m.at(0).get<std::string>();
        b = m.at(1).get<std::string>();
      }
      auto ia = impl->Find(a), ib = impl->Find(b), iab = impl->Find(a + b);
      if (!ia || !ib || !iab) {
        return absl::InvalidArgumentError(
            absl::StrCat("tokenizer.json: merge \"", a, " ", b, "\" uses a token not in vocab"));
      }
      uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(*ia)) << 32) |
                     static_cast<uint32_t>(*ib);
      impl->merges.emplace(key, std::make_pair(rank++, *iab));
    }
    std::string unk = JsonString(model, "unk_token");
    if (!unk.empty()) impl->unk_id = impl->Find(unk);
    impl->fuse_unk = JsonBool(model, "fuse_unk", false);
    impl->byte_fallback = JsonBool(model, "byte_fallback", false);
    impl->ignore_merges = JsonBool(model, "ignore_merges", false);
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", b);
      impl->byte_ids[b] = impl->Find(name).value_or(-1);
    }

    SPAR_RETURN_IF_ERROR(impl->ParseNormalizer(tj.value("normalizer", json())));
    SPAR_RETURN_IF_ERROR(impl->ParsePreTokenizer(tj.value("pre_tokenizer", json())));
    SPAR_RETURN_IF_ERROR(impl->ParseDecoder(tj.value("decoder", json())));

    bool has_template = false;
    if (!tokenizer_config_json.empty()) {
      json cj = json::parse(tokenizer_config_json);
      auto opt = [&](const char* key) -> std::optional<std::string> {
        if (!cj.contains(key)) return std::nullopt;
        std::string s = StringOrContent(cj[key]);
        if (s.empty()) return std::nullopt;
        return s;
      };
      impl->bos = opt("bos_token");
      impl->eos = opt("eos_token");
      impl->pad = opt("pad_token");
      impl->add_bos = JsonBool(cj, "add_bos_token", false);
      impl->add_eos = JsonBool(cj, "add_eos_token", false);
      if (cj.contains("chat_template")) {
        const json& ct = cj["chat_template"];
        if (ct.is_string()) {
          impl->chat_template = ct.get<std::string>();
        } else if (ct.is_array()) {
          for (const json& named : ct) {
            if (JsonString(named, "name") == "default") {
              impl->chat_template = JsonString(named, "template");
            }
          }
        }
      }
    }
    const json& post = tj.value("post_processor", json());
    SPAR_RETURN_IF_ERROR(impl->ParsePostProcessor(post));
    has_template = !impl->prefix_ids.empty() || !impl->suffix_ids.empty();
    if (!has_template) {
      if (impl->add_bos && impl->bos) {
        if (auto id = impl->Find(*impl->bos)) impl->prefix_ids.push_back(*id);
      }
      if (impl->add_eos && impl->eos) {
        if (auto id = impl->Find(*impl->eos)) impl->suffix_ids.push_back(*id);
      }
    }
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer json: ", e.what()));
  }
  return std::unique_ptr<HfTokenizer>(new HfTokenizer(std::move(impl)));
}

absl::StatusOr<std::vector<int32_t>> HfTokenizer::Encode(std::string_view text,
                                                         const EncodeOptions& options) const {
  const Impl& im = *impl_;
  std::vector<int32_t> out;
  if (options.add_special_tokens) out = im.prefix_ids;
  auto encode_segment = [&](std::string_view segment) -> absl::Status {
    if (segment.empty()) return absl::OkStatus();
    std::string normalized = im.Normalize(std::string(segment));
    for (const std::string& piece : im.PreTokenize(std::move(normalized))) {
      SPAR_RETURN_IF_ERROR(im.Bpe(piece, &out));
    }
    return absl::OkStatus();
  };
  // Leftmost-longest match of added tokens in the raw text.
  size_t segment_start = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const HfAddedToken* best = nullptr;
    for (const HfAddedToken& t : im.added) {
      if (t.content.empty() || (t.special && !options.parse_special_tokens)) continue;
      if (text.compare(pos, t.content.size(), t.content) == 0 &&
          (best == nullptr || t.content.size() > best->content.size())) {
        best = &t;
      }
    }
    if (best == nullptr) {
      ++pos;
      continue;
    }
    size_t seg_end = pos;
    if (best->lstrip) {
      while (seg_end > segment_start && std::isspace(static_cast<unsigned char>(text[seg_end - 1]))) {
        --seg_end;
      }
    }
    SPAR_RETURN_IF_ERROR(encode_segment(text.substr(segment_start, seg_end - segment_start)));
    out.push_back(best->id);
    pos += best->content.size();
    if (best->rstrip) {
      while (pos < text.size() && std::isspace(static_cast<unsigned char>(text[pos]))) ++pos;
    }
    segment_start = pos;
  }
  SPAR_RETURN_IF_ERROR(encode_segment(text.substr(segment_start)));
  if (options.add_special_tokens) out.insert(out.end(), im.suffix_ids.begin(), im.suffix_ids.end());
  return out;
}

absl::StatusOr<std::string> HfTokenizer::Decode(const std::vector<int32_t>& ids,
                                                const DecodeOptions& options) const {
  const Impl& im = *impl_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= static_cast<int32_t>(im.id_to_token.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer: id ", id, " out of range [0, ", im.id_to_token.size(), ")"));
    }
    if (options.skip_special_tokens && im.special_ids.contains(id)) continue;
    tokens.push_back(im.id_to_token[id]);
  }
  if (!im.has_decoder) return absl::StrJoin(tokens, " ");
  for (const DecStep& step : im.decoders) {
    switch (step.kind) {
      case DecKind::kByteLevel: {
        const ByteLevelTables& tables = ByteLevel();
        std::string bytes;
        for (const std::string& t : tokens) {
          std::string mapped;
          bool ok = true;
          for (std::string_view ch : SplitChars(t)) {
            auto it = tables.char_to_byte.find(AV(ch));
            if (it == tables.char_to_byte.end()) {
              ok = false;
              break;
            }
            mapped.push_back(static_cast<char>(it->second));
          }
          bytes += ok ? mapped : t;
        }
        tokens = {SanitizeUtf8(bytes)};
        break;
      }
      case DecKind::kReplace:
        for (std::string& t : tokens) {
          std::string out;
          size_t pos = 0;
          for (size_t hit; !step.a.empty() && (hit = t.find(step.a, pos)) != std::string::npos;
               pos = hit + step.a.size()) {
            out.append(t, pos, hit - pos);
            out += step.b;
          }
          out.append(t, pos, std::string::npos);
          t = std::move(out);
        }
        break;
      case DecKind::kByteFallback: {
        std::vector<std::string> next;
        std::string pending;
        size_t pending_count = 0;
        auto flush = [&] {
          if (pending_count == 0) return;
          if (SanitizeUtf8(pending) == pending) {
            next.push_back(pending);
          } else {
            for (size_t i = 0; i < pending_count; ++i) next.push_back("\xEF\xBF\xBD");
          }
          pending.clear();
          pending_count = 0;
        };
        for (std::string& t : tokens) {
          unsigned value = 0;
          if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' &&
              std::sscanf(t.c_str() + 3, "%2x", &value) == 1) {
            pending.push_back(static_cast<char>(value));
            ++pending_count;
          } else {
            flush();
            next.push_back(std::move(t));
          }
        }
        flush();
        tokens = std::move(next);
        break;
      }
      case DecKind::kFuse:
        tokens = {absl::StrJoin(tokens, "")};
        break;
      case DecKind::kStrip:
        for (std::string& t : tokens) {
          for (int i = 0; i < step.start && t.compare(0, step.a.size(), step.a) == 0; ++i) {
            t.erase(0, step.a.size());
          }
          for (int i = 0; i < step.stop && t.size() >= step.a.size() &&
                          t.compare(t.size() - step.a.size(), step.a.size(), step.a) == 0;
               ++i) {
            t.erase(t.size() - step.a.size());
          }
        }
        break;
      case DecKind::kMetaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          std::string out;
          size_t pos = 0;
          for (size_t hit; (hit = tokens[i].find(step.a, pos)) != std::string::npos;
               pos = hit + step.a.size()) {
            out.append(tokens[i], pos, hit - pos);
            out += ' ';
          }
          out.append(tokens[i], pos, std::string::npos);
          if (i == 0 && step.prepend && !out.empty() && out[0] == ' ') out.erase(0, 1);
          tokens[i] = std::move(out);
        }
        break;
    }
  }
  return absl::StrJoin(tokens, "");
}

int32_t HfTokenizer::vocab_size() const {
  return static_cast<int32_t>(impl_->id_to_token.size());
}
std::optional<int32_t> HfTokenizer::TokenToId(std::string_view token) const {
  return impl_->Find(token);
}
std::optional<std::string> HfTokenizer::IdToToken(int32_t id) const {
  if (id < 0 || id >= vocab_size() || impl_->id_to_token[id].empty()) return std::nullopt;
  return impl_->id_to_token[id];
}
bool HfTokenizer::IsSpecial(int32_t id) const { return impl_->special_ids.contains(id); }
const std::vector<HfAddedToken>& HfTokenizer::added_tokens() const { return impl_->added; }
std::optional<int32_t> HfTokenizer::bos_token_id() const {
  return impl_->bos ? impl_->Find(*impl_->bos) : std::nullopt;
}
std::optional<int32_t> HfTokenizer::eos_token_id() const {
  return impl_->eos ? impl_->Find(*impl_->eos) : std::nullopt;
}
std::optional<int32_t> HfTokenizer::pad_token_id() const {
  return impl_->pad ? impl_->Find(*impl_->pad) : std::nullopt;
}
std::optional<std::string> HfTokenizer::bos_token() const { return impl_->bos; }
std::optional<std::string> HfTokenizer::eos_token() const { return impl_->eos; }
bool HfTokenizer::add_bos_token() const { return impl_->add_bos; }
const std::string& HfTokenizer::chat_template() const { return impl_->chat_template; }

}  // namespace spar::model
