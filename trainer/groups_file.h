// groups.jsonl (the orchestrator's pairs stage writes it for the listwise recipes brain and rrhf;
// StartTrainingRequest.groups_path names it) read into ListwiseGroups: one JSON object per line
// with string "prompt" and array "responses" of objects with string "text", number "reward",
// optional number "proposal_logprob" (null = absent) and optional boolean "finished" (absent or
// null = finished). Other keys (source_index, source_round) are ignored.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "trainer/trainer.h"

namespace spar::trainer {

// InvalidArgument "<source_field>: line N: field \"responses[k].x\" ..." for a row with a missing
// or mistyped field; ReadJsonl's errors for an unreadable file or a malformed line. The values
// themselves are checked by TrainListwise.
absl::StatusOr<std::vector<ListwiseGroup>> ReadGroupsFile(const std::string& path,
                                                          const std::string& source_field);

}  // namespace spar::trainer
