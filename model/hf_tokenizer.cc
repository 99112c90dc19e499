#include "model/hf_tokenizer.h"

#include <algorithm>
#include <array>
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
#include "model/internal/hf_added_tokens.h"
#include "model/internal/hf_json.h"
#include "model/internal/hf_normalizer.h"
#include "model/internal/hf_pattern.h"
#include "model/internal/hf_pre_tokenizer.h"
#include "nlohmann/json.hpp"

namespace spar::model {
namespace {

using internal::AV;
using internal::ByteLevel;
using internal::ByteLevelTables;
using internal::JsonBool;
using internal::JsonString;
using internal::Pattern;
using internal::SplitChars;
using nlohmann::json;

std::string StringOrContent(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) {
    return j["content"].get<std::string>();
  }
  return "";
}

enum class DecKind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip, kMetaspace };
struct DecStep {
  DecKind kind;
  std::optional<Pattern> pattern;  // replace: what `a` replaces
  std::string a;                   // replace: content; strip: content; metaspace: replacement
  int start = 0, stop = 0;
  bool prepend = true;  // metaspace: strip the space of the first token
};

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
  internal::AddedTokenMatcher raw_added;         // tokens with normalized: false
  internal::AddedTokenMatcher normalized_added;  // the others, by their normalized content

  internal::HfNormalizer normalizer;
  internal::HfPreTokenizer pre_tokenizer;
  std::vector<DecStep> decoders;
  bool has_decoder = false;
  std::vector<int32_t> prefix_ids, suffix_ids;  // post-processor

  std::optional<std::string> bos, eos, pad;
  bool add_bos = false, add_eos = false;

  std::optional<int32_t> Find(std::string_view token) const {
    auto it = vocab.find(AV(token));
    if (it == vocab.end()) return std::nullopt;
    return it->second;
  }

  absl::Status ParseModel(const json& model, const json& added_tokens);
  absl::Status ParseMerges(const json& merges);
  absl::Status ParseDecoder(const json& j);
  absl::Status ParsePostProcessor(const json& j);
  void ParseConfig(const json& config);
  void BuildAddedTokenMatchers();

  // Appends the ids of a run of raw text that holds no raw-matched added token; `at_origin`: it
  // starts at offset 0 of the input.
  absl::Status EncodeText(std::string_view text, bool at_origin, bool parse_special,
                          std::vector<int32_t>* out) const;
  absl::Status Bpe(const std::string& word, std::vector<int32_t>* out) const;
};

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
  } else if (type == "Replace" && j.contains("pattern") && j["pattern"].is_object()) {
    step.kind = DecKind::kReplace;
    const json& pattern = j["pattern"];
    if (pattern.contains("Regex")) {
      SPAR_ASSIGN_OR_RETURN(step.pattern, Pattern::Regex(JsonString(pattern, "Regex")));
    } else {
      SPAR_ASSIGN_OR_RETURN(step.pattern, Pattern::Literal(JsonString(pattern, "String")));
    }
    step.a = JsonString(j, "content");
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
  } else if (type == "BertProcessing" || type == "RobertaProcessing") {
    // [CLS] text [SEP]: "cls"/"sep" are [token, id] pairs.
    prefix_ids = {j.at("cls").at(1).get<int32_t>()};
    suffix_ids = {j.at("sep").at(1).get<int32_t>()};
  }
  // ByteLevel and RobertaProcessing-free Llama-family tokenizers: nothing else adds ids here.
  return absl::OkStatus();
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
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer: no token for character \"", SanitizeUtf8(std::string(ch)),
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
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push = [&](int i) {
    if (i < 0 || next[i] < 0) return;
    uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(ids[i])) << 32) |
                   static_cast<uint32_t>(ids[next[i]]);
    auto it = merges.find(key);
    if (it != merges.end())
      heap.push({it->second.first, i, ids[i], ids[next[i]], it->second.second});
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

absl::Status HfTokenizer::Impl::ParseModel(const json& model, const json& added_tokens) {
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
    vocab[token] = i;
    max_id = std::max(max_id, i);
  }
  for (const json& t : added_tokens) {
    HfAddedToken token;
    token.id = t.at("id").get<int32_t>();
    token.content = t.at("content").get<std::string>();
    token.special = JsonBool(t, "special", false);
    token.lstrip = JsonBool(t, "lstrip", false);
    token.rstrip = JsonBool(t, "rstrip", false);
    token.single_word = JsonBool(t, "single_word", false);
    token.normalized = JsonBool(t, "normalized", !token.special);
    max_id = std::max(max_id, token.id);
    vocab.emplace(token.content, token.id);
    if (token.special) special_ids.insert(token.id);
    added.push_back(std::move(token));
  }
  id_to_token.assign(max_id + 1, "");
  for (const auto& [token, id] : vocab) id_to_token[id] = token;
  for (const HfAddedToken& t : added) id_to_token[t.id] = t.content;
  SPAR_RETURN_IF_ERROR(ParseMerges(model.at("merges")));
  std::string unk = JsonString(model, "unk_token");
  if (!unk.empty()) unk_id = Find(unk);
  fuse_unk = JsonBool(model, "fuse_unk", false);
  byte_fallback = JsonBool(model, "byte_fallback", false);
  ignore_merges = JsonBool(model, "ignore_merges", false);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    byte_ids[b] = Find(name).value_or(-1);
  }
  return absl::OkStatus();
}

absl::Status HfTokenizer::Impl::ParseMerges(const json& merge_list) {
  int32_t rank = 0;
  for (const json& m : merge_list) {
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
    auto ia = Find(a), ib = Find(b), iab = Find(a + b);
    if (!ia || !ib || !iab) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer.json: merge \"", a, " ", b, "\" uses a token not in vocab"));
    }
    uint64_t key =
        (static_cast<uint64_t>(static_cast<uint32_t>(*ia)) << 32) | static_cast<uint32_t>(*ib);
    merges.emplace(key, std::make_pair(rank++, *iab));
  }
  return absl::OkStatus();
}

void HfTokenizer::Impl::ParseConfig(const json& cj) {
  auto opt = [&](const char* key) -> std::optional<std::string> {
    if (!cj.contains(key)) return std::nullopt;
    std::string s = StringOrContent(cj[key]);
    if (s.empty()) return std::nullopt;
    return s;
  };
  bos = opt("bos_token");
  eos = opt("eos_token");
  pad = opt("pad_token");
  add_bos = JsonBool(cj, "add_bos_token", false);
  add_eos = JsonBool(cj, "add_eos_token", false);
}

// As the library's AddedVocabulary: tokens marked normalized are looked for in the normalized
// text by their normalized content, which is also what they decode to; the others in the raw
// text.
void HfTokenizer::Impl::BuildAddedTokenMatchers() {
  std::vector<std::pair<std::string, const HfAddedToken*>> raw, normalized;
  for (const HfAddedToken& t : added) {
    if (t.normalized) {
      normalized.emplace_back(normalizer.Normalize(t.content), &t);
      id_to_token[t.id] = normalized.back().first;
    } else {
      raw.emplace_back(t.content, &t);
    }
  }
  raw_added = internal::AddedTokenMatcher(std::move(raw));
  normalized_added = internal::AddedTokenMatcher(std::move(normalized));
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
    SPAR_RETURN_IF_ERROR(impl->ParseModel(tj.at("model"), tj.value("added_tokens", json::array())));
    SPAR_RETURN_IF_ERROR(impl->normalizer.Parse(tj.value("normalizer", json())));
    SPAR_RETURN_IF_ERROR(impl->pre_tokenizer.Parse(tj.value("pre_tokenizer", json())));
    SPAR_RETURN_IF_ERROR(impl->ParseDecoder(tj.value("decoder", json())));
    impl->BuildAddedTokenMatchers();
    if (!tokenizer_config_json.empty()) impl->ParseConfig(json::parse(tokenizer_config_json));
    SPAR_RETURN_IF_ERROR(impl->ParsePostProcessor(tj.value("post_processor", json())));
    if (impl->prefix_ids.empty() && impl->suffix_ids.empty()) {
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

absl::Status HfTokenizer::Impl::EncodeText(std::string_view text, bool at_origin,
                                           bool parse_special, std::vector<int32_t>* out) const {
  std::string normalized = normalizer.Normalize(std::string(text));
  for (const internal::AddedSplit& split : normalized_added.Split(normalized, parse_special)) {
    if (split.token != nullptr) {
      out->push_back(split.token->id);
      continue;
    }
    std::string segment = normalized.substr(split.begin, split.end - split.begin);
    for (const std::string& word :
         pre_tokenizer.PreTokenize(std::move(segment), at_origin && split.begin == 0)) {
      SPAR_RETURN_IF_ERROR(Bpe(word, out));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> HfTokenizer::Encode(std::string_view text,
                                                         const EncodeOptions& options) const {
  const Impl& im = *impl_;
  std::vector<int32_t> out;
  if (options.add_special_tokens) out = im.prefix_ids;
  for (const internal::AddedSplit& split : im.raw_added.Split(text, options.parse_special_tokens)) {
    if (split.token != nullptr) {
      out.push_back(split.token->id);
      continue;
    }
    SPAR_RETURN_IF_ERROR(im.EncodeText(text.substr(split.begin, split.end - split.begin),
                                       split.begin == 0, options.parse_special_tokens, &out));
  }
  if (options.add_special_tokens) out.insert(out.end(), im.suffix_ids.begin(), im.suffix_ids.end());
  return out;
}

namespace {

void DecodeByteLevel(std::vector<std::string>* tokens) {
  const ByteLevelTables& tables = ByteLevel();
  std::string bytes;
  for (const std::string& t : *tokens) {
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
  *tokens = {SanitizeUtf8(bytes)};
}

void DecodeByteFallback(std::vector<std::string>* tokens) {
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
  for (std::string& t : *tokens) {
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
  *tokens = std::move(next);
}

void DecodeStrip(const DecStep& step, std::vector<std::string>* tokens) {
  for (std::string& t : *tokens) {
    for (int i = 0; i < step.start && t.compare(0, step.a.size(), step.a) == 0; ++i) {
      t.erase(0, step.a.size());
    }
    for (int i = 0; i < step.stop && t.size() >= step.a.size() &&
                    t.compare(t.size() - step.a.size(), step.a.size(), step.a) == 0;
         ++i) {
      t.erase(t.size() - step.a.size());
    }
  }
}

void DecodeMetaspace(const DecStep& step, std::vector<std::string>* tokens) {
  for (size_t i = 0; i < tokens->size(); ++i) {
    // Every replacement in the first token is dropped when the encoder prepends one.
    const char* space = i == 0 && step.prepend ? "" : " ";
    std::string& token = (*tokens)[i];
    std::string out;
    size_t pos = 0;
    for (size_t hit; (hit = token.find(step.a, pos)) != std::string::npos;
         pos = hit + step.a.size()) {
      out.append(token, pos, hit - pos);
      out += space;
    }
    out.append(token, pos, std::string::npos);
    token = std::move(out);
  }
}

void ApplyDecoder(const DecStep& step, std::vector<std::string>* tokens) {
  switch (step.kind) {
    case DecKind::kByteLevel:
      DecodeByteLevel(tokens);
      break;
    case DecKind::kReplace:
      for (std::string& t : *tokens) t = internal::ReplaceAll(*step.pattern, t, step.a);
      break;
    case DecKind::kByteFallback:
      DecodeByteFallback(tokens);
      break;
    case DecKind::kFuse:
      *tokens = {absl::StrJoin(*tokens, "")};
      break;
    case DecKind::kStrip:
      DecodeStrip(step, tokens);
      break;
    case DecKind::kMetaspace:
      DecodeMetaspace(step, tokens);
      break;
  }
}

}  // namespace

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
  for (const DecStep& step : im.decoders) ApplyDecoder(step, &tokens);
  return absl::StrJoin(tokens, "");
}

int32_t HfTokenizer::vocab_size() const { return static_cast<int32_t>(impl_->id_to_token.size()); }
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

}  // namespace spar::model
