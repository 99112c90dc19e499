#include "oracle_client/side_by_side.h"

#include <algorithm>
#include <random>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace spar::oracle {
namespace {

// Same escaping as the pairwise template: a content line starting with "##" or "\" gets a
// leading "\".
std::string Escape(const std::string& text) {
  std::string out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, "##") || absl::StartsWith(line, "\\")) out += "\\";
    absl::StrAppend(&out, line, "\n");
  }
  if (!out.empty()) out.pop_back();
  return out;
}

}  // namespace

const std::string& SideBySideSystemPrompt() {
  static const std::string* s = new std::string(
      "You are a careful, impartial judge of answers written by AI assistants. You are shown an "
      "instruction and several candidate outputs, each under an id. Score every candidate on "
      "this additive 6-point rubric, adding one point for each criterion it meets:\n"
      "1. It is formatted as an answer to the instruction (no repetition, no continuation of the "
      "instruction).\n"
      "2. It is relevant and gives some information related to the instruction.\n"
      "3. It addresses a substantial part of the instruction, without rambling.\n"
      "4. It answers nearly all elements of the instruction correctly and usefully, directly, "
      "with few errors and no excess wordiness.\n"
      "5. It is entirely correct, covers all aspects, and is well organised and succinct.\n"
      "6. It is entirely correct and also concise, tailored to the instruction, expert-level and "
      "insightful.\n"
      "Judge each candidate on its own merits; their order means nothing. Reply with one JSON "
      "object and nothing else: for each id, \"<id>_justification\" (at most 100 words) and "
      "\"<id>_score\" (an integer from 0 to 6), e.g. {\"id1_justification\": \"...\", "
      "\"id1_score\": 4, \"id2_justification\": \"...\", \"id2_score\": 2}.");
  return *s;
}

std::vector<int> SideBySideOrder(int n, uint64_t seed) {
  std::vector<int> order(std::max(0, n));
  for (int i = 0; i < n; ++i) order[i] = i;
  std::mt19937_64 rng(seed);
  for (int i = n; i > 1; --i) std::swap(order[i - 1], order[rng() % static_cast<uint64_t>(i)]);
  return order;
}

std::vector<ChatMessage> RenderSideBySide(const std::string& instruction,
                                          const std::vector<std::string>& candidates,
                                          const std::vector<int>& order) {
  std::string user = absl::StrCat("## Instruction\n", Escape(instruction), "\n");
  for (size_t k = 0; k < order.size(); ++k) {
    absl::StrAppend(&user, "\n## id", k + 1, "\n", Escape(candidates[order[k]]), "\n");
  }
  absl::StrAppend(&user, "\n## Scores (JSON)\n");
  return {{"system", SideBySideSystemPrompt()}, {"user", user}};
}

std::optional<SideBySideInputs> ParseSideBySideUserMessage(const std::string& user_message) {
  std::vector<std::string> lines = absl::StrSplit(user_message, '\n');
  // Sections: a header line, content lines, then one empty line before the next header; the
  // message ends with "## Scores (JSON)" and a final newline.
  if (lines.size() < 3 || lines[0] != "## Instruction" || lines.back() != "" ||
      lines[lines.size() - 2] != "## Scores (JSON)") {
    return std::nullopt;
  }
  std::vector<std::string> headers;
  std::vector<std::string> bodies;
  for (size_t i = 0; i + 2 < lines.size(); ++i) {
    const std::string& line = lines[i];
    if (absl::StartsWith(line, "##")) {
      headers.push_back(line);
      bodies.emplace_back();
      continue;
    }
    if (headers.empty()) return std::nullopt;
    absl::string_view content(line);
    if (absl::StartsWith(content, "\\")) content.remove_prefix(1);
    absl::StrAppend(&bodies.back(), content, "\n");
  }
  SideBySideInputs in;
  for (size_t s = 0; s < headers.size(); ++s) {
    // Content lines plus the separating empty line: "...\n\n" (or "\n" for empty content).
    std::string& b = bodies[s];
    if (!absl::EndsWith(b, "\n\n") && b != "\n") return std::nullopt;
    b.resize(b == "\n" ? 0 : b.size() - 2);
    if (s == 0) {
      in.instruction = std::move(b);
    } else {
      if (headers[s] != absl::StrCat("## id", s)) return std::nullopt;
      in.outputs.push_back(std::move(b));
    }
  }
  if (in.outputs.empty()) return std::nullopt;
  return in;
}

absl::StatusOr<std::vector<int>> ParseSideBySideScores(const std::string& answer,
                                                       const std::vector<int>& order) {
  auto bad = [](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("side-by-side scores: ", what));
  };
  std::string text(absl::StripAsciiWhitespace(answer));
  if (absl::StartsWith(text, "```")) {
    // One fenced block: ```json\n{...}\n```
    size_t nl = text.find('\n');
    if (nl == std::string::npos || !absl::EndsWith(text, "```") || text.size() < nl + 4) {
      return bad("unterminated code fence");
    }
    const std::string lang(absl::StripAsciiWhitespace(text.substr(3, nl - 3)));
    if (!lang.empty() && lang != "json") return bad(absl::StrCat("code fence of \"", lang, "\""));
    text = std::string(absl::StripAsciiWhitespace(text.substr(nl + 1, text.size() - nl - 4)));
  }
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return bad("not one JSON object");
  const size_t n = order.size();
  std::vector<int> scores(n, -1);
  std::set<std::string> known;
  for (size_t k = 0; k < n; ++k) {
    const std::string id = absl::StrCat("id", k + 1);
    known.insert(id + "_score");
    known.insert(id + "_justification");
    auto it = j.find(id + "_score");
    if (it == j.end()) return bad(absl::StrCat("no ", id, "_score"));
    if (!it->is_number_integer()) return bad(absl::StrCat(id, "_score is not an integer"));
    const int64_t v = it->get<int64_t>();
    if (v < 0 || v > 6) return bad(absl::StrCat(id, "_score must be in [0, 6], got ", v));
    auto just = j.find(id + "_justification");
    if (just != j.end() && !just->is_string()) {
      return bad(absl::StrCat(id, "_justification is not a string"));
    }
    scores[order[k]] = static_cast<int>(v);
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (known.count(it.key()) == 0) return bad(absl::StrCat("unexpected key \"", it.key(), "\""));
  }
  return scores;
}

}  // namespace spar::oracle
