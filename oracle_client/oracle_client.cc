#include "oracle_client/oracle_client.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <optional>
#include <random>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/outside_text.h"
#include "common/status_macros.h"
#include "oracle_client/internal/answer_cache.h"
#include "oracle_client/internal/budget_ledger.h"
#include "oracle_client/internal/http_policy.h"
#include "oracle_client/internal/http_pool.h"
#include "oracle_client/internal/judge_request.h"
#include "oracle_client/internal/oracle_metrics.h"
#include "oracle_client/internal/rate_limiter.h"
#include "oracle_client/internal/response_parser.h"
#include "oracle_client/internal/reward_memo.h"
#include "oracle_client/internal/run_concurrently.h"
#include "oracle_client/internal/single_flight.h"
#include "oracle_client/judge_template.h"
#include "oracle_client/judgment_cache.h"
#include "oracle_client/verdict.h"

namespace spar::oracle {
namespace {

using internal::AskSpec;
using internal::BudgetLedger;
using internal::HttpResult;
using internal::OrderResult;

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

// One attempt that was sent (or answered by another process while it waited to be sent).
struct SentAttempt {
  HttpResult http;
  std::optional<BudgetLedger::Reservation> reservation;  // set when the request went out
  std::optional<OrderResult> answered_elsewhere;
};

absl::Status Cancelled(const std::function<bool()>& cancelled, const std::atomic<bool>& stopped) {
  if (cancelled && cancelled()) return absl::CancelledError("judgment cancelled");
  if (stopped.load()) return absl::CancelledError("oracle client stopped");
  return absl::OkStatus();
}

// The pairwise, pointwise and side-by-side templates of `config` (the defaults unless a path
// names another); InvalidArgument when a file holds the wrong kind.
absl::Status LoadTemplates(const OracleConfig& config, JudgeTemplate* pairwise,
                           JudgeTemplate* pointwise) {
  *pairwise = DefaultPairwiseTemplate();
  *pointwise = DefaultPointwiseTemplate();
  if (!config.template_path.empty()) {
    SPAR_ASSIGN_OR_RETURN(*pairwise, LoadJudgeTemplate(config.template_path));
    if (pairwise->kind != TemplateKind::kPairwise) {
      return absl::InvalidArgumentError(absl::StrCat("oracle.template_path ", config.template_path,
                                                     " is not a pairwise template"));
    }
  }
  if (!config.score_template_path.empty()) {
    SPAR_ASSIGN_OR_RETURN(*pointwise, LoadJudgeTemplate(config.score_template_path));
    if (pointwise->kind != TemplateKind::kPointwise) {
      return absl::InvalidArgumentError(absl::StrCat("oracle.score_template_path ",
                                                     config.score_template_path,
                                                     " is not a pointwise template"));
    }
  }
  return absl::OkStatus();
}

// The refusal of a question a reward model cannot answer.
absl::Status NotForRewardModel(const char* what) {
  return absl::FailedPreconditionError(absl::StrCat(
      "oracle.kind is \"reward_model\": ", what,
      " needs a chat judge (oracle.kind \"chat\"); a reward model answers comparisons only"));
}

}  // namespace

struct OracleClient::Impl {
  OracleConfig config;
  Clock* clock = nullptr;
  std::unique_ptr<metrics::Registry> owned_registry;
  std::optional<internal::OracleMetrics> metrics;
  internal::ClientCounters counters;
  JudgeTemplate pairwise_template;
  JudgeTemplate pointwise_template;
  std::unique_ptr<JudgmentCache> cache;  // null: no cache
  std::unique_ptr<internal::AnswerCache> answers;
  std::unique_ptr<BudgetLedger> ledger;
  std::unique_ptr<internal::RateLimiter> limiter;
  std::unique_ptr<internal::HttpPool> pool;
  // Stop(): requests in flight are cut, none is sent or retried any more.
  std::atomic<bool> stopped{false};

  std::mutex rng_mu;
  std::mt19937_64 rng{0x5eed5eedULL};

  // Circuit breaker: set when a judgment gave up at its deadline with the judge failing all the
  // while, cleared by the next 2xx. While set, transient failures are not retried (each judgment
  // still tries once, so a recovered judge is noticed): a judge that is down fails a round in one
  // judgment deadline, not one per judgment.
  std::atomic<bool> judge_down{false};

  // Single-flight: at most one request per key is being asked at a time; a request whose key is
  // in flight waits for that answer instead of calling the judge (an orchestrator that restarted
  // and asks again while its abandoned call is still judging pays nothing twice).
  internal::SingleFlight<OrderResult> flights;
  // A reward-model oracle without a cache file: the rewards received (see Reward).
  internal::RewardMemo reward_memo;

  bool reward_model() const { return config.kind == OracleKind::kRewardModel; }

  // `st` with its message passed through SafeOutsideText: the last line of defence before a status
  // leaves the client (into judgments.jsonl, a gRPC status, a log).
  absl::Status SafeStatus(const absl::Status& st) const {
    if (st.ok()) return st;
    return absl::Status(st.code(), SafeOutsideText(st.message(), config.api_key, 1000));
  }

  double Jitter() {
    std::lock_guard<std::mutex> lock(rng_mu);
    return std::uniform_real_distribution<double>(0.75, 1.0)(rng);
  }

  void OnRateLimitHeaders(const HttpResult& r) {
    if (r.remaining_requests.empty() && r.remaining_tokens.empty()) return;
    limiter->OnServerHints(internal::ParseRateLimitRemaining(r.remaining_requests),
                           internal::ParseRateLimitReset(r.reset_requests),
                           internal::ParseRateLimitRemaining(r.remaining_tokens),
                           internal::ParseRateLimitReset(r.reset_tokens));
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
      internal::SingleFlight<OrderResult>::Outcome flight =
          flights.Do(spec.flight_key, [&] { return AskOnce(spec, stats, cancelled, scope); });
      if (flight.leader) return std::move(flight.result);
      const absl::StatusOr<OrderResult>& r = flight.result;
      if (r.ok()) {
        counters.shared.fetch_add(1, std::memory_order_relaxed);
        metrics->single_flight_shared.Increment();
        OrderResult out = *r;
        out.cached = true;
        return out;
      }
      if (!absl::IsCancelled(r.status()) && !internal::IsBudgetRefusal(r.status()))
        return r.status();
      if (cancelled && cancelled()) return absl::CancelledError("judgment cancelled");
    }
  }

  // One request: cache, cross-process lease, then the judge (AskJudge).
  absl::StatusOr<OrderResult> AskOnce(const AskSpec& spec, CallStats* stats,
                                      const std::function<bool()>& cancelled,
                                      const JobScope* scope) {
    if (!answers->Caches(spec)) {
      if (spec.kind != internal::AskKind::kReward) return AskJudge(spec, stats, cancelled, scope);
      // A reward without a cache file: the memo, filled before the key leaves the flight table.
      if (std::optional<OrderResult> known = MemoHit(spec)) return *std::move(known);
      SPAR_ASSIGN_OR_RETURN(OrderResult r, AskJudge(spec, stats, cancelled, scope));
      reward_memo.Put(spec.flight_key, r.p_first);
      return r;
    }
    if (std::optional<OrderResult> hit = answers->LookUp(spec)) return *std::move(hit);
    SPAR_ASSIGN_OR_RETURN(std::optional<OrderResult> answered,
                          answers->ClaimOrAwait(spec, stats->deadline, cancelled));
    if (answered) return *std::move(answered);
    absl::StatusOr<OrderResult> r = AskJudge(spec, stats, cancelled, scope);
    answers->ReleaseLease(spec);
    return r;
  }

  // Reserves budget, waits for the rate limiter and sends one attempt, cut off at
  // oracle.timeout_s (or the judgment deadline when sooner, but never under 100 ms). Sends
  // nothing (and sets answered_elsewhere) when the lease was lost while waiting and the process
  // that took it over stored the answer.
  absl::StatusOr<SentAttempt> SendAttempt(const std::string& body, int64_t prompt_estimate,
                                          const AskSpec& spec, const JobScope* scope,
                                          const std::function<bool()>& cancelled,
                                          CallStats* stats) {
    SPAR_ASSIGN_OR_RETURN(BudgetLedger::Reservation reservation,
                          ledger->Reserve(prompt_estimate, spec.max_tokens, scope));
    absl::Time before = clock->Now();
    absl::StatusOr<absl::Time> granted =
        limiter->Acquire(prompt_estimate + spec.max_tokens, cancelled);
    if (!granted.ok()) return granted.status();  // releases the reservation
    if (*granted > before) {
      metrics->rate_limit_wait.Increment(absl::ToDoubleSeconds(*granted - before));
    }
    SentAttempt out;
    if (!answers->KeepLease(spec, absl::ZeroDuration())) {
      // Lost while waiting: claim it again, or take the answer its new holder stored.
      absl::StatusOr<std::optional<OrderResult>> other =
          answers->ClaimOrAwait(spec, stats->deadline, cancelled);
      if (!other.ok() || other->has_value()) {
        reservation.Release();
        if (!other.ok()) return other.status();
        out.answered_elsewhere = std::move(*other);
        return out;
      }
    }
    const absl::Duration budget =
        std::clamp(stats->deadline - clock->Now(), absl::Milliseconds(100), config.timeout);
    out.http = pool->Post(body, budget);
    out.reservation.emplace(std::move(reservation));
    ++stats->http_calls;
    OnRateLimitHeaders(out.http);
    return out;
  }

  // A 2xx answer: commits `reservation` and returns the parsed answer (stored in the cache), or
  // nullopt with `why`, and `cut_short` set when the body ended mid-JSON (a transport fault, worth
  // retrying until the deadline) rather than being a bad answer (retried once).
  std::optional<OrderResult> TakeAnswer(const HttpResult& r, const AskSpec& spec,
                                        BudgetLedger::Reservation* reservation, std::string* why,
                                        bool* cut_short) {
    internal::ResponseBody body = internal::ParseResponseBody(r.body);
    *cut_short = body.cut_short;
    const int64_t prompt = body.prompt_tokens, completion = body.completion_tokens;
    UsageCharge charge = reservation->Commit(prompt, completion);
    counters.prompt_tokens.fetch_add(prompt, std::memory_order_relaxed);
    counters.completion_tokens.fetch_add(completion, std::memory_order_relaxed);
    metrics->prompt_tokens.Increment(static_cast<double>(prompt));
    metrics->completion_tokens.Increment(static_cast<double>(completion));
    std::optional<OrderResult> parsed = internal::ParseAnswer(body, r.body, spec, config, why);
    if (parsed) {
      answers->Put(spec, *parsed, prompt, completion, charge);
    } else {
      answers->RecordCharge(charge);
    }
    return parsed;
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

  // What a sent attempt ended with: the answer; nullopt with *failure OK to ask again at once
  // (an unparsable answer, the first time); or nullopt with the *failure to retry after a
  // backoff when `transient`, else to return.
  std::optional<OrderResult> Outcome(SentAttempt* attempt, const AskSpec& spec, CallStats* stats,
                                     RetryState* rs, absl::Status* failure, bool* transient) {
    const HttpResult& r = attempt->http;
    if (!r.ok()) {
      answers->RecordCharge(attempt->reservation->Commit(0, 0));
      *failure = internal::AttemptError(r, stats->http_calls, config, transient);
      return std::nullopt;
    }
    judge_down.store(false);
    std::string why;
    bool cut_short = false;
    std::optional<OrderResult> parsed =
        TakeAnswer(r, spec, &*attempt->reservation, &why, &cut_short);
    if (parsed || cut_short) {
      *transient = true;
      *failure = parsed ? absl::OkStatus()
                        : absl::UnavailableError(absl::StrCat(
                              "judge at ", config.base_url, " failed after ", stats->http_calls,
                              " attempt(s): answer cut short: ", why));
      return parsed;
    }
    *transient = false;
    if (rs->retried_unparsable) {
      *failure = absl::DataLossError(
          absl::StrCat("judge at ", config.base_url, ": ", why, " twice; not guessing"));
      return std::nullopt;
    }
    SPAR_LOG(Warning) << "oracle: " << why << "; retrying once"
                      << (r.request_id.empty() ? "" : " x-request-id=") << r.request_id;
    rs->retried_unparsable = true;
    CountRetry(stats);
    *failure = absl::OkStatus();
    return std::nullopt;
  }

  // The judge, with the retry policy: transient failures (no response, request deadline, body cut
  // short, 408/409/429/5xx) are retried with backoff (retry-after honoured) until the judgment
  // deadline; an unparsable answer once; anything else fails at once.
  absl::StatusOr<OrderResult> AskJudge(const AskSpec& spec, CallStats* stats,
                                       const std::function<bool()>& cancelled,
                                       const JobScope* scope) {
    const std::string body = internal::BuildRequestBody(spec, config);
    const int64_t prompt_estimate = internal::EstimatePromptTokens(spec);
    RetryState rs;
    for (;;) {
      SPAR_RETURN_IF_ERROR(Cancelled(cancelled, stopped));
      SPAR_ASSIGN_OR_RETURN(SentAttempt attempt,
                            SendAttempt(body, prompt_estimate, spec, scope, cancelled, stats));
      if (attempt.answered_elsewhere) return *std::move(attempt.answered_elsewhere);
      absl::Status failure;
      bool transient = false;
      std::optional<OrderResult> answer = Outcome(&attempt, spec, stats, &rs, &failure, &transient);
      if (answer) return *std::move(answer);
      if (failure.ok()) continue;  // an unparsable answer, asked again once
      if (!transient) return failure;
      SPAR_ASSIGN_OR_RETURN(absl::Duration delay,
                            NextRetryDelay(attempt.http, failure, &rs, *stats));
      CountRetry(stats);
      SPAR_RETURN_IF_ERROR(Cancelled(cancelled, stopped));
      answers->KeepLease(spec, delay);
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
    counters.retries.fetch_add(1, std::memory_order_relaxed);
    metrics->retries.Increment();
  }

  // Both presentation orders (the second when oracle.both_orders) of one comparison.
  absl::StatusOr<Judgment> AskBothOrders(const Comparison& c, CallStats* stats,
                                         const std::function<bool()>& cancelled,
                                         const JobScope* scope) {
    Judgment j;
    const bool cached = cache != nullptr;
    const std::string a = TruncateToTokens(c.response_a, config.max_response_tokens);
    const std::string b = TruncateToTokens(c.response_b, config.max_response_tokens);
    SPAR_ASSIGN_OR_RETURN(OrderResult ab,
                          Ask(internal::PairwiseSpec(pairwise_template, config, cached, c.prompt, a,
                                                     b, JudgeOrder::kAB, a, b),
                              stats, cancelled, scope));
    j.cached_orders += ab.cached ? 1 : 0;
    j.p_ab = ab.p_first;
    j.verdict_ab = std::move(ab.verdict_text);
    j.p_a_wins = j.p_ab;
    if (config.both_orders) {
      SPAR_ASSIGN_OR_RETURN(
          OrderResult ba, Ask(internal::PairwiseSpec(pairwise_template, config, cached, c.prompt, b,
                                                     a, JudgeOrder::kBA, a, b),
                              stats, cancelled, scope));
      j.cached_orders += ba.cached ? 1 : 0;
      j.p_ba = ba.p_first;
      j.verdict_ba = std::move(ba.verdict_text);
      j.p_a_wins = CombineBothOrders(j.p_ab, j.p_ba);
      RecordSwap(j.p_ab, j.p_ba);
    }
    j.http_calls = stats->http_calls;
    j.retries = stats->retries;
    return j;
  }

  // One response's reward: Ask (single-flight; the cache file, or the memo; the judge).
  absl::StatusOr<OrderResult> AskReward(const std::string& prompt, const std::string& response,
                                        CallStats* stats, const std::function<bool()>& cancelled,
                                        const JobScope* scope) {
    const AskSpec spec = internal::RewardSpec(
        config, cache != nullptr, prompt, TruncateToTokens(response, config.max_response_tokens));
    return Ask(spec, stats, cancelled, scope);
  }

  // A reward known to the memo (a reward model without a cache file), counted as a cache hit.
  std::optional<OrderResult> MemoHit(const AskSpec& spec) {
    std::optional<double> known = reward_memo.Get(spec.flight_key);
    if (!known) return std::nullopt;
    counters.cache_hits.fetch_add(1, std::memory_order_relaxed);
    metrics->cache_hits.Increment();
    return OrderResult{*known, DumpJson(nlohmann::json(*known)), {}, true};
  }

  // A comparison by a reward model: P(a wins) = sigma(r_a - r_b).
  absl::StatusOr<Judgment> AskRewards(const Comparison& c, CallStats* stats,
                                      const std::function<bool()>& cancelled,
                                      const JobScope* scope) {
    SPAR_ASSIGN_OR_RETURN(OrderResult a,
                          AskReward(c.prompt, c.response_a, stats, cancelled, scope));
    SPAR_ASSIGN_OR_RETURN(OrderResult b,
                          AskReward(c.prompt, c.response_b, stats, cancelled, scope));
    Judgment j;
    j.p_a_wins = 1.0 / (1.0 + std::exp(b.p_first - a.p_first));
    j.p_ab = j.p_a_wins;
    j.verdict_ab = DumpJson(nlohmann::json{{"reward_a", a.p_first}, {"reward_b", b.p_first}});
    j.reward_a = a.p_first;
    j.reward_b = b.p_first;
    j.cached_orders = (a.cached ? 1 : 0) + (b.cached ? 1 : 0);
    j.http_calls = stats->http_calls;
    j.retries = stats->retries;
    return j;
  }

  absl::StatusOr<RewardResult> RewardImpl(const ScoreItem& item, const JobScope* scope) {
    if (!reward_model()) {
      return absl::FailedPreconditionError(
          "oracle.kind is \"chat\": rewards need a reward model (oracle.kind \"reward_model\")");
    }
    CallStats stats = StartJudgment();
    absl::StatusOr<OrderResult> r = AskReward(item.prompt, item.response, &stats, nullptr, scope);
    CountResult(r.status());
    if (!r.ok()) return SafeStatus(r.status());
    RewardResult out;
    out.reward = r->p_first;
    out.http_calls = stats.http_calls;
    out.retries = stats.retries;
    out.cached = r->cached;
    return out;
  }

  absl::StatusOr<Judgment> CompareImpl(const Comparison& c, const std::function<bool()>& cancelled,
                                       const JobScope* scope) {
    CallStats stats = StartJudgment();
    absl::StatusOr<Judgment> out = reward_model() ? AskRewards(c, &stats, cancelled, scope)
                                                  : AskBothOrders(c, &stats, cancelled, scope);
    if (!out.ok()) out = SafeStatus(out.status());
    CountResult(out.status());
    return out;
  }

  // Swap consistency: the winner with a shown first must be the winner with b shown first,
  // un-swapped; P = 0.5 exactly is a tie, which agrees only with a tie.
  void RecordSwap(double p_ab, double p_ba) {
    auto sign = [](double x) { return x > 0 ? 1 : (x < 0 ? -1 : 0); };
    bool consistent = sign(p_ab - 0.5) == sign(0.5 - p_ba);
    int64_t n = counters.swap_judgments.fetch_add(1) + 1;
    int64_t k = counters.swap_consistent.fetch_add(consistent ? 1 : 0) + (consistent ? 1 : 0);
    metrics->swap_consistency.Set(static_cast<double>(k) / static_cast<double>(n));
  }

  void CountResult(const absl::Status& st) {
    if (st.ok()) {
      metrics->judgments_ok.Increment();
    } else {
      counters.failures.fetch_add(1, std::memory_order_relaxed);
      metrics->judgments_failed.Increment();
    }
  }

  absl::StatusOr<ScoreResult> ScoreImpl(const ScoreItem& item) {
    if (reward_model()) return NotForRewardModel("a pointwise 1..10 score");
    CallStats stats = StartJudgment();
    absl::StatusOr<ScoreResult> out = [&]() -> absl::StatusOr<ScoreResult> {
      const std::string response = TruncateToTokens(item.response, config.max_response_tokens);
      const AskSpec spec = internal::PointwiseSpec(pointwise_template, config, cache != nullptr,
                                                   item.prompt, response);
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
    if (reward_model()) return NotForRewardModel("side-by-side scoring (pairs.policy dno_prct)");
    CallStats stats = StartJudgment();
    absl::StatusOr<SideBySideScores> out = [&]() -> absl::StatusOr<SideBySideScores> {
      SPAR_ASSIGN_OR_RETURN(AskSpec spec, internal::SideBySideSpec(config, cache != nullptr,
                                                                   item.prompt, item.responses));
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
      counters.failures.fetch_add(1, std::memory_order_relaxed);
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
  SPAR_ASSIGN_OR_RETURN(
      internal::BaseUrl base,
      internal::ParseBaseUrl(config.base_url, "oracle.base_url", config.allow_http_hosts));
  SPAR_RETURN_IF_ERROR(LoadTemplates(config, &impl->pairwise_template, &impl->pointwise_template));
  if (!config.cache_path.empty()) {
    SPAR_ASSIGN_OR_RETURN(impl->cache, JudgmentCache::Open(config.cache_path));
  }
  impl->limiter = std::make_unique<internal::RateLimiter>(
      internal::RateLimits{config.requests_per_minute, config.tokens_per_minute}, clock);
  impl->config = std::move(config);
  impl->clock = clock;
  if (registry == nullptr) {
    impl->owned_registry = std::make_unique<metrics::Registry>();
    registry = impl->owned_registry.get();
  }
  impl->metrics.emplace(internal::OracleMetrics::Register(*registry));
  impl->metrics->swap_consistency.Set(1.0);
  impl->metrics->budget_remaining.Set(1.0);
  internal::OracleMetrics* metrics = &*impl->metrics;
  impl->answers = std::make_unique<internal::AnswerCache>(impl->cache.get(), impl->config.timeout,
                                                          clock, metrics, &impl->counters);
  impl->ledger = std::make_unique<BudgetLedger>(impl->config, impl->cache.get(), metrics);
  impl->pool = std::make_unique<internal::HttpPool>(base, impl->config, metrics, &impl->counters);
  SPAR_LOG(Info) << "oracle client: " << DumpJson(RedactedOracleConfig(impl->config));
  return std::unique_ptr<OracleClient>(new OracleClient(std::move(impl)));
}

absl::StatusOr<Judgment> OracleClient::Compare(const Comparison& comparison) {
  return impl_->CompareImpl(comparison, nullptr, nullptr);
}

absl::StatusOr<Judgment> OracleClient::Compare(const Comparison& comparison,
                                               const JobScope& scope) {
  return impl_->CompareImpl(comparison, nullptr, scope.job_id.empty() ? nullptr : &scope);
}

absl::StatusOr<ScoreResult> OracleClient::Score(const ScoreItem& item) {
  return impl_->ScoreImpl(item);
}

absl::StatusOr<RewardResult> OracleClient::Reward(const ScoreItem& item, const JobScope& scope) {
  return impl_->RewardImpl(item, scope.job_id.empty() ? nullptr : &scope);
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
  internal::RunConcurrently<SideBySideScores>(
      items.size(), impl_->config.max_concurrency, cancelled, "scoring cancelled",
      [&](size_t i) { return impl_->SideBySideImpl(items[i], cancelled, scoped); }, on_done);
}

void OracleClient::Stop() {
  impl_->stopped.store(true);
  impl_->pool->CutAll();
}

bool OracleClient::stopped() const { return impl_->stopped.load(); }

void OracleClient::CompareAll(
    const std::vector<Comparison>& comparisons,
    const std::function<void(size_t index, absl::StatusOr<Judgment>)>& on_done,
    const std::function<bool()>& cancelled, const JobScope& scope) {
  const JobScope* scoped = scope.job_id.empty() ? nullptr : &scope;
  internal::RunConcurrently<Judgment>(
      comparisons.size(), impl_->config.max_concurrency, cancelled, "judgment cancelled",
      [&](size_t i) { return impl_->CompareImpl(comparisons[i], cancelled, scoped); }, on_done);
}

OracleClient::Usage OracleClient::GetUsage() const {
  const internal::ClientCounters& c = impl_->counters;
  Usage u;
  u.calls = c.calls.load();
  u.retries = c.retries.load();
  u.failures = c.failures.load();
  u.prompt_tokens = c.prompt_tokens.load();
  u.completion_tokens = c.completion_tokens.load();
  u.cost_usd = impl_->ledger->CostSpent();
  u.cache_hits = c.cache_hits.load();
  u.cache_misses = c.cache_misses.load();
  u.shared = c.shared.load();
  u.swap_judgments = c.swap_judgments.load();
  u.swap_consistent = c.swap_consistent.load();
  return u;
}

absl::StatusOr<JobUsage> OracleClient::GetJobUsage(const std::string& job_id,
                                                   std::optional<int> round) const {
  return impl_->ledger->JobSpent(job_id, round);
}

const OracleConfig& OracleClient::config() const { return impl_->config; }

}  // namespace spar::oracle
