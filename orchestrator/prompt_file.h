// A job's prompts file (prompts.path, eval_prompts.path): JSONL, one {"prompt": "...",
// "gold": "..."?} object per line, in UTF-8. One reader for CreateJob's check and the sample and
// eval stages, so a file is refused before anything is paid for and read the same way after.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace spar::orchestrator {

struct PromptRow {
  std::string prompt;
  std::optional<std::string> gold;  // the reference answer, when the line has one
};

// The rows of the file at `path` (already resolved and confined). InvalidArgument naming
// `field`, the file and the line for anything else: not UTF-8 (a Latin-1 file; the first bad
// byte's value and column are named, never the bytes themselves), not JSON, no "prompt" string,
// no rows at all. NotFound / PermissionDenied when it cannot be read.
absl::StatusOr<std::vector<PromptRow>> ReadPromptFile(const std::string& path,
                                                      const std::string& field);

}  // namespace spar::orchestrator
