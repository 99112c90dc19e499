#include "oracle_client/internal/oracle_metrics.h"

namespace spar::oracle::internal {

OracleMetrics OracleMetrics::Register(metrics::Registry& r) {
  auto& codes = r.AddCounter("spar_oracle_http_requests_total",
                             "HTTP requests to the judge, by response status code.");
  auto& judgments = r.AddCounter("spar_oracle_judgments_total",
                                 "Pairwise judgments completed, by result (ok|failed).");
  auto& sbs = r.AddCounter("spar_oracle_side_by_side_scores_total",
                           "Side-by-side score requests completed, by result (ok|failed).");
  return OracleMetrics{
      codes.Add({{"code", "200"}}),
      codes.Add({{"code", "400"}}),
      codes.Add({{"code", "401"}}),
      codes.Add({{"code", "408"}}),
      codes.Add({{"code", "429"}}),
      codes.Add({{"code", "500"}}),
      codes.Add({{"code", "503"}}),
      codes.Add({{"code", "other"}}),
      codes.Add({{"code", "error"}}),
      r.AddHistogram("spar_oracle_http_latency_seconds", "Latency of one judge HTTP request.",
                     metrics::ExponentialBuckets(0.005, 2.0, 14))
          .Add({}),
      r.AddCounter("spar_oracle_retries_total", "Judge HTTP requests that were retries.").Add({}),
      r.AddGauge("spar_oracle_in_flight_requests", "Judge HTTP requests in flight.").Add({}),
      judgments.Add({{"result", "ok"}}),
      judgments.Add({{"result", "failed"}}),
      sbs.Add({{"result", "ok"}}),
      sbs.Add({{"result", "failed"}}),
      r.AddCounter("spar_oracle_prompt_tokens_total", "Prompt tokens reported by the judge.")
          .Add({}),
      r.AddCounter("spar_oracle_completion_tokens_total",
                   "Completion tokens reported by the judge.")
          .Add({}),
      r.AddCounter("spar_oracle_cache_hits_total",
                   "Judge answers (one presentation order or score) served from the cache.")
          .Add({}),
      r.AddCounter("spar_oracle_cache_misses_total",
                   "Judge answers looked up in the cache and not found.")
          .Add({}),
      r.AddCounter("spar_oracle_cost_usd_total",
                   "Judge cost in US dollars, from reported tokens and configured prices.")
          .Add({}),
      r.AddCounter("spar_oracle_budget_exhausted_total",
                   "Judge requests refused because the budget would be exceeded.")
          .Add({}),
      r.AddCounter("spar_oracle_rate_limit_wait_seconds_total",
                   "Time judge requests waited for the client-side rate limiter.")
          .Add({}),
      r.AddCounter("spar_oracle_single_flight_shared_total",
                   "Judge answers shared with an identical request already in flight.")
          .Add({}),
      r.AddGauge("spar_oracle_swap_consistency_ratio",
                 "Fraction of both-order judgments whose verdicts agree after un-swapping.")
          .Add({}),
      r.AddGauge("spar_oracle_budget_remaining_ratio",
                 "Smallest remaining share of the configured call/token/cost budgets (1 = none).")
          .Add({}),
      r.AddGauge("spar_oracle_job_calls",
                 "Judge HTTP requests charged to a job (all rounds), by job."),
      r.AddGauge("spar_oracle_job_tokens",
                 "Judge prompt + completion tokens charged to a job (all rounds), by job."),
      r.AddGauge("spar_oracle_job_cost_usd",
                 "Judge cost in US dollars charged to a job (all rounds), by job."),
  };
}

metrics::Counter& OracleMetrics::ForCode(int code) {
  switch (code) {
    case 0:
      return code_error;
    case 200:
      return code_200;
    case 400:
      return code_400;
    case 401:
      return code_401;
    case 408:
      return code_408;
    case 429:
      return code_429;
    case 500:
      return code_500;
    case 503:
      return code_503;
    default:
      return code_other;
  }
}

}  // namespace spar::oracle::internal
