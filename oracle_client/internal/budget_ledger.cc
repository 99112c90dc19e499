#include "oracle_client/internal/budget_ledger.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace spar::oracle::internal {

constexpr char kBudgetPayload[] = "type.spar.dev/oracle.budget";

absl::Status BudgetRefusal(absl::string_view message) {
  absl::Status st = absl::ResourceExhaustedError(message);
  st.SetPayload(kBudgetPayload, absl::Cord("1"));
  return st;
}

bool IsBudgetRefusal(const absl::Status& status) {
  return absl::IsResourceExhausted(status) && status.GetPayload(kBudgetPayload).has_value();
}

namespace {

void UpdateJobGauges(metrics::Gauge* calls, metrics::Gauge* tokens, metrics::Gauge* cost,
                     const JudgeUsage& total) {
  calls->Set(static_cast<double>(total.calls));
  tokens->Set(static_cast<double>(total.prompt_tokens + total.completion_tokens));
  cost->Set(total.cost_usd);
}

// ResourceExhausted when one more request of `next` (tokens and cost) would exceed a limit of
// `kind` ("max" for the job, "round_max" for the round); OK when every limit is 0 or has room.
absl::Status CheckScope(const JobScope& scope, const char* kind, const JudgeUsage& spent,
                        const JudgeUsage& reserved, int64_t max_calls, int64_t max_tokens,
                        double max_cost, const JudgeUsage& next) {
  const std::string prefix =
      absl::StrCat("budget: job ", scope.job_id, " round ", scope.round, " judge_budget.", kind);
  if (max_calls > 0 && spent.calls + reserved.calls + 1 > max_calls) {
    return BudgetRefusal(absl::StrCat(prefix, "_calls limit ", max_calls, " reached (", spent.calls,
                                      " calls made, ", reserved.calls, " in flight)"));
  }
  const int64_t spent_tokens = spent.tokens();
  if (max_tokens > 0 && spent_tokens + reserved.tokens() + next.tokens() > max_tokens) {
    return BudgetRefusal(absl::StrCat(prefix, "_tokens limit ", max_tokens, " would be exceeded (",
                                      spent_tokens, " spent, ", reserved.tokens(),
                                      " in flight, next request ~", next.tokens(), ")"));
  }
  if (max_cost > 0 && spent.cost_usd + reserved.cost_usd + next.cost_usd > max_cost) {
    return BudgetRefusal(absl::StrFormat(
        "%s_cost_usd limit %.4f would be exceeded (%.4f spent, %.4f in flight, next request "
        "~%.6f)",
        prefix, max_cost, spent.cost_usd, reserved.cost_usd, next.cost_usd));
  }
  return absl::OkStatus();
}

}  // namespace

BudgetLedger::Reservation::Reservation(Reservation&& other) noexcept
    : ledger_(std::exchange(other.ledger_, nullptr)),
      estimate_(other.estimate_),
      scope_(other.scope_) {}

BudgetLedger::Reservation& BudgetLedger::Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    Release();
    ledger_ = std::exchange(other.ledger_, nullptr);
    estimate_ = other.estimate_;
    scope_ = other.scope_;
  }
  return *this;
}

UsageCharge BudgetLedger::Reservation::Commit(int64_t prompt, int64_t completion) {
  BudgetLedger* ledger = std::exchange(ledger_, nullptr);
  if (ledger == nullptr) return UsageCharge{};
  return ledger->Settle(estimate_, scope_, /*sent=*/true, prompt, completion);
}

void BudgetLedger::Reservation::Release() {
  BudgetLedger* ledger = std::exchange(ledger_, nullptr);
  if (ledger != nullptr) ledger->Settle(estimate_, scope_, /*sent=*/false, 0, 0);
}

BudgetLedger::BudgetLedger(const OracleConfig& config, JudgmentCache* cache, OracleMetrics* metrics)
    : config_(config), cache_(cache), metrics_(metrics) {}

double BudgetLedger::Price(int64_t prompt, int64_t completion) const {
  return static_cast<double>(prompt) / 1000.0 * config_.price_prompt_per_1k_usd +
         static_cast<double>(completion) / 1000.0 * config_.price_completion_per_1k_usd;
}

// The account of `job_id`, read from the cache file the first time.
absl::StatusOr<BudgetLedger::JobAccount*> BudgetLedger::AccountLocked(const std::string& job_id) {
  auto it = jobs_.find(job_id);
  if (it != jobs_.end()) return &it->second;
  JobAccount acc;
  if (cache_ != nullptr) {
    absl::StatusOr<std::vector<RoundUsage>> rows = cache_->JobUsage(job_id);
    if (!rows.ok()) {
      return absl::UnavailableError(absl::StrCat("budget: cannot read the usage of job ", job_id,
                                                 ": ", rows.status().message()));
    }
    for (const RoundUsage& r : *rows) {
      acc.rounds[r.round] = r;
      acc.total += r;
    }
  }
  metrics::Labels labels{{"job", job_id}};
  acc.calls_gauge = &metrics_->job_calls.Add(labels);
  acc.tokens_gauge = &metrics_->job_tokens.Add(labels);
  acc.cost_gauge = &metrics_->job_cost.Add(labels);
  JobAccount& out = jobs_.emplace(job_id, std::move(acc)).first->second;
  UpdateJobGauges(out.calls_gauge, out.tokens_gauge, out.cost_gauge, out.total);
  return &out;
}

// ResourceExhausted when one more request of `next` would exceed a process budget.
absl::Status BudgetLedger::CheckProcessLocked(const JudgeUsage& next) const {
  if (config_.budget_calls > 0 && spent_.calls + reserved_.calls + 1 > config_.budget_calls) {
    return BudgetRefusal(absl::StrCat("budget: oracle.budget_calls = ", config_.budget_calls,
                                      " reached (", spent_.calls, " calls made, ", reserved_.calls,
                                      " in flight)"));
  }
  if (config_.budget_tokens > 0 &&
      spent_.tokens() + reserved_.tokens() + next.tokens() > config_.budget_tokens) {
    return BudgetRefusal(absl::StrCat("budget: oracle.budget_tokens = ", config_.budget_tokens,
                                      " would be exceeded (", spent_.tokens(), " spent, ",
                                      reserved_.tokens(), " in flight, next request ~",
                                      next.tokens(), ")"));
  }
  if (config_.budget_cost_usd > 0 &&
      spent_.cost_usd + reserved_.cost_usd + next.cost_usd > config_.budget_cost_usd) {
    return BudgetRefusal(absl::StrFormat(
        "budget: oracle.budget_cost_usd = %.4f would be exceeded (%.4f spent, %.4f in flight, "
        "next request ~%.6f)",
        config_.budget_cost_usd, spent_.cost_usd, reserved_.cost_usd, next.cost_usd));
  }
  return absl::OkStatus();
}

absl::StatusOr<BudgetLedger::Reservation> BudgetLedger::Reserve(int64_t prompt_estimate,
                                                                int max_tokens,
                                                                const JobScope* scope) {
  const JudgeUsage next{1, prompt_estimate, max_tokens, Price(prompt_estimate, max_tokens)};
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    refused = CheckProcessLocked(next);
    JobAccount* acc = nullptr;
    if (refused.ok() && scope != nullptr) {
      SPAR_ASSIGN_OR_RETURN(acc, AccountLocked(scope->job_id));
      const JobBudget& b = scope->budget;
      refused = CheckScope(*scope, "max", acc->total, acc->total_reserved, b.max_calls,
                           b.max_tokens, b.max_cost_usd, next);
      if (refused.ok()) {
        refused = CheckScope(*scope, "round_max", acc->rounds[scope->round],
                             acc->rounds_reserved[scope->round], b.round_max_calls,
                             b.round_max_tokens, b.round_max_cost_usd, next);
      }
    }
    if (refused.ok()) {
      reserved_ += next;
      if (acc != nullptr) {
        acc->total_reserved += next;
        acc->rounds_reserved[scope->round] += next;
      }
      return Reservation(this, next, scope);
    }
  }
  metrics_->budget_exhausted.Increment();
  return refused;
}

// min over configured budgets of 1 - spent/limit, clamped to [0, 1]; 1 when none is set.
double BudgetLedger::RemainingRatioLocked() const {
  double r = 1.0;
  auto take = [&](double spent, double limit) {
    if (limit > 0) r = std::min(r, std::max(0.0, 1.0 - spent / limit));
  };
  take(static_cast<double>(spent_.calls), static_cast<double>(config_.budget_calls));
  take(static_cast<double>(spent_.tokens()), static_cast<double>(config_.budget_tokens));
  take(spent_.cost_usd, config_.budget_cost_usd);
  return r;
}

// Ends a reservation: `sent` = the request went out and the judge reported (`prompt`,
// `completion`) tokens; else it is only released.
UsageCharge BudgetLedger::Settle(const JudgeUsage& estimate, const JobScope* scope, bool sent,
                                 int64_t prompt, int64_t completion) {
  const JudgeUsage actual{1, prompt, completion, sent ? Price(prompt, completion) : 0.0};
  UsageCharge charge;
  {
    absl::MutexLock lock(&mu_);
    reserved_ -= estimate;
    if (sent) {
      spent_ += actual;
      metrics_->budget_remaining.Set(RemainingRatioLocked());
    }
    if (scope != nullptr) {
      JobAccount& acc = jobs_[scope->job_id];  // reserved, so present
      acc.total_reserved -= estimate;
      acc.rounds_reserved[scope->round] -= estimate;
      if (sent) {
        acc.total += actual;
        acc.rounds[scope->round] += actual;
        UpdateJobGauges(acc.calls_gauge, acc.tokens_gauge, acc.cost_gauge, acc.total);
        charge = UsageCharge{scope->job_id, scope->round, actual};
      }
    }
  }
  if (actual.cost_usd > 0) metrics_->cost.Increment(actual.cost_usd);
  return charge;
}

double BudgetLedger::CostSpent() const {
  absl::MutexLock lock(&mu_);
  return spent_.cost_usd;
}

absl::StatusOr<JudgeUsage> BudgetLedger::JobSpent(const std::string& job_id,
                                                  std::optional<int> round) const {
  std::vector<RoundUsage> rows;
  if (cache_ != nullptr) {
    SPAR_ASSIGN_OR_RETURN(rows, cache_->JobUsage(job_id));
  } else {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job_id);
    if (it != jobs_.end()) {
      for (const auto& [r, spent] : it->second.rounds) {
        RoundUsage row;
        static_cast<JudgeUsage&>(row) = spent;
        row.round = r;
        rows.push_back(row);
      }
    }
  }
  JudgeUsage u;
  for (const RoundUsage& r : rows) {
    if (round.has_value() && r.round != *round) continue;
    u += r;
  }
  return u;
}

}  // namespace spar::oracle::internal
