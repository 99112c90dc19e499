#include "oracle_client/judge_template.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

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

}  // namespace spar::oracle
