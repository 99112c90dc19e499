// Job specs: parsing from the proto JSON mapping (unknown fields rejected), defaults, and
// validation with INVALID_ARGUMENT messages that name the field ("spec.sampling.num_samples ...").
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "spar/v1/orchestrator.pb.h"

namespace spar::orchestrator {

// Limits on a spec's counts (docs/job-spec.md, "Limits"): what one run can hold. The trainer's
// own limits (epochs, batch_size, ...) are trainer/train_config.h's.
inline constexpr int kMaxRounds = 1000;
inline constexpr int kMaxPromptsPerRound = 100000;
inline constexpr int kMaxSamplesPerPrompt = 64;
inline constexpr int64_t kMaxSamplesPerRound = 1 << 18;          // prompts_per_round * K
inline constexpr int64_t kMaxTokensPerRound = int64_t{1} << 27;  // ... * sampling.max_new_tokens
inline constexpr int kMaxNewTokens = 4096;
inline constexpr int kMaxEvalPrompts = 100000;
// A checkpoint's context when its config.json has no max_position_embeddings (LlamaConfig's).
inline constexpr int64_t kDefaultContextLength = 64;
// JudgePolicy.max_failure_rate when unset.
inline constexpr double kDefaultJudgeMaxFailureRate = 0.2;

// Parses a job spec file's text (JobSpec in the proto JSON mapping).
absl::StatusOr<v1::JobSpec> ParseJobSpecJson(const std::string& text);

// Fills every unset field with its default (see docs/job-spec.md); set fields are kept.
// `prompts_carry_gold`: every training prompt has a gold answer (the built-in task; a prompts
// file whose every line has "gold"), so dno's paper recipe takes the teacher. The one-argument
// form assumes so for the built-in task and not for a file.
v1::JobSpec WithDefaults(const v1::JobSpec& spec, bool prompts_carry_gold);
v1::JobSpec WithDefaults(const v1::JobSpec& spec);

// Whether every line of the spec's prompts file carries "gold" (true for the built-in task;
// false for a file that cannot be read, which ValidateJobSpec then refuses).
bool PromptsCarryGold(const v1::JobSpec& spec, const std::string& data_root);

// True when the spec names a validation split (validation_prompts), where the best round is
// chosen.
bool HasValidation(const v1::JobSpec& spec);

// Checks a spec that went through WithDefaults, whole, before anything is paid for: paths must
// exist and, when data_root is not empty, resolve inside it (no "..", no symlink escape); counts
// are within the limits above; every round's training settings (per-round overrides merged) pass
// the trainer's own rules (trainer::Validate); sampled, evaluated and trained sequences fit the
// base model's context. InvalidArgument naming the field ("spec.training.weight_decay ...").
absl::Status ValidateJobSpec(const v1::JobSpec& spec, const std::string& data_root);

// The context length (max_position_embeddings) of the checkpoint in `checkpoint_dir`, from its
// config.json; kDefaultContextLength when the key is absent.
absl::StatusOr<int64_t> ModelContextLength(const std::string& checkpoint_dir);

// InvalidArgument "<field>.<limit> must be >= 0 ..." for a negative limit (0 = unlimited). Used
// for spec.judge_budget and for the budget a ResumeJob request raises it to.
absl::Status ValidateJudgeBudget(const v1::JudgeBudget& budget, const std::string& field);

// Resolves `path` (relative paths are taken relative to data_root when it is set) and checks it
// stays inside data_root. Returns the absolute path.
absl::StatusOr<std::string> ResolveDataPath(const std::string& path, const std::string& data_root,
                                            const std::string& field);

}  // namespace spar::orchestrator
