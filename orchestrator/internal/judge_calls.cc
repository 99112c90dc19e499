#include "orchestrator/internal/judge_calls.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "orchestrator/internal/stream_tally.h"

namespace spar::orchestrator::internal {

absl::StatusOr<std::vector<v1::Judgment>> CompareAll(const StageContext& ctx, int t,
                                                     const std::string& key,
                                                     const std::vector<ComparisonKey>& keys,
                                                     const CancelCheck& cancelled,
                                                     const OnResult& on_result) {
  std::vector<v1::Judgment> out(keys.size());
  if (keys.empty()) return out;
  v1::CompareRequest req;
  req.set_idempotency_key(key);
  ctx.SetJudgeScope(t, &req);
  for (const ComparisonKey& k : keys) {
    v1::Comparison* c = req.add_comparisons();
    c->set_prompt(std::get<0>(k));
    c->set_response_a(std::get<1>(k));
    c->set_response_b(std::get<2>(k));
  }
  StreamTally tally(keys.size(), "oracle");
  SPAR_RETURN_IF_ERROR(ctx.ports().oracle->Compare(
      req,
      [&](const v1::Judgment& jd) {
        SPAR_RETURN_IF_ERROR(tally.Receive(jd.index()));
        out[jd.index()] = jd;
        return on_result(tally.received(), tally.expected());
      },
      cancelled));
  SPAR_RETURN_IF_ERROR(tally.CheckWhole("judgments"));
  return out;
}

absl::StatusOr<std::vector<v1::ScoreResult>> ScoreAll(const StageContext& ctx, int t,
                                                      const std::string& key,
                                                      const std::vector<ScoreKey>& keys,
                                                      const CancelCheck& cancelled,
                                                      const OnResult& on_result) {
  std::vector<v1::ScoreResult> out(keys.size());
  if (keys.empty()) return out;
  v1::ScoreRequest req;
  req.set_idempotency_key(key);
  ctx.SetJudgeScope(t, &req);
  for (const ScoreKey& k : keys) {
    v1::ScoreItem* item = req.add_items();
    item->set_prompt(k.first);
    for (const std::string& text : k.second) item->add_responses(text);
  }
  StreamTally tally(keys.size(), "oracle", "score index");
  SPAR_RETURN_IF_ERROR(ctx.ports().oracle->Score(
      req,
      [&](const v1::ScoreResult& r) {
        SPAR_RETURN_IF_ERROR(tally.Receive(r.index()));
        const size_t shown = keys[r.index()].second.size();
        if (r.ok() && r.scores_size() != static_cast<int>(shown)) {
          return absl::InternalError(absl::StrCat("oracle returned ", r.scores_size(),
                                                  " scores for ", shown, " responses"));
        }
        out[r.index()] = r;
        return on_result(tally.received(), tally.expected());
      },
      cancelled));
  SPAR_RETURN_IF_ERROR(tally.CheckWhole("score results"));
  return out;
}

void JudgeFailures::Add(bool ok, int code, const std::string& error) {
  ++total_;
  if (ok) return;
  ++failed_;
  if (first_error_.empty()) first_error_ = error;
  const auto c = static_cast<absl::StatusCode>(code);
  if (c == absl::StatusCode::kResourceExhausted && !exhausted_) {
    exhausted_ = true;
    budget_error_ = error;
  }
  if ((c == absl::StatusCode::kUnauthenticated || c == absl::StatusCode::kPermissionDenied) &&
      refused_ == absl::StatusCode::kOk) {
    refused_ = c;
    refused_error_ = error;
  }
}

absl::Status JudgeFailures::Check(double max_rate) const {
  if (exhausted_) {
    return absl::ResourceExhaustedError(absl::StrCat("judge: ", budget_error_));
  }
  if (refused_ != absl::StatusCode::kOk) {
    return absl::Status(refused_, absl::StrCat("the judge refused the API key (HTTP 401/403): ",
                                               refused_error_, "; fix the key, then ResumeJob"));
  }
  if (total_ == 0 || failed_ <= max_rate * total_) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrFormat(
      "%d of %d judgments failed (%.1f%%, above judge.max_failure_rate %.1f%%); first error: %s; "
      "ResumeJob once the judge is fixed re-asks only the failed ones",
      failed_, total_, 100.0 * failed_ / total_, 100.0 * max_rate, first_error_));
}

}  // namespace spar::orchestrator::internal
