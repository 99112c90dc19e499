#include "oracle_client/internal/http_pool.h"

#include <httplib.h>

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/outside_text.h"

namespace spar::oracle::internal {

HttpPool::HttpPool(const BaseUrl& base, const OracleConfig& config, OracleMetrics* metrics,
                   ClientCounters* counters)
    : base_(base),
      path_(base.path_prefix +
            (config.kind == OracleKind::kRewardModel ? "/pooling" : "/chat/completions")),
      timeout_(config.timeout),
      api_key_(config.api_key),
      metrics_(metrics),
      counters_(counters) {
  absl::MutexLock lock(&mu_);
  for (int i = 0; i < config.max_concurrency; ++i) idle_.push_back(NewClient());
}

HttpPool::~HttpPool() = default;

std::unique_ptr<httplib::Client> HttpPool::NewClient() const {
  auto cli = std::make_unique<httplib::Client>(base_.SchemeHostPort());
  auto us = std::chrono::microseconds(absl::ToInt64Microseconds(timeout_));
  cli->set_connection_timeout(us);
  cli->set_read_timeout(us);
  cli->set_write_timeout(us);
  cli->set_keep_alive(true);
  cli->set_tcp_nodelay(true);  // headers and body are separate writes: avoid Nagle + delayed ACK
  cli->enable_server_certificate_verification(true);
  if (!api_key_.empty()) cli->set_bearer_token_auth(api_key_);
  return cli;
}

std::unique_ptr<httplib::Client> HttpPool::Acquire() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](std::vector<std::unique_ptr<httplib::Client>>* v) { return !v->empty(); }, &idle_));
  std::unique_ptr<httplib::Client> c = std::move(idle_.back());
  idle_.pop_back();
  return c;
}

void HttpPool::Release(std::unique_ptr<httplib::Client> client) {
  absl::MutexLock lock(&mu_);
  idle_.push_back(std::move(client));
}

HttpResult HttpPool::Post(const std::string& body, absl::Duration budget) {
  std::unique_ptr<httplib::Client> cli = Acquire();
  metrics_->in_flight.Increment();
  absl::Time start = absl::Now();
  const uint64_t watch = watchdog_.Arm(start + budget, [c = cli.get()] { c->stop(); });
  // The answer is read through a receiver that stops at kMaxResponseBytes: a judge's answer is a
  // few kilobytes, and a judge that sends hundreds of megabytes must not take the memory.
  httplib::Request req;
  req.method = "POST";
  req.path = path_;
  req.body = body;
  req.set_header("Content-Type", "application/json");
  std::string received;
  bool too_big = false;
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (received.size() + n > kMaxResponseBytes) {
      too_big = true;
      return false;
    }
    received.append(data, n);
    return true;
  };
  httplib::Result res = cli->send(req);
  const bool cut = watchdog_.Disarm(watch);
  double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  metrics_->in_flight.Decrement();
  HttpResult out;
  if (res) {  // complete, even when the deadline fired just after: it was paid for
    out.status = res->status;
    out.body = std::move(received);
    out.retry_after_ms = res->get_header_value("retry-after-ms");
    out.retry_after = res->get_header_value("retry-after");
    out.x_should_retry = res->get_header_value("x-should-retry");
    out.request_id = SafeOutsideText(res->get_header_value("x-request-id"), api_key_, 100);
    out.remaining_requests = res->get_header_value("x-ratelimit-remaining-requests");
    out.reset_requests = res->get_header_value("x-ratelimit-reset-requests");
    out.remaining_tokens = res->get_header_value("x-ratelimit-remaining-tokens");
    out.reset_tokens = res->get_header_value("x-ratelimit-reset-tokens");
  } else {
    out.error_text = too_big ? absl::StrCat("response body over ", kMaxResponseBytes, " bytes")
                             : httplib::to_string(res.error());
    out.tls_failure = res.error() == httplib::Error::SSLServerVerification ||
                      res.error() == httplib::Error::SSLLoadingCerts;
    out.cut = cut;
    // A failed exchange may leave the connection in an unknown state; start afresh.
    cli->stop();
  }
  Release(std::move(cli));
  counters_->calls.fetch_add(1, std::memory_order_relaxed);
  metrics_->ForCode(out.status).Increment();
  metrics_->latency.Observe(seconds);
  return out;
}

void HttpPool::CutAll() { watchdog_.CutAll(); }

}  // namespace spar::oracle::internal
