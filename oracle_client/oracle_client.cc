#include "oracle_client/oracle_client.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "oracle_client/internal/http_policy.h"
#include "oracle_client/judge_template.h"
#include "oracle_client/verdict.h"

namespace spar::oracle {
namespace {

using nlohmann::json;

// Metric families and their pre-created children, registered once in Create.
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
  metrics::Counter& prompt_tokens;
  metrics::Counter& completion_tokens;

  static OracleMetrics Register(metrics::Registry& r) {
    auto& codes = r.AddCounter("spar_oracle_http_requests_total",
                               "HTTP requests to the judge, by response status code.");
    auto& judgments = r.AddCounter("spar_oracle_judgments_total",
                                   "Pairwise judgments completed, by result (ok|failed).");
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
        r.AddCounter("spar_oracle_prompt_tokens_total", "Prompt tokens reported by the judge.")
            .Add({}),
        r.AddCounter("spar_oracle_completion_tokens_total",
                     "Completion tokens reported by the judge.")
            .Add({}),
    };
  }

  metrics::Counter& ForCode(int code) {
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
};

// One HTTP exchange.
struct HttpResult {
  int status = 0;  // 0: no response
  httplib::Error error = httplib::Error::Success;
  std::string body;
  std::string retry_after_ms;
  std::string retry_after;
  std::string x_should_retry;
  std::string request_id;
};

// One order's parsed answer.
struct OrderResult {
  double p_first = 0.5;  // P(the output shown as "A" wins)
  std::string verdict_text;
};

struct CallStats {
  int http_calls = 0;
  int retries = 0;
};

// The judge's error message from an OpenAI-style body ({"error":{...}} or flat vLLM style).
struct ErrorBody {
  std::string message;
  std::string code;
  std::string type;
};

ErrorBody ParseErrorBody(const std::string& body) {
  ErrorBody out;
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return out;
  const json* e = &j;
  if (auto it = j.find("error"); it != j.end()) {
    if (it->is_object()) {
      e = &*it;
    } else if (it->is_string()) {
      out.message = it->get<std::string>();
      return out;
    }
  }
  auto str = [&](const char* key) -> std::string {
    auto it = e->find(key);
    if (it == e->end()) return "";
    if (it->is_string()) return it->get<std::string>();
    if (it->is_number()) return it->dump();
    return "";
  };
  out.message = str("message");
  out.code = str("code");
  out.type = str("type");
  return out;
}

bool IsInsufficientQuota(const ErrorBody& e) {
  return e.code == "insufficient_quota" || e.type == "insufficient_quota";
}

std::optional<bool> ParseShouldRetry(const std::string& v) {
  std::string s = absl::AsciiStrToLower(absl::StripAsciiWhitespace(v));
  if (s == "true") return true;
  if (s == "false") return false;
  return std::nullopt;
}

std::string Truncate(const std::string& s, size_t n = 200) {
  return s.size() <= n ? s : absl::StrCat(s.substr(0, n), "...");
}

}  // namespace

struct OracleClient::Impl {
  OracleConfig config;
  internal::BaseUrl base;
  std::string path;
  Clock* clock = nullptr;
  std::unique_ptr<metrics::Registry> owned_registry;
  std::optional<OracleMetrics> metrics;

  absl::Mutex pool_mu;
  std::vector<std::unique_ptr<httplib::Client>> idle ABSL_GUARDED_BY(pool_mu);

  std::mutex rng_mu;
  std::mt19937_64 rng{0x5eed5eedULL};

  std::atomic<int64_t> calls{0}, retries{0}, failures{0}, prompt_tokens{0}, completion_tokens{0};

  std::unique_ptr<httplib::Client> NewHttpClient() const {
    auto cli = std::make_unique<httplib::Client>(base.SchemeHostPort());
    auto us = std::chrono::microseconds(absl::ToInt64Microseconds(config.timeout));
    cli->set_connection_timeout(us);
    cli->set_read_timeout(us);
    cli->set_write_timeout(us);
    cli->set_keep_alive(true);
    cli->set_tcp_nodelay(true);  // headers and body are separate writes: avoid Nagle + delayed ACK
    cli->enable_server_certificate_verification(true);
    if (!config.api_key.empty()) cli->set_bearer_token_auth(config.api_key);
    return cli;
  }

  std::unique_ptr<httplib::Client> Acquire() {
    absl::MutexLock lock(&pool_mu);
    pool_mu.Await(absl::Condition(
        +[](std::vector<std::unique_ptr<httplib::Client>>* v) { return !v->empty(); }, &idle));
    std::unique_ptr<httplib::Client> c = std::move(idle.back());
    idle.pop_back();
    return c;
  }

  void Release(std::unique_ptr<httplib::Client> c) {
    absl::MutexLock lock(&pool_mu);
    idle.push_back(std::move(c));
  }

  double Jitter() {
    std::lock_guard<std::mutex> lock(rng_mu);
    return std::uniform_real_distribution<double>(0.75, 1.0)(rng);
  }

  HttpResult Post(const std::string& body) {
    std::unique_ptr<httplib::Client> cli = Acquire();
    metrics->in_flight.Increment();
    absl::Time start = absl::Now();
    httplib::Result res = cli->Post(path, body, "application/json");
    double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    metrics->in_flight.Decrement();
    HttpResult out;
    if (res) {
      out.status = res->status;
      out.body = std::move(res->body);
      out.retry_after_ms = res->get_header_value("retry-after-ms");
      out.retry_after = res->get_header_value("retry-after");
      out.x_should_retry = res->get_header_value("x-should-retry");
      out.request_id = res->get_header_value("x-request-id");
    } else {
      out.error = res.error();
      // A failed exchange may leave the connection in an unknown state; start afresh.
      cli->stop();
    }
    Release(std::move(cli));
    calls.fetch_add(1, std::memory_order_relaxed);
    metrics->ForCode(out.status).Increment();
    metrics->latency.Observe(seconds);
    return out;
  }

  std::string BuildRequest(const std::string& instruction, const std::string& first,
                           const std::string& second) const {
    json messages = json::array();
    for (const ChatMessage& m : RenderJudgePrompt(instruction, first, second)) {
      messages.push_back({{"role", m.role}, {"content", m.content}});
    }
    json req = {{"model", config.model},
                {"messages", std::move(messages)},
                {"max_tokens", 1},
                {"temperature", 0}};
    if (config.use_logprobs) {
      req["logprobs"] = true;
      req["top_logprobs"] = 5;
    }
    // Invalid UTF-8 in a response must not abort the call: replace it.
    return req.dump(-1, ' ', false, json::error_handler_t::replace);
  }

  // Parses a 2xx body. Unparsable (bad JSON, no choices, verdict neither "A"/"B" nor in the
  // log-probs) -> nullopt with `why` set.
  std::optional<OrderResult> ParseResponse(const std::string& body, std::string* why) {
    json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      *why = absl::StrCat("response body is not JSON: ", Truncate(body, 80));
      return std::nullopt;
    }
    try {
      if (auto u = j.find("usage"); u != j.end() && u->is_object()) {
        if (auto p = u->find("prompt_tokens"); p != u->end() && p->is_number_integer()) {
          int64_t n = p->get<int64_t>();
          prompt_tokens.fetch_add(n, std::memory_order_relaxed);
          metrics->prompt_tokens.Increment(static_cast<double>(n));
        }
        if (auto c = u->find("completion_tokens"); c != u->end() && c->is_number_integer()) {
          int64_t n = c->get<int64_t>();
          completion_tokens.fetch_add(n, std::memory_order_relaxed);
          metrics->completion_tokens.Increment(static_cast<double>(n));
        }
      }
      auto choices = j.find("choices");
      if (choices == j.end() || !choices->is_array() || choices->empty() ||
          !(*choices)[0].is_object()) {
        *why = "response has no choices";
        return std::nullopt;
      }
      const json& choice = (*choices)[0];
      OrderResult out;
      if (auto msg = choice.find("message"); msg != choice.end() && msg->is_object()) {
        if (auto content = msg->find("content"); content != msg->end() && content->is_string()) {
          out.verdict_text = content->get<std::string>();
        }
      }
      std::optional<Verdict> verdict = ParseVerdictText(out.verdict_text);
      std::optional<double> p;
      if (config.use_logprobs) {
        std::vector<TokenLogprob> top;
        const json* lp = nullptr;
        if (auto l = choice.find("logprobs"); l != choice.end() && l->is_object()) {
          auto content = l->find("content");
          if (content != l->end() && content->is_array() && !content->empty() &&
              (*content)[0].is_object()) {
            auto t = (*content)[0].find("top_logprobs");
            if (t != (*content)[0].end() && t->is_array()) lp = &*t;
          }
        }
        if (lp != nullptr) {
          for (const json& e : *lp) {
            if (!e.is_object()) continue;
            auto tok = e.find("token");
            auto lpv = e.find("logprob");
            if (tok == e.end() || !tok->is_string() || lpv == e.end() || !lpv->is_number()) {
              continue;
            }
            top.push_back(TokenLogprob{tok->get<std::string>(), lpv->get<double>()});
          }
        }
        p = PreferenceFromTopLogprobs(top, verdict);
      }
      if (!p && verdict) p = *verdict == Verdict::kA ? 1.0 : 0.0;
      if (!p) {
        *why = absl::StrCat("unparsable verdict \"", Truncate(out.verdict_text, 40), "\"");
        return std::nullopt;
      }
      out.p_first = *p;
      return out;
    } catch (const json::exception& e) {
      *why = absl::StrCat("malformed response: ", e.what());
      return std::nullopt;
    }
  }

  absl::Status FinalError(const HttpResult& r, const ErrorBody& e, int attempts) const {
    std::string detail = absl::StrCat(
        "judge at ", config.base_url, " failed after ", attempts, " attempt(s): ",
        r.status == 0 ? absl::StrCat("no response (", httplib::to_string(r.error), ")")
                      : absl::StrCat("HTTP ", r.status),
        e.message.empty() ? "" : absl::StrCat(": ", Truncate(e.message)),
        e.code.empty() ? "" : absl::StrCat(" [code ", e.code, "]"),
        r.request_id.empty() ? "" : absl::StrCat(" (x-request-id ", r.request_id, ")"));
    if (r.status == 0) {
      if (r.error == httplib::Error::SSLServerVerification ||
          r.error == httplib::Error::SSLLoadingCerts) {
        return absl::FailedPreconditionError(detail);
      }
      return absl::UnavailableError(detail);
    }
    if (r.status == 408 || r.status == 409 || r.status == 429 || r.status >= 500) {
      return absl::UnavailableError(detail);
    }
    switch (r.status) {
      case 400:
      case 422:
        return absl::InvalidArgumentError(detail);
      case 401:
        return absl::UnauthenticatedError(detail);
      case 403:
        return absl::PermissionDeniedError(detail);
      case 404:
        return absl::NotFoundError(detail);
      default:
        return absl::FailedPreconditionError(detail);
    }
  }

  // One presentation order: `first` shown as A, `second` as B.
  absl::StatusOr<OrderResult> JudgeOrder(const std::string& instruction, const std::string& first,
                                         const std::string& second, CallStats* stats,
                                         const std::function<bool()>& cancelled) {
    const std::string body = BuildRequest(instruction, first, second);
    int backoff_retries = 0;
    bool retried_unparsable = false;
    for (;;) {
      if (cancelled && cancelled()) return absl::CancelledError("judgment cancelled");
      HttpResult r = Post(body);
      ++stats->http_calls;
      if (r.status >= 200 && r.status < 300) {
        std::string why;
        std::optional<OrderResult> parsed = ParseResponse(r.body, &why);
        if (parsed) return *std::move(parsed);
        if (retried_unparsable) {
          return absl::DataLossError(
              absl::StrCat("judge at ", config.base_url, ": ", why, " twice; not guessing"));
        }
        SPAR_LOG(Warning) << "oracle: " << why << "; retrying once"
                          << (r.request_id.empty() ? "" : " x-request-id=") << r.request_id;
        retried_unparsable = true;
        CountRetry(stats);
        continue;
      }
      ErrorBody e = r.status == 0 ? ErrorBody{} : ParseErrorBody(r.body);
      internal::AttemptOutcome outcome;
      outcome.http_status = r.status;
      outcome.x_should_retry = ParseShouldRetry(r.x_should_retry);
      outcome.insufficient_quota = r.status == 429 && IsInsufficientQuota(e);
      if (outcome.insufficient_quota) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "judge at ", config.base_url, " reports insufficient_quota (billing), not retried",
            e.message.empty() ? "" : absl::StrCat(": ", Truncate(e.message))));
      }
      if (!internal::ShouldRetry(outcome) || backoff_retries >= config.max_retries) {
        return FinalError(r, e, stats->http_calls);
      }
      absl::Duration delay =
          internal::RetryDelay(backoff_retries, r.retry_after_ms, r.retry_after, Jitter());
      ++backoff_retries;
      CountRetry(stats);
      if (cancelled && cancelled()) return absl::CancelledError("judgment cancelled");
      clock->SleepFor(delay);
    }
  }

  void CountRetry(CallStats* stats) {
    ++stats->retries;
    retries.fetch_add(1, std::memory_order_relaxed);
    metrics->retries.Increment();
  }

  absl::StatusOr<Judgment> CompareImpl(const Comparison& c,
                                       const std::function<bool()>& cancelled) {
    CallStats stats;
    absl::StatusOr<Judgment> out = [&]() -> absl::StatusOr<Judgment> {
      Judgment j;
      SPAR_ASSIGN_OR_RETURN(OrderResult ab,
                            JudgeOrder(c.prompt, c.response_a, c.response_b, &stats, cancelled));
      j.p_ab = ab.p_first;
      j.verdict_ab = std::move(ab.verdict_text);
      j.p_a_wins = j.p_ab;
      if (config.both_orders) {
        SPAR_ASSIGN_OR_RETURN(OrderResult ba,
                              JudgeOrder(c.prompt, c.response_b, c.response_a, &stats, cancelled));
        j.p_ba = ba.p_first;
        j.verdict_ba = std::move(ba.verdict_text);
        j.p_a_wins = CombineBothOrders(j.p_ab, j.p_ba);
      }
      j.http_calls = stats.http_calls;
      j.retries = stats.retries;
      return j;
    }();
    if (out.ok()) {
      metrics->judgments_ok.Increment();
    } else {
      failures.fetch_add(1, std::memory_order_relaxed);
      metrics->judgments_failed.Increment();
    }
    return out;
  }
};

OracleClient::OracleClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OracleClient::~OracleClient() = default;

absl::StatusOr<std::unique_ptr<OracleClient>> OracleClient::Create(OracleConfig config,
                                                                   metrics::Registry* registry,
                                                                   Clock* clock) {
  SPAR_RETURN_IF_ERROR(Validate(config));
  if (clock == nullptr) return absl::InvalidArgumentError("OracleClient::Create: clock is null");
  auto impl = std::make_unique<Impl>();
  SPAR_ASSIGN_OR_RETURN(impl->base, internal::ParseBaseUrl(config.base_url, "oracle.base_url"));
  impl->path = impl->base.path_prefix + "/chat/completions";
  impl->config = std::move(config);
  impl->clock = clock;
  if (registry == nullptr) {
    impl->owned_registry = std::make_unique<metrics::Registry>();
    registry = impl->owned_registry.get();
  }
  impl->metrics.emplace(OracleMetrics::Register(*registry));
  {
    absl::MutexLock lock(&impl->pool_mu);
    for (int i = 0; i < impl->config.max_concurrency; ++i) {
      impl->idle.push_back(impl->NewHttpClient());
    }
  }
  SPAR_LOG(Info) << "oracle client: " << RedactedOracleConfig(impl->config).dump();
  return std::unique_ptr<OracleClient>(new OracleClient(std::move(impl)));
}

absl::StatusOr<Judgment> OracleClient::Compare(const Comparison& comparison) {
  return impl_->CompareImpl(comparison, nullptr);
}

void OracleClient::CompareAll(
    const std::vector<Comparison>& comparisons,
    const std::function<void(size_t index, absl::StatusOr<Judgment>)>& on_done,
    const std::function<bool()>& cancelled) {
  const size_t n = comparisons.size();
  if (n == 0) return;
  std::atomic<size_t> next{0};
  std::mutex callback_mu;
  auto work = [&] {
    for (;;) {
      size_t i = next.fetch_add(1);
      if (i >= n) return;
      absl::StatusOr<Judgment> r =
          (cancelled && cancelled())
              ? absl::StatusOr<Judgment>(absl::CancelledError("judgment cancelled"))
              : impl_->CompareImpl(comparisons[i], cancelled);
      std::lock_guard<std::mutex> lock(callback_mu);
      on_done(i, std::move(r));
    }
  };
  size_t workers = std::min<size_t>(n, static_cast<size_t>(impl_->config.max_concurrency));
  std::vector<std::thread> threads;
  threads.reserve(workers);
  for (size_t w = 0; w < workers; ++w) threads.emplace_back(work);
  for (std::thread& t : threads) t.join();
}

OracleClient::Usage OracleClient::GetUsage() const {
  Usage u;
  u.calls = impl_->calls.load();
  u.retries = impl_->retries.load();
  u.failures = impl_->failures.load();
  u.prompt_tokens = impl_->prompt_tokens.load();
  u.completion_tokens = impl_->completion_tokens.load();
  return u;
}

const OracleConfig& OracleClient::config() const { return impl_->config; }

}  // namespace spar::oracle
