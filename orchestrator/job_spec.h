// Job specs: parsing from the proto JSON mapping (unknown fields rejected), defaults, and
// validation with INVALID_ARGUMENT messages that name the field ("spec.sampling.num_samples ...").
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "spar/v1/orchestrator.pb.h"

namespace spar::orchestrator {

// Parses a job spec file's text (JobSpec in the proto JSON mapping).
absl::StatusOr<v1::JobSpec> ParseJobSpecJson(const std::string& text);

// Fills every unset field with its default (see docs/job-spec.md); set fields are kept.
v1::JobSpec WithDefaults(const v1::JobSpec& spec);

// Checks a spec that went through WithDefaults. Paths must exist and, when data_root is not
// empty, resolve inside it (no "..", no symlink escape).
absl::Status ValidateJobSpec(const v1::JobSpec& spec, const std::string& data_root);

// InvalidArgument "<field>.<limit> must be >= 0 ..." for a negative limit (0 = unlimited). Used
// for spec.judge_budget and for the budget a ResumeJob request raises it to.
absl::Status ValidateJudgeBudget(const v1::JudgeBudget& budget, const std::string& field);

// Resolves `path` (relative paths are taken relative to data_root when it is set) and checks it
// stays inside data_root. Returns the absolute path.
absl::StatusOr<std::string> ResolveDataPath(const std::string& path, const std::string& data_root,
                                            const std::string& field);

}  // namespace spar::orchestrator
