// Side-by-side 6-point scoring (DNO-Prct, ALGORITHMS.md §2 and §8): one judge call per prompt
// shows every candidate (the K samples and the teacher) at once, in a shuffled order under ids
// id1..idN, and asks for JSON with a short justification and an additive 6-point score per id
// ({"id1_justification": "...", "id1_score": 4, ...}). The parse is strict: every id's score must
// be an integer in [0, 6], nothing else may appear; an answer that breaks any rule is a recorded
// failure, never a guess. Pure functions; thread-safe.
//
// OracleClient::ScoreSideBySide asks the judge with this template (Oracle.Score over gRPC); the
// orchestrator's DNO recipe with pairs.scoring = "side_by_side" turns the scores into pairs with
// DnoScoreOptions (orchestrator/dno.h: gate 5, margins 2 for the teacher and 1 for the model's own
// samples).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "oracle_client/judge_template.h"

namespace spar::oracle {

// Stable identifier of the side-by-side template text (part of cache keys).
inline constexpr char kSideBySideTemplateId[] = "spar-side-by-side-v1";

// The system prompt: the additive 6-point rubric and the answer format.
const std::string& SideBySideSystemPrompt();

// The presentation order of `n` candidates: order[k] is the candidate shown as id{k+1}. A
// deterministic shuffle keyed by `seed` (e.g. a hash of the prompt), so a retried call shows the
// same order.
std::vector<int> SideBySideOrder(int n, uint64_t seed);

// [system, user]: the instruction, then each candidate under "## id<k>" in `order`. Content lines
// that could be mistaken for a section header are escaped as in the pairwise template.
std::vector<ChatMessage> RenderSideBySide(const std::string& instruction,
                                          const std::vector<std::string>& candidates,
                                          const std::vector<int>& order);

// The inverse of RenderSideBySide's user message (for judges such as spar-judge): the instruction
// and the candidates in presentation order (id1, id2, ...), unescaped; nullopt when `user_message`
// does not follow the template.
struct SideBySideInputs {
  std::string instruction;
  std::vector<std::string> outputs;
};
std::optional<SideBySideInputs> ParseSideBySideUserMessage(const std::string& user_message);

// The judge's answer -> one score per candidate (un-shuffled: scores[i] is candidate i's). The
// answer must be one JSON object (optionally inside a ```json fence) with exactly the keys
// id<k>_score (integer 0..6) and optionally id<k>_justification (string) for k = 1..N.
// InvalidArgument naming the problem otherwise.
absl::StatusOr<std::vector<int>> ParseSideBySideScores(const std::string& answer,
                                                       const std::vector<int>& order);

}  // namespace spar::oracle
