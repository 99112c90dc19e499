// Internal to oracle_client: the judge's HTTP connections. A fixed pool of oracle.max_concurrency
// keep-alive cpp-httplib clients (a caller waits for a free one), each request cut off at its
// total deadline by a RequestWatchdog, every exchange counted in the client's metrics. httplib
// stays in http_pool.cc. Thread-safe.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "oracle_client/internal/http_policy.h"
#include "oracle_client/internal/oracle_metrics.h"
#include "oracle_client/internal/request_watchdog.h"
#include "oracle_client/oracle_config.h"

namespace httplib {
class Client;
}  // namespace httplib

namespace spar::oracle::internal {

// One HTTP exchange.
struct HttpResult {
  int status = 0;            // 0: no response
  std::string error_text;    // no response: httplib's name of the error
  bool tls_failure = false;  // no response: TLS server verification or loading certificates
  std::string body;
  std::string retry_after_ms;
  std::string retry_after;
  std::string x_should_retry;
  std::string request_id;
  bool cut = false;  // stopped at its total deadline (oracle.timeout_s)
  std::string remaining_requests, reset_requests, remaining_tokens, reset_tokens;

  bool ok() const { return status >= 200 && status < 300; }
};

class HttpPool {
 public:
  // The most an answer's body may hold; a longer one is cut off and the exchange fails (no
  // response, error_text naming the limit).
  static constexpr size_t kMaxResponseBytes = size_t{8} << 20;

  // config.max_concurrency clients for `base` (config.timeout as connect/read/write timeout,
  // config.api_key as bearer token). `metrics` and `counters` must outlive the pool.
  HttpPool(const BaseUrl& base, const OracleConfig& config, OracleMetrics* metrics,
           ClientCounters* counters);
  ~HttpPool();
  HttpPool(const HttpPool&) = delete;
  HttpPool& operator=(const HttpPool&) = delete;

  // POSTs `body` to {base_url}/chat/completions (a reward model: {base_url}/pooling) on a free
  // connection, cut off `budget` (real
  // time) after it starts whatever the judge does, or at once after CutAll.
  HttpResult Post(const std::string& body, absl::Duration budget);
  // Cuts every request in flight and every later one (a stopping client). Irreversible.
  void CutAll();

 private:
  std::unique_ptr<httplib::Client> NewClient() const;
  std::unique_ptr<httplib::Client> Acquire();
  void Release(std::unique_ptr<httplib::Client> client);

  const BaseUrl base_;
  const std::string path_;
  const absl::Duration timeout_;
  const std::string api_key_;
  OracleMetrics* const metrics_;
  ClientCounters* const counters_;
  RequestWatchdog watchdog_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<httplib::Client>> idle_ ABSL_GUARDED_BY(mu_);
};

}  // namespace spar::oracle::internal
