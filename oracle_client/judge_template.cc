#include "oracle_client/judge_template.h"

#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace spar::oracle {
namespace {

constexpr absl::string_view kPreamble =
    "Compare the two outputs below, written in response to the instruction. Decide which output "
    "follows the instruction better: judge correctness first, then helpfulness and precision. "
    "Do not let the order of the outputs or their length influence you.";
constexpr absl::string_view kInstructionHeader = "## Instruction\n";
constexpr absl::string_view kOutputAHeader = "\n\n## Output A\n";
constexpr absl::string_view kOutputBHeader = "\n\n## Output B\n";
constexpr absl::string_view kVerdictHeader = "\n\n## Verdict\n";
constexpr absl::string_view kVerdictInstruction =
    "Answer with exactly one character: \"A\" if Output A is better, \"B\" if Output B is better.";

// A line starting with "##" (could look like a section header) or "\" (the escape itself) gets a
// leading "\"; every other line is unchanged. Reversible line by line.
bool NeedsEscape(absl::string_view line) {
  return (!line.empty() && line[0] == '\\') ||
         (line.size() >= 2 && line[0] == '#' && line[1] == '#');
}

std::string Escape(const std::string& text) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  for (std::string& line : lines) {
    if (NeedsEscape(line)) line.insert(0, 1, '\\');
  }
  return absl::StrJoin(lines, "\n");
}

std::optional<std::string> Unescape(absl::string_view text) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  for (std::string& line : lines) {
    if (line.size() >= 2 && line[0] == '#' && line[1] == '#') return std::nullopt;  // not ours
    if (!line.empty() && line[0] == '\\') line.erase(0, 1);
  }
  return absl::StrJoin(lines, "\n");
}

// Reads the section starting at `*pos` up to `delimiter` (the first occurrence: escaped content
// cannot contain a delimiter, which always starts a line with "##").
std::optional<std::string> ReadSection(absl::string_view text, size_t* pos,
                                       absl::string_view delimiter) {
  size_t end = text.find(delimiter, *pos);
  if (end == absl::string_view::npos) return std::nullopt;
  std::optional<std::string> content = Unescape(text.substr(*pos, end - *pos));
  *pos = end + delimiter.size();
  return content;
}

}  // namespace

const std::string& JudgeSystemPrompt() {
  static const std::string* prompt = new std::string(
      "You are a careful, impartial judge of answers written by AI assistants. You are shown an "
      "instruction and two outputs, A and B. Reply with a single character: A or B, naming the "
      "better output. Do not explain.");
  return *prompt;
}

std::string RenderJudgeUserMessage(const std::string& instruction, const std::string& output_a,
                                   const std::string& output_b) {
  return absl::StrCat(kPreamble, "\n\n", kInstructionHeader, Escape(instruction), kOutputAHeader,
                      Escape(output_a), kOutputBHeader, Escape(output_b), kVerdictHeader,
                      kVerdictInstruction);
}

std::vector<ChatMessage> RenderJudgePrompt(const std::string& instruction,
                                           const std::string& output_a,
                                           const std::string& output_b) {
  return {ChatMessage{"system", JudgeSystemPrompt()},
          ChatMessage{"user", RenderJudgeUserMessage(instruction, output_a, output_b)}};
}

std::optional<JudgeInputs> ParseJudgeUserMessage(const std::string& user_message) {
  absl::string_view text(user_message);
  const std::string head = absl::StrCat(kPreamble, "\n\n", kInstructionHeader);
  const std::string tail = absl::StrCat(kVerdictHeader, kVerdictInstruction);
  if (text.size() < head.size() + tail.size() || text.substr(0, head.size()) != head ||
      text.substr(text.size() - tail.size()) != tail) {
    return std::nullopt;
  }
  // Drop the fixed tail so that the last section ends exactly at the verdict header.
  absl::string_view body = text.substr(0, text.size() - tail.size() + kVerdictHeader.size());
  size_t pos = head.size();
  JudgeInputs in;
  std::optional<std::string> s = ReadSection(body, &pos, kOutputAHeader);
  if (!s) return std::nullopt;
  in.instruction = *std::move(s);
  s = ReadSection(body, &pos, kOutputBHeader);
  if (!s) return std::nullopt;
  in.output_a = *std::move(s);
  s = ReadSection(body, &pos, kVerdictHeader);
  if (!s || pos != body.size()) return std::nullopt;
  in.output_b = *std::move(s);
  return in;
}

const std::string& JudgeTemplateId() {
  static const std::string* id = new std::string("spar-pairwise-v1");
  return *id;
}

namespace {

constexpr absl::string_view kPointPreamble =
    "Rate the output below, written in response to the instruction: judge correctness first, then "
    "helpfulness and precision. Do not let its length influence you.";
constexpr absl::string_view kPointOutputHeader = "\n\n## Output\n";
constexpr absl::string_view kScoreHeader = "\n\n## Score\n";
constexpr absl::string_view kScoreInstruction =
    "Answer with a single integer from 1 (worst) to 10 (best).";

// Substitutes {name} placeholders from `values` in one pass; unknown names are left as they are
// (ParseJudgeTemplate rejected them already).
std::string Substitute(const std::string& tmpl,
                       const std::map<std::string, const std::string*>& values) {
  std::string out;
  out.reserve(tmpl.size());
  size_t i = 0;
  while (i < tmpl.size()) {
    if (tmpl[i] == '{') {
      size_t close = tmpl.find('}', i + 1);
      if (close != std::string::npos) {
        auto it = values.find(tmpl.substr(i + 1, close - i - 1));
        if (it != values.end()) {
          out += *it->second;
          i = close + 1;
          continue;
        }
      }
    }
    out.push_back(tmpl[i++]);
  }
  return out;
}

// Every {name} with name in [a-z_]+.
std::set<std::string> Placeholders(const std::string& tmpl) {
  std::set<std::string> out;
  size_t i = 0;
  while ((i = tmpl.find('{', i)) != std::string::npos) {
    size_t j = i + 1;
    while (j < tmpl.size() && ((tmpl[j] >= 'a' && tmpl[j] <= 'z') || tmpl[j] == '_')) ++j;
    if (j < tmpl.size() && tmpl[j] == '}' && j > i + 1) out.insert(tmpl.substr(i + 1, j - i - 1));
    i = j;
  }
  return out;
}

}  // namespace

const JudgeTemplate& DefaultPairwiseTemplate() {
  static const JudgeTemplate* t =
      new JudgeTemplate{TemplateKind::kPairwise, JudgeTemplateId(), JudgeSystemPrompt(), ""};
  return *t;
}

const JudgeTemplate& DefaultPointwiseTemplate() {
  static const JudgeTemplate* t = new JudgeTemplate{
      TemplateKind::kPointwise, "spar-pointwise-v1",
      "You are a careful, impartial judge of answers written by AI assistants. You are shown an "
      "instruction and one output. Reply with a single integer from 1 to 10 rating the output. "
      "Do not explain.",
      ""};
  return *t;
}

absl::StatusOr<JudgeTemplate> ParseJudgeTemplate(const nlohmann::json& json,
                                                 const std::string& what) {
  SPAR_RETURN_IF_ERROR(CheckKnownKeys(json, {"id", "kind", "system", "user"}, what));
  auto str = [&](const char* key, bool required, std::string* out) -> absl::Status {
    auto it = json.find(key);
    if (it == json.end()) {
      return required
                 ? absl::InvalidArgumentError(absl::StrCat(what, ": \"", key, "\" is required"))
                 : absl::OkStatus();
    }
    if (!it->is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": \"", key, "\" must be a string"));
    }
    *out = it->get<std::string>();
    return absl::OkStatus();
  };
  JudgeTemplate t;
  std::string kind = "pairwise", id;
  SPAR_RETURN_IF_ERROR(str("id", true, &id));
  SPAR_RETURN_IF_ERROR(str("kind", false, &kind));
  SPAR_RETURN_IF_ERROR(str("system", false, &t.system_prompt));
  SPAR_RETURN_IF_ERROR(str("user", true, &t.user_template));
  if (id.empty()) return absl::InvalidArgumentError(absl::StrCat(what, ": \"id\" is empty"));
  std::set<std::string> required;
  if (kind == "pairwise") {
    t.kind = TemplateKind::kPairwise;
    required = {"instruction", "output_a", "output_b"};
  } else if (kind == "pointwise") {
    t.kind = TemplateKind::kPointwise;
    required = {"instruction", "output"};
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": \"kind\" must be pairwise or pointwise, got \"", kind, "\""));
  }
  std::set<std::string> found = Placeholders(t.user_template);
  for (const std::string& name : found) {
    if (required.count(name) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": unknown placeholder {", name, "} in \"user\""));
    }
  }
  for (const std::string& name : required) {
    if (found.count(name) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": \"user\" lacks the placeholder {", name, "}"));
    }
  }
  t.id = absl::StrCat(id, "@",
                      Sha256HexOfFields({kind, t.system_prompt, t.user_template}).substr(0, 12));
  return t;
}

absl::StatusOr<JudgeTemplate> LoadJudgeTemplate(const std::string& path) {
  SPAR_ASSIGN_OR_RETURN(nlohmann::json j, ReadJsonFile(path));
  return ParseJudgeTemplate(j, path);
}

std::vector<ChatMessage> RenderPairwise(const JudgeTemplate& t, const std::string& instruction,
                                        const std::string& output_a, const std::string& output_b) {
  std::vector<ChatMessage> out;
  if (!t.system_prompt.empty()) out.push_back({"system", t.system_prompt});
  if (t.user_template.empty()) {
    out.push_back({"user", RenderJudgeUserMessage(instruction, output_a, output_b)});
  } else {
    out.push_back({"user", Substitute(t.user_template, {{"instruction", &instruction},
                                                        {"output_a", &output_a},
                                                        {"output_b", &output_b}})});
  }
  return out;
}

std::vector<ChatMessage> RenderPointwise(const JudgeTemplate& t, const std::string& instruction,
                                         const std::string& output) {
  std::vector<ChatMessage> out;
  if (!t.system_prompt.empty()) out.push_back({"system", t.system_prompt});
  if (t.user_template.empty()) {
    out.push_back({"user", RenderPointwiseUserMessage(instruction, output)});
  } else {
    out.push_back({"user", Substitute(t.user_template,
                                      {{"instruction", &instruction}, {"output", &output}})});
  }
  return out;
}

std::string RenderPointwiseUserMessage(const std::string& instruction, const std::string& output) {
  return absl::StrCat(kPointPreamble, "\n\n", kInstructionHeader, Escape(instruction),
                      kPointOutputHeader, Escape(output), kScoreHeader, kScoreInstruction);
}

std::optional<PointwiseInputs> ParsePointwiseUserMessage(const std::string& user_message) {
  absl::string_view text(user_message);
  const std::string head = absl::StrCat(kPointPreamble, "\n\n", kInstructionHeader);
  const std::string tail = absl::StrCat(kScoreHeader, kScoreInstruction);
  if (text.size() < head.size() + tail.size() || text.substr(0, head.size()) != head ||
      text.substr(text.size() - tail.size()) != tail) {
    return std::nullopt;
  }
  absl::string_view body = text.substr(0, text.size() - tail.size() + kScoreHeader.size());
  size_t pos = head.size();
  PointwiseInputs in;
  std::optional<std::string> s = ReadSection(body, &pos, kPointOutputHeader);
  if (!s) return std::nullopt;
  in.instruction = *std::move(s);
  s = ReadSection(body, &pos, kScoreHeader);
  if (!s || pos != body.size()) return std::nullopt;
  in.output = *std::move(s);
  return in;
}

int64_t EstimateTokens(absl::string_view text) {
  return static_cast<int64_t>((text.size() + 3) / 4);
}

std::string TruncateToTokens(const std::string& text, int max_tokens) {
  if (max_tokens <= 0) return text;
  size_t limit = static_cast<size_t>(max_tokens) * 4;
  if (text.size() <= limit) return text;
  // Back off to the start of a UTF-8 sequence (continuation bytes are 10xxxxxx).
  while (limit > 0 && (static_cast<unsigned char>(text[limit]) & 0xC0) == 0x80) --limit;
  return text.substr(0, limit);
}

}  // namespace spar::oracle
