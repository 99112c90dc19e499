// The pairwise judge prompt (AlpacaEval-2 style): a system prompt plus one user message showing an
// instruction and two outputs, asking for a one-token verdict "A" or "B".
//
// The user message uses delimited sections ("## Instruction", "## Output A", "## Output B",
// "## Verdict") and escapes content lines that could be mistaken for a section header (a line
// starting with "##" or "\" gets a leading "\"), so ParseJudgeUserMessage recovers the three texts
// exactly. The rule judge server (services/judge) relies on that. Pure functions; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace spar::oracle {

struct ChatMessage {
  std::string role;  // "system" | "user" | "assistant"
  std::string content;
};

// The inputs of one pairwise judgment, as shown to the judge (A first, B second).
struct JudgeInputs {
  std::string instruction;
  std::string output_a;
  std::string output_b;
};

// The verdict tokens the judge is asked to answer with.
inline constexpr char kVerdictTokenA[] = "A";
inline constexpr char kVerdictTokenB[] = "B";

// The fixed system prompt.
const std::string& JudgeSystemPrompt();

// [system, user] messages for one judgment.
std::vector<ChatMessage> RenderJudgePrompt(const std::string& instruction,
                                           const std::string& output_a,
                                           const std::string& output_b);

// Only the user message (what RenderJudgePrompt puts second).
std::string RenderJudgeUserMessage(const std::string& instruction, const std::string& output_a,
                                   const std::string& output_b);

// Inverse of RenderJudgeUserMessage; nullopt when `user_message` was not rendered by it.
std::optional<JudgeInputs> ParseJudgeUserMessage(const std::string& user_message);

// A stable identifier of the template text (changes whenever the wording changes); use it in
// judgment cache keys.
const std::string& JudgeTemplateId();

}  // namespace spar::oracle
