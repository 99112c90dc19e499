// The pairwise judge prompt (AlpacaEval-2 style): a system prompt plus one user message showing an
// instruction and two outputs, asking for a one-token verdict "A" or "B".
//
// The user message uses delimited sections ("## Instruction", "## Output A", "## Output B",
// "## Verdict") and escapes content lines that could be mistaken for a section header (a line
// starting with "##" or "\" gets a leading "\"), so ParseJudgeUserMessage recovers the three texts
// exactly. The rule judge server (services/judge) relies on that. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

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

// ---- Templates as values: built-in pairwise/pointwise and custom files. ----------------------

enum class TemplateKind { kPairwise, kPointwise };

struct JudgeTemplate {
  TemplateKind kind = TemplateKind::kPairwise;
  // Stable identifier, part of every judgment-cache key. Custom templates get
  // "<file id>@<first 12 hex digits of SHA-256(kind, system, user)>", so editing the text without
  // bumping the id still invalidates cached answers.
  std::string id;
  std::string system_prompt;
  // The user message with named placeholders: {instruction}, {output_a}, {output_b} (pairwise) or
  // {instruction}, {output} (pointwise). "" = the built-in delimited rendering, which the
  // reference judge server can parse back.
  std::string user_template;
};

// The built-in templates (ids "spar-pairwise-v1" and "spar-pointwise-v1").
const JudgeTemplate& DefaultPairwiseTemplate();
const JudgeTemplate& DefaultPointwiseTemplate();

// A template file: {"id": "...", "kind": "pairwise"|"pointwise", "system": "...", "user": "..."}.
// Unknown keys, a missing required placeholder, or an unknown placeholder ({name} with name made
// of [a-z_]) are InvalidArgument naming `what` and the problem. Other braces are literal text.
// Placeholders are substituted in one pass: content is never rescanned, so a response containing
// "{output_b}" stays literal.
absl::StatusOr<JudgeTemplate> ParseJudgeTemplate(const nlohmann::json& json,
                                                 const std::string& what);
// ReadJsonFile + ParseJudgeTemplate; NotFound/InvalidArgument name the path.
absl::StatusOr<JudgeTemplate> LoadJudgeTemplate(const std::string& path);

// [system, user] for a pairwise template (kind must be kPairwise).
std::vector<ChatMessage> RenderPairwise(const JudgeTemplate& t, const std::string& instruction,
                                        const std::string& output_a, const std::string& output_b);
// [system, user] for a pointwise template (kind must be kPointwise).
std::vector<ChatMessage> RenderPointwise(const JudgeTemplate& t, const std::string& instruction,
                                         const std::string& output);

// The built-in pointwise user message ("## Instruction", "## Output", "## Score" sections, escaped
// like the pairwise one) and its inverse.
std::string RenderPointwiseUserMessage(const std::string& instruction, const std::string& output);
struct PointwiseInputs {
  std::string instruction;
  std::string output;
};
std::optional<PointwiseInputs> ParsePointwiseUserMessage(const std::string& user_message);

// Token estimate used for rate limits and truncation: ceil(bytes / 4), the usual rule of thumb
// for BPE tokenizers on English text (the judge's own tokenizer is not available client-side).
int64_t EstimateTokens(absl::string_view text);

// `text` cut to at most `max_tokens` estimated tokens (4 * max_tokens bytes), never inside a
// UTF-8 sequence; unchanged when it fits or when max_tokens <= 0.
std::string TruncateToTokens(const std::string& text, int max_tokens);

}  // namespace spar::oracle
