// Internal to oracle_client: the client's view of the judgment cache (JudgmentCache, optional).
// Looks answers up (counting hits and misses), stores paid answers with their job charge, and
// runs single-flight across processes sharing the cache file: before asking the judge a client
// claims the key's lease, and waits for the answer while another live process holds it. A cache
// error is logged and treated as a miss or a lost write: a broken cache costs money, never
// judgments. Without a cache every lookup misses and every lease is "held". Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "oracle_client/internal/judge_request.h"
#include "oracle_client/internal/oracle_metrics.h"
#include "oracle_client/judgment_cache.h"

namespace spar::oracle::internal {

class AnswerCache {
 public:
  // `cache` may be null (no cache); `request_timeout` (oracle.timeout_s) sizes the leases. None
  // of the pointers is owned; all must outlive this object.
  AnswerCache(JudgmentCache* cache, absl::Duration request_timeout, Clock* clock,
              OracleMetrics* metrics, ClientCounters* counters);

  // True when there is a cache and `spec` has a cache key.
  bool Caches(const AskSpec& spec) const;

  // The stored answer for `spec`, parsed (nullopt when absent, or when a stored side-by-side
  // answer does not parse: it is asked again), counted as a cache hit or miss.
  std::optional<OrderResult> LookUp(const AskSpec& spec);
  // Stores a paid answer and, in the same transaction, its charge to the job's account.
  void Put(const AskSpec& spec, const OrderResult& r, int64_t prompt, int64_t completion,
           const UsageCharge& charge);
  // Writes a request's charge without an answer (a failed or unparsable request).
  void RecordCharge(const UsageCharge& charge);

  // Claims spec.cache_key's lease, or waits (polling, real time) while another process holds
  // it. Returns the answer when the holder stored one, nullopt once this client holds the lease
  // (or the cache failed). Cancelled, or Unavailable once the clock passes `deadline`.
  absl::StatusOr<std::optional<OrderResult>> ClaimOrAwait(const AskSpec& spec, absl::Time deadline,
                                                          const std::function<bool()>& cancelled);
  // Renews this client's lease on spec.cache_key for one request plus `wait`; false when the
  // lease was lost (it expired, e.g. during a long rate-limiter wait, and may have been taken
  // over).
  bool KeepLease(const AskSpec& spec, absl::Duration wait);
  // Drops this client's lease on spec.cache_key.
  void ReleaseLease(const AskSpec& spec);

 private:
  std::optional<OrderResult> Get(const std::string& key, bool count);
  std::optional<OrderResult> LookUp(const AskSpec& spec, bool count);
  absl::Duration LeaseTtl(absl::Duration wait) const;

  JudgmentCache* const cache_;
  const absl::Duration request_timeout_;
  Clock* const clock_;
  OracleMetrics* const metrics_;
  ClientCounters* const counters_;
  // This client's owner id in the cache's lease table: unique per process and client.
  const std::string lease_owner_;
};

}  // namespace spar::oracle::internal
