// Internal to oracle_client: the judge budgets. Every request reserves its estimated usage
// (prompt estimate + max_tokens, priced) against the process's limits (oracle.budget_*) and, with
// a JobScope, its job's and round's limits (JobBudget) before it is sent; a Reservation is then
// committed with what the judge reported, or released (on destruction) when no request went
// out. Per-job accounts are loaded from the judgment cache's SQLite file on first use and kept in
// step with what the client writes there (in memory only without a cache). Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "oracle_client/internal/oracle_metrics.h"
#include "oracle_client/judge_usage.h"
#include "oracle_client/judgment_cache.h"
#include "oracle_client/oracle_client.h"
#include "oracle_client/oracle_config.h"

namespace spar::oracle::internal {

// A spent budget: ResourceExhausted carrying a "budget" payload, so that callers tell it from a
// provider's quota refusal (also ResourceExhausted) by the status, not its text.
absl::Status BudgetRefusal(absl::string_view message);
bool IsBudgetRefusal(const absl::Status& status);

class BudgetLedger {
 public:
  // One request's reserved budget. Move-only; released when destroyed uncommitted.
  class Reservation {
   public:
    Reservation(Reservation&& other) noexcept;
    Reservation& operator=(Reservation&& other) noexcept;
    Reservation(const Reservation&) = delete;
    Reservation& operator=(const Reservation&) = delete;
    ~Reservation() { Release(); }

    // The request went out and the judge reported (`prompt`, `completion`) tokens (0/0 when it
    // did not say): the reservation becomes spending. Returns the request's charge for the job's
    // durable account (job_id "" without a scope).
    UsageCharge Commit(int64_t prompt, int64_t completion);
    // No request went out: the reservation is dropped. No-op once committed or released.
    void Release();

   private:
    friend class BudgetLedger;
    Reservation(BudgetLedger* ledger, const JudgeUsage& estimate, const JobScope* scope)
        : ledger_(ledger), estimate_(estimate), scope_(scope) {}
    BudgetLedger* ledger_;  // null once committed or released
    JudgeUsage estimate_;
    const JobScope* scope_;
  };

  // `cache` (may be null) holds the durable job accounts; `metrics` must outlive the ledger.
  BudgetLedger(const OracleConfig& config, JudgmentCache* cache, OracleMetrics* metrics);

  // Reserves one request estimated at (`prompt_estimate`, `max_tokens`) against the process's
  // budget and, with a scope, its job's and round's; ResourceExhausted("budget: ...") when it
  // would exceed a limit, Unavailable when the job's account cannot be read.
  absl::StatusOr<Reservation> Reserve(int64_t prompt_estimate, int max_tokens,
                                      const JobScope* scope);

  // Dollars spent by this process's requests.
  double CostSpent() const;
  // What `job_id` has spent (all rounds, or only `round`): the durable account with a cache,
  // else what this ledger has seen.
  absl::StatusOr<JudgeUsage> JobSpent(const std::string& job_id, std::optional<int> round) const;

 private:
  // A job's spending and reservations, in total and per round.
  struct JobAccount {
    JudgeUsage total;
    JudgeUsage total_reserved;
    std::map<int, JudgeUsage> rounds;
    std::map<int, JudgeUsage> rounds_reserved;
    metrics::Gauge* calls_gauge = nullptr;
    metrics::Gauge* tokens_gauge = nullptr;
    metrics::Gauge* cost_gauge = nullptr;
  };

  double Price(int64_t prompt, int64_t completion) const;
  absl::Status CheckProcessLocked(const JudgeUsage& estimate) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<JobAccount*> AccountLocked(const std::string& job_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  double RemainingRatioLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  UsageCharge Settle(const JudgeUsage& estimate, const JobScope* scope, bool sent, int64_t prompt,
                     int64_t completion);

  const OracleConfig config_;
  JudgmentCache* const cache_;
  OracleMetrics* const metrics_;
  mutable absl::Mutex mu_;
  // Spent (from responses) and reserved (requests in flight, estimated) by this process.
  JudgeUsage spent_ ABSL_GUARDED_BY(mu_);
  JudgeUsage reserved_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, JobAccount> jobs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace spar::oracle::internal
