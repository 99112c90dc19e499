// Internal to orchestrator/: the oracle calls of the judge and eval stages, and what their
// failures mean for the job. One Compare or Score call per list of keys, its results checked
// (each index once, in range, all of them) and returned in key order; JudgeFailures reads the
// judgments' status codes (never their text).
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "orchestrator/internal/stage_context.h"
#include "spar/v1/oracle.pb.h"

namespace spar::orchestrator::internal {

// Runs after each result of a call, with how many of how many arrived; its error ends the call.
using OnResult = std::function<absl::Status(size_t received, size_t total)>;

// One Oracle.Compare call judging `keys` (idempotency key `key`, round t's judge scope): the
// judgments in the order of `keys`. Internal for a broken stream (an index twice or out of
// range), UNAVAILABLE when it ended before every judgment came back. No call for no keys.
absl::StatusOr<std::vector<v1::Judgment>> CompareAll(const StageContext& ctx, int t,
                                                     const std::string& key,
                                                     const std::vector<ComparisonKey>& keys,
                                                     const CancelCheck& cancelled,
                                                     const OnResult& on_result);

// The same for side-by-side scoring (Oracle.Score, one item per key); an answered item must
// carry one score per response.
absl::StatusOr<std::vector<v1::ScoreResult>> ScoreAll(const StageContext& ctx, int t,
                                                      const std::string& key,
                                                      const std::vector<ScoreKey>& keys,
                                                      const CancelCheck& cancelled,
                                                      const OnResult& on_result);

// The judge's failures over one stage's distinct judgments (Judgment.code / ScoreResult.code;
// never the error's text). Check() decides what they mean for the job.
class JudgeFailures {
 public:
  void Add(bool ok, int code, const std::string& error);
  // ResourceExhausted (the job pauses; ResumeJob with a raised budget continues) for a spent
  // budget; the refusal's own code (the job fails) for a refused key; FailedPrecondition when
  // more than max_rate of the judgments failed (the round is not done).
  absl::Status Check(double max_rate) const;

 private:
  int total_ = 0;
  int failed_ = 0;
  std::string first_error_;
  bool exhausted_ = false;    // a RESOURCE_EXHAUSTED judgment: a budget or quota is spent
  std::string budget_error_;  // the first one's error
  absl::StatusCode refused_ = absl::StatusCode::kOk;  // UNAUTHENTICATED / PERMISSION_DENIED
  std::string refused_error_;
};

}  // namespace spar::orchestrator::internal
