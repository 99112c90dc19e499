// Reads a job spec file (`spar submit FILE`): the JobSpec in the proto JSON mapping. Errors name
// the file and the position (line, column) or the field, and never echo the file's contents: a
// spec file may sit next to secrets, or carry one by mistake.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "spar/v1/orchestrator.pb.h"

namespace spar::cli {

// Parses `text`, read from `path` (used in messages only). InvalidArgument "PATH: line L,
// column C: not valid JSON" or "PATH: does not match JobSpec: <what, values redacted>".
absl::StatusOr<v1::JobSpec> ParseJobSpecFile(const std::string& path, const std::string& text);

}  // namespace spar::cli
