// The run directory layout (ARCHITECTURE.md "The run directory is the source of truth"):
// runs/<job_id>/{job.json, events.jsonl, base_eval.jsonl, iter_NNN/{samples.jsonl,
// judgments.jsonl, pairs.jsonl, train.json, eval.json, checkpoint/, STAGE},
// best -> iter_NNN/checkpoint (the best round's, EvalSpec.select_best)}.
#pragma once

#include <string>

#include "absl/strings/str_format.h"
#include "common/file_util.h"

namespace spar::orchestrator {

// Stages of a round, in order; STAGE holds the last completed one.
inline constexpr const char* kStages[] = {"sample", "judge", "pairs", "train", "eval"};
inline constexpr int kNumStages = 5;

// Index of `stage` in kStages, -1 for "" (nothing done) or unknown.
inline int StageIndex(const std::string& stage) {
  for (int i = 0; i < kNumStages; ++i) {
    if (stage == kStages[i]) return i;
  }
  return -1;
}

class RunDir {
 public:
  explicit RunDir(std::string job_dir) : job_dir_(std::move(job_dir)) {}
  const std::string& job_dir() const { return job_dir_; }
  std::string JobJson() const { return JoinPath(job_dir_, "job.json"); }
  std::string Events() const { return JoinPath(job_dir_, "events.jsonl"); }
  std::string BaseEval() const { return JoinPath(job_dir_, "base_eval.jsonl"); }
  // pi_0's greedy answers on the validation split (EvalSpec.select_best compares rounds there).
  std::string BaseValidation() const { return JoinPath(job_dir_, "base_validation.jsonl"); }
  std::string Round(int t) const { return JoinPath(job_dir_, absl::StrFormat("iter_%03d", t)); }
  std::string Samples(int t) const { return JoinPath(Round(t), "samples.jsonl"); }
  std::string Judgments(int t) const { return JoinPath(Round(t), "judgments.jsonl"); }
  std::string Pairs(int t) const { return JoinPath(Round(t), "pairs.jsonl"); }
  std::string Groups(int t) const { return JoinPath(Round(t), "groups.jsonl"); }  // listwise
  std::string Train(int t) const { return JoinPath(Round(t), "train.json"); }
  std::string Eval(int t) const { return JoinPath(Round(t), "eval.json"); }
  std::string ValidationAnswers(int t) const {
    return JoinPath(Round(t), "validation_answers.jsonl");
  }
  std::string Checkpoint(int t) const { return JoinPath(Round(t), "checkpoint"); }
  std::string Stage(int t) const { return JoinPath(Round(t), "STAGE"); }
  // The symlink to the best round's checkpoint, and its target relative to the job directory.
  std::string Best() const { return JoinPath(job_dir_, "best"); }
  static std::string CheckpointInJobDir(int t) {
    return absl::StrFormat("iter_%03d/checkpoint", t);
  }

 private:
  std::string job_dir_;
};

}  // namespace spar::orchestrator
