// Internal to oracle_client: the client's metric families (registered once, in
// OracleClient::Create) and its running totals behind OracleClient::GetUsage.
#pragma once

#include <atomic>
#include <cstdint>

#include "common/metrics/registry.h"

namespace spar::oracle::internal {

// Metric families and their pre-created children.
struct OracleMetrics {
  metrics::Counter& code_200;
  metrics::Counter& code_400;
  metrics::Counter& code_401;
  metrics::Counter& code_408;
  metrics::Counter& code_429;
  metrics::Counter& code_500;
  metrics::Counter& code_503;
  metrics::Counter& code_other;
  metrics::Counter& code_error;  // no HTTP response (connection error, timeout)
  metrics::Histogram& latency;
  metrics::Counter& retries;
  metrics::Gauge& in_flight;
  metrics::Counter& judgments_ok;
  metrics::Counter& judgments_failed;
  metrics::Counter& side_by_side_ok;
  metrics::Counter& side_by_side_failed;
  metrics::Counter& prompt_tokens;
  metrics::Counter& completion_tokens;
  metrics::Counter& cache_hits;
  metrics::Counter& cache_misses;
  metrics::Counter& cost;
  metrics::Counter& budget_exhausted;
  metrics::Counter& rate_limit_wait;
  metrics::Counter& single_flight_shared;
  metrics::Gauge& swap_consistency;
  metrics::Gauge& budget_remaining;
  // Per job (label job): what the job has spent on the judge, all rounds, durable across restarts
  // when there is a cache file. One child per job seen by this process.
  metrics::Family<metrics::Gauge>& job_calls;
  metrics::Family<metrics::Gauge>& job_tokens;
  metrics::Family<metrics::Gauge>& job_cost;

  static OracleMetrics Register(metrics::Registry& r);

  // The spar_oracle_http_requests_total child of HTTP status `code` (0: no response).
  metrics::Counter& ForCode(int code);
};

// What this client has done since it was created (OracleClient::Usage), updated lock-free from
// every request thread.
struct ClientCounters {
  std::atomic<int64_t> calls{0}, retries{0}, failures{0}, prompt_tokens{0}, completion_tokens{0};
  std::atomic<int64_t> cache_hits{0}, cache_misses{0}, swap_judgments{0}, swap_consistent{0};
  std::atomic<int64_t> shared{0};
};

}  // namespace spar::oracle::internal
