// pairs.jsonl (the orchestrator's pairs stage writes it; StartTrainingRequest.pairs_path names
// it) read into PreferencePairs: one JSON object per line with string "prompt", "chosen" and
// "rejected", optional numbers "p", "chosen_win_rate", "rejected_win_rate" (null = absent) and
// optional booleans "chosen_finished", "rejected_finished" (absent or null = finished).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "trainer/trainer.h"

namespace spar::trainer {

// InvalidArgument "<source_field>: line N: field \"x\" ..." for a row with a missing or mistyped
// field; ReadJsonl's errors for an unreadable file or a malformed line.
absl::StatusOr<std::vector<PreferencePair>> ReadPairsFile(const std::string& path,
                                                          const std::string& source_field);

}  // namespace spar::trainer
