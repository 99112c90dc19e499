#include "oracle_client/oracle_client.h"

#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "oracle_client/internal/http_policy.h"
#include "oracle_client/internal/judge_text.h"
#include "oracle_client/internal/rate_limiter.h"
#include "oracle_client/internal/request_watchdog.h"
#include "oracle_client/judge_template.h"
#include "oracle_client/internal/sha256.h"
#include "oracle_client/judgment_cache.h"
#include "oracle_client/side_by_side.h"
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

  static OracleMetrics Register(metrics::Registry& r) {
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
  bool cut = false;  // stopped at its total deadline (oracle.timeout_s)
  std::string remaining_requests, reset_requests, remaining_tokens, reset_tokens;
};

// What kind of answer a request asks for.
enum class AskKind { kPairwise, kPointwise, kSideBySide };

// One request's parsed answer.
struct OrderResult {
  double p_first = 0.5;  // P(the output shown as "A" wins), or the pointwise score
  std::string verdict_text;
  std::vector<int> scores;  // side-by-side: one per candidate, un-shuffled
  bool cached = false;
};

// One request to make (or find in the cache).
struct AskSpec {
  AskKind kind = AskKind::kPairwise;
  std::vector<ChatMessage> messages;
  int max_tokens = 1;
  std::string cache_key;   // "" = not cached
  std::string flight_key;  // single-flight key (the cache key, computed with or without a cache)
  std::vector<int> order;  // side-by-side: the presentation order
};

// One judgment's attempts (all its requests: both orders of a comparison).
struct CallStats {
  int http_calls = 0;
  int retries = 0;
  // On the client's clock: no retry waits past it (oracle.judgment_deadline_s).
  absl::Time deadline = absl::InfiniteFuture();
};

// One request's retry bookkeeping.
struct RetryState {
  int backoff_retries = 0;
  bool retried_unparsable = false;
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

std::string HostName() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) return "unknown-host";
  return host;
}

// "<host>/<pid>/<random>": unique per client, and tells a waiter on the same host whether the
// holder's process still exists.
std::string LeaseOwnerId() {
  std::random_device rd;
  return absl::StrFormat("%s/%d/%08x%08x", HostName(), static_cast<int>(getpid()), rd(), rd());
}

// True when `owner` (a LeaseOwnerId) names a process on this host that no longer exists: its
// lease can be broken at once instead of waiting for it to expire (a restarted oracle retakes
// the keys its killed predecessor held).
bool LeaseOwnerIsDeadHere(const std::string& owner) {
  std::vector<std::string> parts = absl::StrSplit(owner, '/');
  int pid = 0;
  if (parts.size() != 3 || parts[0] != HostName() || !absl::SimpleAtoi(parts[1], &pid) ||
      pid <= 0) {
    return false;
  }
  return kill(pid, 0) != 0 && errno == ESRCH;
}

}  // namespace

struct OracleClient::Impl {
  OracleConfig config;
  internal::BaseUrl base;
  std::string path;
  Clock* clock = nullptr;
  std::unique_ptr<metrics::Registry> owned_registry;
  std::optional<OracleMetrics> metrics;
  JudgeTemplate pairwise_template;
  JudgeTemplate pointwise_template;
  std::unique_ptr<JudgmentCache> cache;  // null: no cache
  std::unique_ptr<internal::RateLimiter> limiter;
  // Cuts requests off at their total deadline (oracle.timeout_s).
  std::unique_ptr<internal::RequestWatchdog> watchdog;
  // Stop(): requests in flight are cut, none is sent or retried any more.
  std::atomic<bool> stopped{false};
  // This client's owner id in the cache's lease table: unique per process and client.
  std::string lease_owner;

  absl::Mutex pool_mu;
  std::vector<std::unique_ptr<httplib::Client>> idle ABSL_GUARDED_BY(pool_mu);

  std::mutex rng_mu;
  std::mt19937_64 rng{0x5eed5eedULL};

  std::atomic<int64_t> calls{0}, retries{0}, failures{0}, prompt_tokens{0}, completion_tokens{0};
  std::atomic<int64_t> cache_hits{0}, cache_misses{0}, swap_judgments{0}, swap_consistent{0};
  std::atomic<int64_t> shared{0};
  // Circuit breaker: set when a judgment gave up at its deadline with the judge failing all the
  // while, cleared by the next 2xx. While set, transient failures are not retried (each judgment
  // still tries once, so a recovered judge is noticed): a judge that is down fails a round in one
  // judgment deadline, not one per judgment.
  std::atomic<bool> judge_down{false};

  // Single-flight: at most one request per key is being asked at a time; a request whose key is
  // in flight waits for that answer instead of calling the judge (an orchestrator that restarted
  // and asks again while its abandoned call is still judging pays nothing twice).
  struct Flight {
    absl::Notification done;
    absl::StatusOr<OrderResult> result = absl::UnknownError("in flight");
  };
  absl::Mutex flight_mu;
  std::map<std::string, std::shared_ptr<Flight>> flights ABSL_GUARDED_BY(flight_mu);

  // Budget accounting: spent (from responses) plus reserved (requests in flight, estimated).
  absl::Mutex budget_mu;
  int64_t budget_calls_reserved ABSL_GUARDED_BY(budget_mu) = 0;
  int64_t tokens_spent ABSL_GUARDED_BY(budget_mu) = 0;
  int64_t tokens_reserved ABSL_GUARDED_BY(budget_mu) = 0;
  double cost_spent ABSL_GUARDED_BY(budget_mu) = 0;
  double cost_reserved ABSL_GUARDED_BY(budget_mu) = 0;
  int64_t calls_spent ABSL_GUARDED_BY(budget_mu) = 0;

  // Per-job accounts (JobScope): spent (loaded from the cache file on first use, then kept in
  // step with what is written there) and reserved (requests in flight), per job and per round.
  struct Spend {
    int64_t calls = 0;
    int64_t prompt = 0;
    int64_t completion = 0;
    double cost = 0;
  };
  struct Reserved {
    int64_t calls = 0;
    int64_t tokens = 0;
    double cost = 0;
  };
  struct JobAccount {
    Spend total;
    Reserved total_reserved;
    std::map<int, Spend> rounds;
    std::map<int, Reserved> rounds_reserved;
    metrics::Gauge* calls_gauge = nullptr;
    metrics::Gauge* tokens_gauge = nullptr;
    metrics::Gauge* cost_gauge = nullptr;
  };
  std::map<std::string, JobAccount> jobs ABSL_GUARDED_BY(budget_mu);

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

  // Judge-supplied text made safe to store, log and return (internal/judge_text.h).
  std::string Text(absl::string_view raw, size_t max_bytes = 200) const {
    return internal::SafeJudgeText(raw, config.api_key, max_bytes);
  }

  // `st` with its message passed through Text: the last line of defence before a status leaves
  // the client (into judgments.jsonl, a gRPC status, a log).
  absl::Status SafeStatus(const absl::Status& st) const {
    if (st.ok()) return st;
    return absl::Status(st.code(), Text(st.message(), 1000));
  }

  double Jitter() {
    std::lock_guard<std::mutex> lock(rng_mu);
    return std::uniform_real_distribution<double>(0.75, 1.0)(rng);
  }

  double Price(int64_t prompt, int64_t completion) const {
    return static_cast<double>(prompt) / 1000.0 * config.price_prompt_per_1k_usd +
           static_cast<double>(completion) / 1000.0 * config.price_completion_per_1k_usd;
  }

  // The account of `job_id`, read from the cache file the first time.
  absl::StatusOr<JobAccount*> AccountLocked(const std::string& job_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(budget_mu) {
    auto it = jobs.find(job_id);
    if (it != jobs.end()) return &it->second;
    JobAccount acc;
    if (cache != nullptr) {
      absl::StatusOr<std::vector<RoundUsage>> rows = cache->JobUsage(job_id);
      if (!rows.ok()) {
        return absl::UnavailableError(absl::StrCat("budget: cannot read the usage of job ",
                                                   job_id, ": ", rows.status().message()));
      }
      for (const RoundUsage& r : *rows) {
        Spend& rs = acc.rounds[r.round];
        rs = Spend{r.calls, r.prompt_tokens, r.completion_tokens, r.cost_usd};
        acc.total.calls += r.calls;
        acc.total.prompt += r.prompt_tokens;
        acc.total.completion += r.completion_tokens;
        acc.total.cost += r.cost_usd;
      }
    }
    metrics::Labels labels{{"job", job_id}};
    acc.calls_gauge = &metrics->job_calls.Add(labels);
    acc.tokens_gauge = &metrics->job_tokens.Add(labels);
    acc.cost_gauge = &metrics->job_cost.Add(labels);
    JobAccount& out = jobs.emplace(job_id, std::move(acc)).first->second;
    UpdateJobGauges(out);
    return &out;
  }

  static void UpdateJobGauges(const JobAccount& acc) {
    acc.calls_gauge->Set(static_cast<double>(acc.total.calls));
    acc.tokens_gauge->Set(static_cast<double>(acc.total.prompt + acc.total.completion));
    acc.cost_gauge->Set(acc.total.cost);
  }

  // ResourceExhausted when one more request of `tokens` / `cost` would exceed a limit of `kind`
  // ("max" for the job, "round_max" for the round); OK when every limit is 0 or has room.
  static absl::Status CheckScope(const JobScope& scope, const char* kind, const Spend& spent,
                                 const Reserved& reserved, int64_t max_calls, int64_t max_tokens,
                                 double max_cost, int64_t tokens, double cost) {
    const std::string prefix =
        absl::StrCat("budget: job ", scope.job_id, " round ", scope.round, " judge_budget.", kind);
    if (max_calls > 0 && spent.calls + reserved.calls + 1 > max_calls) {
      return absl::ResourceExhaustedError(
          absl::StrCat(prefix, "_calls limit ", max_calls, " reached (", spent.calls,
                       " calls made, ", reserved.calls, " in flight)"));
    }
    const int64_t spent_tokens = spent.prompt + spent.completion;
    if (max_tokens > 0 && spent_tokens + reserved.tokens + tokens > max_tokens) {
      return absl::ResourceExhaustedError(absl::StrCat(
          prefix, "_tokens limit ", max_tokens, " would be exceeded (", spent_tokens, " spent, ",
          reserved.tokens, " in flight, next request ~", tokens, ")"));
    }
    if (max_cost > 0 && spent.cost + reserved.cost + cost > max_cost) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "%s_cost_usd limit %.4f would be exceeded (%.4f spent, %.4f in flight, next request "
          "~%.6f)",
          prefix, max_cost, spent.cost, reserved.cost, cost));
    }
    return absl::OkStatus();
  }

  // Reserves one request estimated at (`prompt_estimate`, `max_tokens`) against the process's
  // budget and, with a scope, its job's and round's, or ResourceExhausted("budget: ...") when it
  // would exceed a limit.
  absl::Status ReserveBudget(int64_t prompt_estimate, int max_tokens, const JobScope* scope) {
    const int64_t tokens = prompt_estimate + max_tokens;
    const double cost = Price(prompt_estimate, max_tokens);
    absl::Status refused;
    {
      absl::MutexLock lock(&budget_mu);
      if (config.budget_calls > 0 && calls_spent + budget_calls_reserved + 1 > config.budget_calls) {
        refused = absl::ResourceExhaustedError(
            absl::StrCat("budget: oracle.budget_calls = ", config.budget_calls, " reached (",
                         calls_spent, " calls made, ", budget_calls_reserved, " in flight)"));
      } else if (config.budget_tokens > 0 &&
                 tokens_spent + tokens_reserved + tokens > config.budget_tokens) {
        refused = absl::ResourceExhaustedError(absl::StrCat(
            "budget: oracle.budget_tokens = ", config.budget_tokens, " would be exceeded (",
            tokens_spent, " spent, ", tokens_reserved, " in flight, next request ~", tokens, ")"));
      } else if (config.budget_cost_usd > 0 &&
                 cost_spent + cost_reserved + cost > config.budget_cost_usd) {
        refused = absl::ResourceExhaustedError(absl::StrFormat(
            "budget: oracle.budget_cost_usd = %.4f would be exceeded (%.4f spent, %.4f in flight, "
            "next request ~%.6f)",
            config.budget_cost_usd, cost_spent, cost_reserved, cost));
      }
      JobAccount* acc = nullptr;
      if (refused.ok() && scope != nullptr) {
        SPAR_ASSIGN_OR_RETURN(acc, AccountLocked(scope->job_id));
        const JobBudget& b = scope->budget;
        refused = CheckScope(*scope, "max", acc->total, acc->total_reserved, b.max_calls,
                             b.max_tokens, b.max_cost_usd, tokens, cost);
        if (refused.ok()) {
          refused = CheckScope(*scope, "round_max", acc->rounds[scope->round],
                               acc->rounds_reserved[scope->round], b.round_max_calls,
                               b.round_max_tokens, b.round_max_cost_usd, tokens, cost);
        }
      }
      if (refused.ok()) {
        ++budget_calls_reserved;
        tokens_reserved += tokens;
        cost_reserved += cost;
        if (acc != nullptr) {
          for (Reserved* r : {&acc->total_reserved, &acc->rounds_reserved[scope->round]}) {
            ++r->calls;
            r->tokens += tokens;
            r->cost += cost;
          }
        }
        return absl::OkStatus();
      }
    }
    metrics->budget_exhausted.Increment();
    return refused;
  }

  // min over configured budgets of 1 - spent/limit, clamped to [0, 1]; 1 when none is set.
  double RemainingRatioLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(budget_mu) {
    double r = 1.0;
    auto take = [&](double spent, double limit) {
      if (limit > 0) r = std::min(r, std::max(0.0, 1.0 - spent / limit));
    };
    take(static_cast<double>(calls_spent), static_cast<double>(config.budget_calls));
    take(static_cast<double>(tokens_spent), static_cast<double>(config.budget_tokens));
    take(cost_spent, config.budget_cost_usd);
    return r;
  }

  // Ends a reservation: `sent` = the request went out and the judge reported (`prompt`,
  // `completion`) tokens (0/0 when it did not say); else (no request was made) it is only
  // released. Returns the request's charge for the job's durable account (job_id "" without a
  // scope or when not sent).
  UsageCharge SettleBudget(int64_t prompt_estimate, int max_tokens, const JobScope* scope,
                           bool sent, int64_t prompt, int64_t completion) {
    const double est_cost = Price(prompt_estimate, max_tokens);
    const int64_t est_tokens = prompt_estimate + max_tokens;
    const double cost = sent ? Price(prompt, completion) : 0.0;
    UsageCharge charge;
    {
      absl::MutexLock lock(&budget_mu);
      --budget_calls_reserved;
      tokens_reserved -= est_tokens;
      cost_reserved -= est_cost;
      if (sent) {
        ++calls_spent;
        tokens_spent += prompt + completion;
        cost_spent += cost;
        metrics->budget_remaining.Set(RemainingRatioLocked());
      }
      if (scope != nullptr) {
        JobAccount& acc = jobs[scope->job_id];  // reserved above, so present
        for (Reserved* r : {&acc.total_reserved, &acc.rounds_reserved[scope->round]}) {
          --r->calls;
          r->tokens -= est_tokens;
          r->cost -= est_cost;
        }
        if (sent) {
          for (Spend* sp : {&acc.total, &acc.rounds[scope->round]}) {
            ++sp->calls;
            sp->prompt += prompt;
            sp->completion += completion;
            sp->cost += cost;
          }
          UpdateJobGauges(acc);
          charge = UsageCharge{scope->job_id, scope->round, 1, prompt, completion, cost};
        }
      }
    }
    if (cost > 0) metrics->cost.Increment(cost);
    return charge;
  }

  // Writes a request's charge without an answer (a failed or unparsable request) to the job's
  // durable account.
  void RecordCharge(const UsageCharge& charge) {
    if (cache == nullptr || charge.job_id.empty()) return;
    absl::Status st = cache->Charge(charge);
    if (!st.ok()) SPAR_LOG(Warning) << "oracle: " << st;
  }

  // One HTTP exchange, cut off `budget` (real time) after it starts whatever the judge does, or
  // at once when the client is stopped.
  HttpResult Post(const std::string& body, absl::Duration budget) {
    std::unique_ptr<httplib::Client> cli = Acquire();
    metrics->in_flight.Increment();
    absl::Time start = absl::Now();
    const uint64_t watch = watchdog->Arm(start + budget, [c = cli.get()] { c->stop(); });
    httplib::Result res = cli->Post(path, body, "application/json");
    const bool cut = watchdog->Disarm(watch);
    double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    metrics->in_flight.Decrement();
    HttpResult out;
    if (res) {  // complete, even when the deadline fired just after: it was paid for
      out.status = res->status;
      out.body = std::move(res->body);
      out.retry_after_ms = res->get_header_value("retry-after-ms");
      out.retry_after = res->get_header_value("retry-after");
      out.x_should_retry = res->get_header_value("x-should-retry");
      out.request_id = Text(res->get_header_value("x-request-id"), 100);
      out.remaining_requests = res->get_header_value("x-ratelimit-remaining-requests");
      out.reset_requests = res->get_header_value("x-ratelimit-reset-requests");
      out.remaining_tokens = res->get_header_value("x-ratelimit-remaining-tokens");
      out.reset_tokens = res->get_header_value("x-ratelimit-reset-tokens");
    } else {
      out.error = res.error();
      out.cut = cut;
      // A failed exchange may leave the connection in an unknown state; start afresh.
      cli->stop();
    }
    Release(std::move(cli));
    calls.fetch_add(1, std::memory_order_relaxed);
    metrics->ForCode(out.status).Increment();
    metrics->latency.Observe(seconds);
    return out;
  }

  std::string BuildRequest(const AskSpec& spec) const {
    json messages = json::array();
    for (const ChatMessage& m : spec.messages) {
      messages.push_back({{"role", m.role}, {"content", m.content}});
    }
    json req = {{"model", config.model},
                {"messages", std::move(messages)},
                {"max_tokens", spec.max_tokens},
                {"temperature", 0}};
    if (config.use_logprobs && spec.kind == AskKind::kPairwise) {
      req["logprobs"] = true;
      req["top_logprobs"] = 5;
    }
    // Invalid UTF-8 in a response must not abort the call: replace it.
    return req.dump(-1, ' ', false, json::error_handler_t::replace);
  }

  // Usage reported in a 2xx body (0/0 when absent); counted whether or not the answer parses,
  // since the judge charges for it.
  static std::pair<int64_t, int64_t> ReportedUsage(const json& j) {
    int64_t p = 0, c = 0;
    if (!j.is_object()) return {0, 0};
    if (auto u = j.find("usage"); u != j.end() && u->is_object()) {
      if (auto it = u->find("prompt_tokens"); it != u->end() && it->is_number_integer()) {
        p = std::max<int64_t>(0, it->get<int64_t>());
      }
      if (auto it = u->find("completion_tokens"); it != u->end() && it->is_number_integer()) {
        c = std::max<int64_t>(0, it->get<int64_t>());
      }
    }
    return {p, c};
  }

  // Parses a 2xx body. Unparsable (bad JSON, no choices, verdict neither "A"/"B" nor in the
  // log-probs, score not 1..10) -> nullopt with `why` set.
  std::optional<OrderResult> ParseResponse(const json& j, const std::string& body,
                                           const AskSpec& spec, std::string* why) {
    const AskKind kind = spec.kind;
    if (j.is_discarded() || !j.is_object()) {
      *why = absl::StrCat("response body is not JSON: ", Text(body, 80));
      return std::nullopt;
    }
    try {
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
          // Valid UTF-8 already (the JSON parser checks); the key must still not be stored.
          out.verdict_text = internal::RedactKey(content->get<std::string>(), config.api_key);
        }
      }
      if (kind == AskKind::kSideBySide) {
        absl::StatusOr<std::vector<int>> scores =
            ParseSideBySideScores(out.verdict_text, spec.order);
        if (!scores.ok()) {
          *why = absl::StrCat("unparsable answer \"", Text(out.verdict_text, 60),
                              "\" (", scores.status().message(), ")");
          return std::nullopt;
        }
        out.scores = *std::move(scores);
        return out;
      }
      if (kind == AskKind::kPointwise) {
        std::optional<int> score = ParseScoreText(out.verdict_text);
        if (!score) {
          *why = absl::StrCat("unparsable score \"", Text(out.verdict_text, 40), "\"");
          return std::nullopt;
        }
        out.p_first = *score;
        return out;
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
        *why = absl::StrCat("unparsable verdict \"", Text(out.verdict_text, 40), "\"");
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
        r.cut ? absl::StrCat("no response within the request deadline (oracle.timeout_s = ",
                             absl::ToDoubleSeconds(config.timeout), " s)")
        : r.status == 0 ? absl::StrCat("no response (", httplib::to_string(r.error), ")")
                        : absl::StrCat("HTTP ", r.status),
        e.message.empty() ? "" : absl::StrCat(": ", Text(e.message)),
        e.code.empty() ? "" : absl::StrCat(" [code ", Text(e.code, 60), "]"),
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

  void OnRateLimitHeaders(const HttpResult& r) {
    if (r.remaining_requests.empty() && r.remaining_tokens.empty()) return;
    limiter->OnServerHints(internal::ParseRateLimitRemaining(r.remaining_requests),
                           internal::ParseRateLimitReset(r.reset_requests),
                           internal::ParseRateLimitRemaining(r.remaining_tokens),
                           internal::ParseRateLimitReset(r.reset_tokens));
  }

  // The cache, when configured; a cache error is logged and treated as a miss / lost write, so a
  // broken cache costs money but never judgments.
  std::optional<OrderResult> CacheGet(const std::string& key) {
    if (cache == nullptr || key.empty()) return std::nullopt;
    absl::StatusOr<std::optional<CachedAnswer>> got = cache->Get(key);
    if (!got.ok()) SPAR_LOG(Warning) << "oracle: " << got.status();
    if (got.ok() && got->has_value()) {
      cache_hits.fetch_add(1, std::memory_order_relaxed);
      metrics->cache_hits.Increment();
      OrderResult r;
      r.p_first = (*got)->value;
      r.verdict_text = (*got)->verdict_text;
      r.cached = true;
      return r;
    }
    cache_misses.fetch_add(1, std::memory_order_relaxed);
    metrics->cache_misses.Increment();
    return std::nullopt;
  }

  // Stores a paid answer and, in the same transaction, its charge to the job's account.
  void CachePut(const std::string& key, const OrderResult& r, int64_t prompt, int64_t completion,
                const UsageCharge& charge) {
    if (cache == nullptr) return;
    if (key.empty()) return RecordCharge(charge);
    absl::Status st = cache->Put(key, CachedAnswer{r.p_first, r.verdict_text, prompt, completion},
                                 charge.job_id.empty() ? nullptr : &charge);
    if (!st.ok()) SPAR_LOG(Warning) << "oracle: " << st;
  }

  static bool IsBudgetRefusal(const absl::Status& st) {
    return absl::IsResourceExhausted(st) && absl::StartsWith(st.message(), "budget: ");
  }

  // One request, single-flight by spec.flight_key: the first caller of a key (the leader) asks
  // (AskOnce); callers arriving while it does wait and take its answer (free, like a cache hit)
  // or its error. When the leader stopped for its own reasons (its caller cancelled, its job's
  // budget refused) a waiting caller asks again under its own. The leader's answer is in the
  // cache before the key leaves the flight table, so a caller arriving later finds it there.
  absl::StatusOr<OrderResult> Ask(const AskSpec& spec, CallStats* stats,
                                  const std::function<bool()>& cancelled, const JobScope* scope) {
    if (spec.flight_key.empty()) return AskOnce(spec, stats, cancelled, scope);
    for (;;) {
      std::shared_ptr<Flight> flight;
      bool leader = false;
      {
        absl::MutexLock lock(&flight_mu);
        auto [it, inserted] = flights.try_emplace(spec.flight_key);
        if (inserted) it->second = std::make_shared<Flight>();
        flight = it->second;
        leader = inserted;
      }
      if (leader) {
        absl::StatusOr<OrderResult> r = AskOnce(spec, stats, cancelled, scope);
        {
          absl::MutexLock lock(&flight_mu);
          flights.erase(spec.flight_key);
        }
        flight->result = r;
        flight->done.Notify();
        return r;
      }
      flight->done.WaitForNotification();
      const absl::StatusOr<OrderResult>& r = flight->result;
      if (r.ok()) {
        shared.fetch_add(1, std::memory_order_relaxed);
        metrics->single_flight_shared.Increment();
        OrderResult out = *r;
        out.cached = true;
        return out;
      }
      if (!absl::IsCancelled(r.status()) && !IsBudgetRefusal(r.status())) return r.status();
      if (cancelled && cancelled()) return absl::CancelledError("judgment cancelled");
    }
  }

  // The stored answer for `spec`, parsed (nullopt when absent, or when a stored side-by-side
  // answer does not parse: it is asked again). `count` = count a cache hit or miss.
  std::optional<OrderResult> LookUp(const AskSpec& spec, bool count) {
    std::optional<OrderResult> hit;
    if (count) {
      hit = CacheGet(spec.cache_key);
    } else if (absl::StatusOr<std::optional<CachedAnswer>> got = cache->Get(spec.cache_key);
               got.ok() && got->has_value()) {
      hit = OrderResult{(*got)->value, (*got)->verdict_text, {}, true};
    }
    if (!hit || spec.kind != AskKind::kSideBySide) return hit;
    // Only parsed answers are stored, so this parses; a row that does not is asked again.
    absl::StatusOr<std::vector<int>> scores = ParseSideBySideScores(hit->verdict_text, spec.order);
    if (scores.ok()) {
      hit->scores = *std::move(scores);
      return hit;
    }
    SPAR_LOG(Warning) << "oracle: cached side-by-side answer unparsable; asking again";
    return std::nullopt;
  }

  // How long a lease is claimed for: one request plus `wait`, plus slack. The holder renews it
  // before every attempt and every backoff wait, so only a dead holder lets it expire.
  absl::Duration LeaseTtl(absl::Duration wait) const {
    return config.timeout + wait + absl::Seconds(10);
  }

  // Renews this client's lease on spec.cache_key for one request plus `wait`; false when the lease
  // was lost (it expired, e.g. during a long rate-limiter wait, and may have been taken over).
  bool KeepLease(const AskSpec& spec, absl::Duration wait) {
    if (cache == nullptr || spec.cache_key.empty()) return true;
    absl::StatusOr<bool> held =
        cache->ExtendLease(spec.cache_key, lease_owner, absl::Now() + LeaseTtl(wait));
    if (!held.ok()) SPAR_LOG(Warning) << "oracle: " << held.status();
    return !held.ok() || *held;  // a broken cache costs money, never judgments
  }

  // Single-flight across processes sharing the cache file: claims spec.cache_key's lease, or
  // waits (polling, real time) while another process holds it. Returns the answer when the holder
  // stored one, nullopt once this client holds the lease (or the cache failed: a broken cache
  // costs money, never judgments). Cancelled, or Unavailable past the judgment deadline.
  absl::StatusOr<std::optional<OrderResult>> ClaimOrAwait(const AskSpec& spec,
                                                          const CallStats& stats,
                                                          const std::function<bool()>& cancelled) {
    absl::Duration poll = absl::Milliseconds(2);
    for (;;) {
      const absl::Time now = absl::Now();
      std::string holder;
      absl::StatusOr<JudgmentCache::Lease> claim = cache->ClaimLease(
          spec.cache_key, lease_owner, now, now + LeaseTtl(absl::ZeroDuration()), &holder);
      if (!claim.ok()) {
        SPAR_LOG(Warning) << "oracle: " << claim.status();
        return std::nullopt;
      }
      if (*claim == JudgmentCache::Lease::kAcquired) return std::nullopt;
      if (*claim == JudgmentCache::Lease::kAnswered) {
        std::optional<OrderResult> answer = LookUp(spec, /*count=*/false);
        if (answer) {
          shared.fetch_add(1, std::memory_order_relaxed);
          metrics->single_flight_shared.Increment();
        }
        return answer;
      }
      if (LeaseOwnerIsDeadHere(holder)) {
        SPAR_LOG(Warning) << "oracle: breaking the judge lease of dead process " << holder;
        (void)cache->ReleaseLease(spec.cache_key, holder);
        continue;
      }
      if (cancelled && cancelled()) return absl::CancelledError("judgment cancelled");
      if (clock->Now() > stats.deadline) {
        return absl::UnavailableError(
            "judgment deadline (oracle.judgment_deadline_s) passed while another process "
            "sharing oracle.cache_path was asking the judge the same question");
      }
      absl::SleepFor(poll);
      poll = std::min(poll * 2, absl::Milliseconds(50));
    }
  }

  // One request: cache, cross-process lease, then the judge (AskJudge).
  absl::StatusOr<OrderResult> AskOnce(const AskSpec& spec, CallStats* stats,
                                      const std::function<bool()>& cancelled,
                                      const JobScope* scope) {
    if (cache == nullptr || spec.cache_key.empty()) return AskJudge(spec, stats, cancelled, scope);
    if (std::optional<OrderResult> hit = LookUp(spec, /*count=*/true)) return *std::move(hit);
    SPAR_ASSIGN_OR_RETURN(std::optional<OrderResult> answered,
                          ClaimOrAwait(spec, *stats, cancelled));
    if (answered) return *std::move(answered);
    absl::StatusOr<OrderResult> r = AskJudge(spec, stats, cancelled, scope);
    absl::Status released = cache->ReleaseLease(spec.cache_key, lease_owner);
    if (!released.ok()) SPAR_LOG(Warning) << "oracle: " << released;
    return r;
  }

  // Reserves budget, waits for the rate limiter and sends one attempt, cut off at
  // oracle.timeout_s (or the judgment deadline when sooner, but never under 100 ms).
  // Sets *answered_elsewhere (and sends nothing) when the lease was lost while waiting and the
  // process that took it over stored the answer.
  absl::StatusOr<HttpResult> SendAttempt(const std::string& body, int64_t prompt_estimate,
                                         const AskSpec& spec, const JobScope* scope,
                                         const std::function<bool()>& cancelled, CallStats* stats,
                                         std::optional<OrderResult>* answered_elsewhere) {
    SPAR_RETURN_IF_ERROR(ReserveBudget(prompt_estimate, spec.max_tokens, scope));
    absl::Time before = clock->Now();
    absl::StatusOr<absl::Time> granted =
        limiter->Acquire(prompt_estimate + spec.max_tokens, cancelled);
    if (!granted.ok()) {
      SettleBudget(prompt_estimate, spec.max_tokens, scope, /*sent=*/false, 0, 0);
      return granted.status();
    }
    if (*granted > before) {
      metrics->rate_limit_wait.Increment(absl::ToDoubleSeconds(*granted - before));
    }
    if (!KeepLease(spec, absl::ZeroDuration())) {
      // Lost while waiting: claim it again, or take the answer its new holder stored.
      absl::StatusOr<std::optional<OrderResult>> other = ClaimOrAwait(spec, *stats, cancelled);
      if (!other.ok() || other->has_value()) {
        SettleBudget(prompt_estimate, spec.max_tokens, scope, /*sent=*/false, 0, 0);
        if (!other.ok()) return other.status();
        *answered_elsewhere = std::move(*other);
        return HttpResult{};
      }
    }
    const absl::Duration budget =
        std::clamp(stats->deadline - clock->Now(), absl::Milliseconds(100), config.timeout);
    HttpResult r = Post(body, budget);
    ++stats->http_calls;
    OnRateLimitHeaders(r);
    return r;
  }

  // A 2xx answer: settles the budget and returns the parsed answer (stored in the cache), or
  // nullopt with `why`, and `cut_short` set when the body ended mid-JSON (a transport fault, worth
  // retrying until the deadline) rather than being a bad answer (retried once).
  std::optional<OrderResult> TakeAnswer(const HttpResult& r, const AskSpec& spec,
                                        int64_t prompt_estimate, const JobScope* scope,
                                        std::string* why, bool* cut_short) {
    json j;
    try {
      j = json::parse(r.body);
    } catch (const json::parse_error& e) {
      j = json(json::value_t::discarded);
      *cut_short = e.byte >= r.body.size();
    }
    auto [prompt, completion] = ReportedUsage(j);
    UsageCharge charge =
        SettleBudget(prompt_estimate, spec.max_tokens, scope, /*sent=*/true, prompt, completion);
    prompt_tokens.fetch_add(prompt, std::memory_order_relaxed);
    completion_tokens.fetch_add(completion, std::memory_order_relaxed);
    metrics->prompt_tokens.Increment(static_cast<double>(prompt));
    metrics->completion_tokens.Increment(static_cast<double>(completion));
    std::optional<OrderResult> parsed = ParseResponse(j, r.body, spec, why);
    if (parsed) {
      CachePut(spec.cache_key, *parsed, prompt, completion, charge);
    } else {
      RecordCharge(charge);
    }
    return parsed;
  }

  // The error a failed (non-2xx or no response) attempt ends with, and whether it is transient
  // (worth a retry before the deadline).
  absl::Status AttemptError(const HttpResult& r, int attempts, bool* transient) const {
    ErrorBody e = r.status == 0 ? ErrorBody{} : ParseErrorBody(r.body);
    internal::AttemptOutcome outcome;
    outcome.http_status = r.status;
    outcome.x_should_retry = ParseShouldRetry(r.x_should_retry);
    outcome.insufficient_quota = r.status == 429 && IsInsufficientQuota(e);
    *transient = internal::ShouldRetry(outcome);
    if (outcome.insufficient_quota) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "judge at ", config.base_url, " reports insufficient_quota (billing), not retried",
          e.message.empty() ? "" : absl::StrCat(": ", Text(e.message))));
    }
    return FinalError(r, e, attempts);
  }

  // The wait before the next retry of a transient `failure`, or `failure` itself when
  // oracle.max_retries is used up or the wait would end past the judgment deadline.
  absl::StatusOr<absl::Duration> NextRetryDelay(const HttpResult& r, const absl::Status& failure,
                                                RetryState* rs, const CallStats& stats) {
    if (config.max_retries >= 0 && rs->backoff_retries >= config.max_retries) return failure;
    if (judge_down.load()) {
      return absl::Status(failure.code(),
                          absl::StrCat(failure.message(),
                                       "; not retried: the judge has been failing for longer than "
                                       "oracle.judgment_deadline_s = ",
                                       absl::ToDoubleSeconds(config.judgment_deadline), " s"));
    }
    const absl::Time now = clock->Now();
    absl::Duration delay =
        internal::RetryDelay(rs->backoff_retries, r.retry_after_ms, r.retry_after, Jitter(), now,
                             config.retry_backoff_initial, config.retry_backoff_max);
    if (now + delay > stats.deadline) {
      judge_down.store(true);
      return absl::Status(failure.code(),
                          absl::StrCat(failure.message(), "; gave up at the judgment deadline (",
                                       "oracle.judgment_deadline_s = ",
                                       absl::ToDoubleSeconds(config.judgment_deadline), " s)"));
    }
    ++rs->backoff_retries;
    return delay;
  }

  // The judge, with the retry policy: transient failures (no response, request deadline, body cut
  // short, 408/409/429/5xx) are retried with backoff (retry-after honoured) until the judgment
  // deadline; an unparsable answer once; anything else fails at once.
  absl::StatusOr<OrderResult> AskJudge(const AskSpec& spec, CallStats* stats,
                                       const std::function<bool()>& cancelled,
                                       const JobScope* scope) {
    const std::string body = BuildRequest(spec);
    int64_t prompt_estimate = 0;
    for (const ChatMessage& m : spec.messages) prompt_estimate += EstimateTokens(m.content);
    RetryState rs;
    for (;;) {
      if (cancelled && cancelled()) return absl::CancelledError("judgment cancelled");
      if (stopped.load()) return absl::CancelledError("oracle client stopped");
      std::optional<OrderResult> elsewhere;
      SPAR_ASSIGN_OR_RETURN(
          HttpResult r,
          SendAttempt(body, prompt_estimate, spec, scope, cancelled, stats, &elsewhere));
      if (elsewhere) return *std::move(elsewhere);
      absl::Status failure;
      if (r.status >= 200 && r.status < 300) {
        judge_down.store(false);
        std::string why;
        bool cut_short = false;
        std::optional<OrderResult> parsed =
            TakeAnswer(r, spec, prompt_estimate, scope, &why, &cut_short);
        if (parsed) return *std::move(parsed);
        if (!cut_short) {
          if (rs.retried_unparsable) {
            return absl::DataLossError(
                absl::StrCat("judge at ", config.base_url, ": ", why, " twice; not guessing"));
          }
          SPAR_LOG(Warning) << "oracle: " << why << "; retrying once"
                            << (r.request_id.empty() ? "" : " x-request-id=") << r.request_id;
          rs.retried_unparsable = true;
          CountRetry(stats);
          continue;
        }
        failure = absl::UnavailableError(absl::StrCat(
            "judge at ", config.base_url, " failed after ", stats->http_calls,
            " attempt(s): answer cut short: ", why));
      } else {
        RecordCharge(SettleBudget(prompt_estimate, spec.max_tokens, scope, /*sent=*/true, 0, 0));
        bool transient = false;
        failure = AttemptError(r, stats->http_calls, &transient);
        if (!transient) return failure;
      }
      SPAR_ASSIGN_OR_RETURN(absl::Duration delay, NextRetryDelay(r, failure, &rs, *stats));
      CountRetry(stats);
      if (cancelled && cancelled()) return absl::CancelledError("judgment cancelled");
      if (stopped.load()) return absl::CancelledError("oracle client stopped");
      KeepLease(spec, delay);
      clock->SleepFor(delay);
    }
  }

  CallStats StartJudgment() {
    CallStats stats;
    stats.deadline = clock->Now() + config.judgment_deadline;
    return stats;
  }

  void CountRetry(CallStats* stats) {
    ++stats->retries;
    retries.fetch_add(1, std::memory_order_relaxed);
    metrics->retries.Increment();
  }

  AskSpec PairwiseSpec(const std::string& prompt, const std::string& first,
                       const std::string& second, JudgeOrder order, const std::string& a,
                       const std::string& b) const {
    AskSpec spec;
    spec.kind = AskKind::kPairwise;
    spec.messages = RenderPairwise(pairwise_template, prompt, first, second);
    spec.max_tokens = 1;
    spec.flight_key = JudgmentCache::Key(
        CacheKeyFields{config.model, PairwiseTemplateKey(), prompt, a, b, order});
    if (cache != nullptr) spec.cache_key = spec.flight_key;
    return spec;
  }

  // The template id plus the settings that change what an answer means.
  std::string PairwiseTemplateKey() const {
    return absl::StrCat(pairwise_template.id, config.use_logprobs ? "/logprobs" : "/text",
                        "/trunc", config.max_response_tokens);
  }

  absl::StatusOr<Judgment> CompareImpl(const Comparison& c, const std::function<bool()>& cancelled,
                                       const JobScope* scope) {
    CallStats stats = StartJudgment();
    int cached = 0;
    absl::StatusOr<Judgment> out = [&]() -> absl::StatusOr<Judgment> {
      Judgment j;
      const std::string a = TruncateToTokens(c.response_a, config.max_response_tokens);
      const std::string b = TruncateToTokens(c.response_b, config.max_response_tokens);
      SPAR_ASSIGN_OR_RETURN(
          OrderResult ab,
          Ask(PairwiseSpec(c.prompt, a, b, JudgeOrder::kAB, a, b), &stats, cancelled, scope));
      cached += ab.cached ? 1 : 0;
      j.p_ab = ab.p_first;
      j.verdict_ab = std::move(ab.verdict_text);
      j.p_a_wins = j.p_ab;
      if (config.both_orders) {
        SPAR_ASSIGN_OR_RETURN(
            OrderResult ba,
            Ask(PairwiseSpec(c.prompt, b, a, JudgeOrder::kBA, a, b), &stats, cancelled, scope));
        cached += ba.cached ? 1 : 0;
        j.p_ba = ba.p_first;
        j.verdict_ba = std::move(ba.verdict_text);
        j.p_a_wins = CombineBothOrders(j.p_ab, j.p_ba);
        RecordSwap(j.p_ab, j.p_ba);
      }
      j.http_calls = stats.http_calls;
      j.retries = stats.retries;
      j.cached_orders = cached;
      return j;
    }();
    if (!out.ok()) out = SafeStatus(out.status());
    CountResult(out.status());
    return out;
  }

  // Swap consistency: the winner with a shown first must be the winner with b shown first,
  // un-swapped; P = 0.5 exactly is a tie, which agrees only with a tie.
  void RecordSwap(double p_ab, double p_ba) {
    auto sign = [](double x) { return x > 0 ? 1 : (x < 0 ? -1 : 0); };
    bool consistent = sign(p_ab - 0.5) == sign(0.5 - p_ba);
    int64_t n = swap_judgments.fetch_add(1) + 1;
    int64_t k = swap_consistent.fetch_add(consistent ? 1 : 0) + (consistent ? 1 : 0);
    metrics->swap_consistency.Set(static_cast<double>(k) / static_cast<double>(n));
  }

  void CountResult(const absl::Status& st) {
    if (st.ok()) {
      metrics->judgments_ok.Increment();
    } else {
      failures.fetch_add(1, std::memory_order_relaxed);
      metrics->judgments_failed.Increment();
    }
  }

  absl::StatusOr<ScoreResult> ScoreImpl(const ScoreItem& item) {
    CallStats stats = StartJudgment();
    absl::StatusOr<ScoreResult> out = [&]() -> absl::StatusOr<ScoreResult> {
      const std::string response = TruncateToTokens(item.response, config.max_response_tokens);
      AskSpec spec;
      spec.kind = AskKind::kPointwise;
      spec.messages = RenderPointwise(pointwise_template, item.prompt, response);
      spec.max_tokens = 3;  // "10" may be two tokens
      spec.flight_key = JudgmentCache::Key(CacheKeyFields{
          config.model, absl::StrCat(pointwise_template.id, "/trunc", config.max_response_tokens),
          item.prompt, response, "", JudgeOrder::kAB});
      if (cache != nullptr) spec.cache_key = spec.flight_key;
      SPAR_ASSIGN_OR_RETURN(OrderResult r, Ask(spec, &stats, nullptr, nullptr));
      ScoreResult s;
      s.score = static_cast<int>(r.p_first);
      s.text = std::move(r.verdict_text);
      s.http_calls = stats.http_calls;
      s.retries = stats.retries;
      s.cached = r.cached;
      return s;
    }();
    if (!out.ok()) out = SafeStatus(out.status());
    CountResult(out.status());
    return out;
  }

  absl::StatusOr<SideBySideScores> SideBySideImpl(const SideBySideItem& item,
                                                  const std::function<bool()>& cancelled,
                                                  const JobScope* scope) {
    CallStats stats = StartJudgment();
    absl::StatusOr<SideBySideScores> out = [&]() -> absl::StatusOr<SideBySideScores> {
      const size_t n = item.responses.size();
      if (item.prompt.empty()) return absl::InvalidArgumentError("side-by-side: prompt is empty");
      if (n < 1 || n > 16) {
        return absl::InvalidArgumentError(
            absl::StrCat("side-by-side: responses must hold 1..16 responses, got ", n));
      }
      std::vector<std::string> responses;
      responses.reserve(n);
      for (const std::string& r : item.responses) {
        responses.push_back(TruncateToTokens(r, config.max_response_tokens));
      }
      // The presentation order: seeded by the content, so a re-run shows (and caches) the same.
      json all = responses;
      const std::string all_text = all.dump(-1, ' ', false, json::error_handler_t::replace);
      const std::string digest =
          internal::Sha256HexOfFields({"spar-side-by-side-order-v1", item.prompt, all_text});
      const uint64_t seed = std::stoull(digest.substr(0, 16), nullptr, 16);
      AskSpec spec;
      spec.kind = AskKind::kSideBySide;
      spec.order = SideBySideOrder(static_cast<int>(n), seed);
      spec.messages = RenderSideBySide(item.prompt, responses, spec.order);
      // A justification (<= 100 words) and a score per id.
      spec.max_tokens = 64 + 160 * static_cast<int>(n);
      std::string order_text;
      for (int o : spec.order) absl::StrAppend(&order_text, order_text.empty() ? "" : ",", o);
      spec.flight_key = JudgmentCache::Key(CacheKeyFields{
          config.model,
          absl::StrCat(kSideBySideTemplateId, "/trunc", config.max_response_tokens, "/order",
                       order_text),
          item.prompt, all_text, "", JudgeOrder::kAB});
      if (cache != nullptr) spec.cache_key = spec.flight_key;
      SPAR_ASSIGN_OR_RETURN(OrderResult r, Ask(spec, &stats, cancelled, scope));
      SideBySideScores s;
      s.scores = std::move(r.scores);
      s.order = spec.order;
      s.text = std::move(r.verdict_text);
      s.http_calls = stats.http_calls;
      s.retries = stats.retries;
      s.cached = r.cached;
      return s;
    }();
    if (!out.ok()) out = SafeStatus(out.status());
    if (out.ok()) {
      metrics->side_by_side_ok.Increment();
    } else {
      failures.fetch_add(1, std::memory_order_relaxed);
      metrics->side_by_side_failed.Increment();
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
  SPAR_ASSIGN_OR_RETURN(impl->base, internal::ParseBaseUrl(config.base_url, "oracle.base_url",
                                                           config.allow_http_hosts));
  impl->path = impl->base.path_prefix + "/chat/completions";
  impl->pairwise_template = DefaultPairwiseTemplate();
  impl->pointwise_template = DefaultPointwiseTemplate();
  if (!config.template_path.empty()) {
    SPAR_ASSIGN_OR_RETURN(impl->pairwise_template, LoadJudgeTemplate(config.template_path));
    if (impl->pairwise_template.kind != TemplateKind::kPairwise) {
      return absl::InvalidArgumentError(absl::StrCat(
          "oracle.template_path ", config.template_path, " is not a pairwise template"));
    }
  }
  if (!config.score_template_path.empty()) {
    SPAR_ASSIGN_OR_RETURN(impl->pointwise_template, LoadJudgeTemplate(config.score_template_path));
    if (impl->pointwise_template.kind != TemplateKind::kPointwise) {
      return absl::InvalidArgumentError(absl::StrCat(
          "oracle.score_template_path ", config.score_template_path,
          " is not a pointwise template"));
    }
  }
  if (!config.cache_path.empty()) {
    SPAR_ASSIGN_OR_RETURN(impl->cache, JudgmentCache::Open(config.cache_path));
  }
  impl->limiter = std::make_unique<internal::RateLimiter>(
      internal::RateLimits{config.requests_per_minute, config.tokens_per_minute}, clock);
  impl->config = std::move(config);
  impl->clock = clock;
  impl->watchdog = std::make_unique<internal::RequestWatchdog>();
  impl->lease_owner = LeaseOwnerId();
  if (registry == nullptr) {
    impl->owned_registry = std::make_unique<metrics::Registry>();
    registry = impl->owned_registry.get();
  }
  impl->metrics.emplace(OracleMetrics::Register(*registry));
  impl->metrics->swap_consistency.Set(1.0);
  impl->metrics->budget_remaining.Set(1.0);
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
  return impl_->CompareImpl(comparison, nullptr, nullptr);
}

absl::StatusOr<Judgment> OracleClient::Compare(const Comparison& comparison,
                                               const JobScope& scope) {
  return impl_->CompareImpl(comparison, nullptr, scope.job_id.empty() ? nullptr : &scope);
}

namespace {

// Runs job(i) for every i in [0, n) on up to max_concurrency threads and hands each result to
// on_done (calls serialized, in completion order); once `cancelled` is true the remaining items
// get CancelledError(cancel_message) without running.
template <typename T>
void RunConcurrently(size_t n, int max_concurrency, const std::function<bool()>& cancelled,
                     const char* cancel_message,
                     const std::function<absl::StatusOr<T>(size_t)>& job,
                     const std::function<void(size_t, absl::StatusOr<T>)>& on_done) {
  if (n == 0) return;
  std::atomic<size_t> next{0};
  std::mutex callback_mu;
  auto work = [&] {
    for (;;) {
      const size_t i = next.fetch_add(1);
      if (i >= n) return;
      absl::StatusOr<T> r = (cancelled && cancelled())
                                ? absl::StatusOr<T>(absl::CancelledError(cancel_message))
                                : job(i);
      std::lock_guard<std::mutex> lock(callback_mu);
      on_done(i, std::move(r));
    }
  };
  const size_t workers = std::min<size_t>(n, static_cast<size_t>(std::max(1, max_concurrency)));
  std::vector<std::thread> threads;
  threads.reserve(workers);
  for (size_t w = 0; w < workers; ++w) threads.emplace_back(work);
  for (std::thread& t : threads) t.join();
}

}  // namespace

absl::StatusOr<ScoreResult> OracleClient::Score(const ScoreItem& item) {
  return impl_->ScoreImpl(item);
}

absl::StatusOr<SideBySideScores> OracleClient::ScoreSideBySide(const SideBySideItem& item,
                                                               const JobScope& scope) {
  return impl_->SideBySideImpl(item, nullptr, scope.job_id.empty() ? nullptr : &scope);
}

void OracleClient::ScoreSideBySideAll(
    const std::vector<SideBySideItem>& items,
    const std::function<void(size_t index, absl::StatusOr<SideBySideScores>)>& on_done,
    const std::function<bool()>& cancelled, const JobScope& scope) {
  const JobScope* scoped = scope.job_id.empty() ? nullptr : &scope;
  RunConcurrently<SideBySideScores>(
      items.size(), impl_->config.max_concurrency, cancelled, "scoring cancelled",
      [&](size_t i) { return impl_->SideBySideImpl(items[i], cancelled, scoped); }, on_done);
}

void OracleClient::Stop() {
  impl_->stopped.store(true);
  impl_->watchdog->CutAll();
}

bool OracleClient::stopped() const { return impl_->stopped.load(); }

void OracleClient::CompareAll(
    const std::vector<Comparison>& comparisons,
    const std::function<void(size_t index, absl::StatusOr<Judgment>)>& on_done,
    const std::function<bool()>& cancelled, const JobScope& scope) {
  const JobScope* scoped = scope.job_id.empty() ? nullptr : &scope;
  RunConcurrently<Judgment>(
      comparisons.size(), impl_->config.max_concurrency, cancelled, "judgment cancelled",
      [&](size_t i) { return impl_->CompareImpl(comparisons[i], cancelled, scoped); }, on_done);
}

OracleClient::Usage OracleClient::GetUsage() const {
  Usage u;
  u.calls = impl_->calls.load();
  u.retries = impl_->retries.load();
  u.failures = impl_->failures.load();
  u.prompt_tokens = impl_->prompt_tokens.load();
  u.completion_tokens = impl_->completion_tokens.load();
  {
    absl::MutexLock lock(&impl_->budget_mu);
    u.cost_usd = impl_->cost_spent;
  }
  u.cache_hits = impl_->cache_hits.load();
  u.cache_misses = impl_->cache_misses.load();
  u.shared = impl_->shared.load();
  u.swap_judgments = impl_->swap_judgments.load();
  u.swap_consistent = impl_->swap_consistent.load();
  return u;
}

absl::StatusOr<JobUsage> OracleClient::GetJobUsage(const std::string& job_id,
                                                   std::optional<int> round) const {
  std::vector<RoundUsage> rows;
  if (impl_->cache != nullptr) {
    SPAR_ASSIGN_OR_RETURN(rows, impl_->cache->JobUsage(job_id));
  } else {
    absl::MutexLock lock(&impl_->budget_mu);
    auto it = impl_->jobs.find(job_id);
    if (it != impl_->jobs.end()) {
      for (const auto& [r, sp] : it->second.rounds) {
        rows.push_back(RoundUsage{r, sp.calls, sp.prompt, sp.completion, sp.cost});
      }
    }
  }
  JobUsage u;
  for (const RoundUsage& r : rows) {
    if (round.has_value() && r.round != *round) continue;
    u.calls += r.calls;
    u.prompt_tokens += r.prompt_tokens;
    u.completion_tokens += r.completion_tokens;
    u.cost_usd += r.cost_usd;
  }
  return u;
}

const OracleConfig& OracleClient::config() const { return impl_->config; }

}  // namespace spar::oracle
