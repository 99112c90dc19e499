// OracleClient: the preference oracle. With oracle.kind "reward_model" it asks a reward model
// instead (vLLM's pooling API; see Reward): Compare's P(a wins) is then sigma(r_a - r_b), from
// the two responses' rewards, each asked once. Otherwise it asks an OpenAI-compatible judge (POST
// {base_url}/chat/completions, one-token verdict "A"/"B", log-probs when enabled) which of two
// responses to a prompt is better, in both presentation orders, and returns the position-debiased
// probability that the first response wins. Each HTTP request is cut off at oracle.timeout_s in
// total (not per read). Transient failures (connection errors and resets, that cut, a body ending
// mid-JSON, 408, 409, 429 and >= 500; retry-after-ms / retry-after honoured; x-should-retry
// overrides; insufficient_quota never retried) are retried with backoff until the judgment's
// deadline (oracle.judgment_deadline_s, on the injected Clock, which also runs the backoff waits).
// An unparsable verdict is retried once and then reported as an error, never guessed. Text the
// judge sends back reaches statuses and logs only as valid UTF-8 with the API key redacted.
//
// Before any HTTP request: the judgment cache (oracle.cache_path; a hit costs nothing), then the
// budgets (the process's own, and the job's and round's when the call names a JobScope;
// ResourceExhausted "budget: ..." once a limit would be exceeded; never a silent drop),
// then the rate limiter (requests/tokens per minute on the injected Clock, adapted to the
// x-ratelimit-* headers), then a free connection (max_concurrency). Pointwise scoring (Score)
// and side-by-side 6-point scoring (ScoreSideBySide, DNO-Prct) go through the same path.
// Single-flight: while a request for one cache key (one presentation order of one comparison) is in
// flight, an identical request waits for its answer instead of calling the judge; a request whose
// caller went away (cancelled) still finishes and stores its answer, so the caller's retry finds
// it. With a cache file this holds across processes too: a lease row claims the key first, and
// other processes wait for its answer (JudgmentCache::ClaimLease).
//
// This class is a facade over the parts in oracle_client/internal/: judge_request (what each
// request asks), http_pool (connections, per-request deadline), response_parser (answers and
// errors), budget_ledger (reservations against the budgets), single_flight and answer_cache (the
// judgment cache and its cross-process leases), rate_limiter, oracle_metrics.
//
// Called by services/oracle (behind gRPC), `spar judge` and by tests. Thread-safe: Compare and
// CompareAll may be called from any number of threads; at most config.max_concurrency HTTP requests
// are in flight at once across all callers. No gRPC here (STYLE R2); httplib stays in the .cc.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/metrics/registry.h"
#include "oracle_client/judge_usage.h"
#include "oracle_client/oracle_config.h"

namespace spar::oracle {

// One pairwise question: is response_a better than response_b as an answer to prompt?
struct Comparison {
  std::string prompt;
  std::string response_a;
  std::string response_b;
};

struct Judgment {
  // P(response_a beats response_b). With both orders: ½(p_ab + 1 − p_ba); else p_ab.
  double p_a_wins = 0.5;
  // P(the output shown as "A" wins) with response_a shown first (p_ab) and with the responses
  // swapped (p_ba); -1 when that order was not asked.
  double p_ab = -1;
  double p_ba = -1;
  // The judge's raw text answer in each order ("" when not asked). A reward-model oracle:
  // p_ab = p_a_wins = sigma(r_a - r_b), p_ba = -1, verdict_ab = {"reward_a":r_a,"reward_b":r_b},
  // cached_orders = how many of the two rewards were already known.
  std::string verdict_ab;
  std::string verdict_ba;
  // A reward-model oracle: the two responses' rewards (unset for a chat judge).
  std::optional<double> reward_a;
  std::optional<double> reward_b;
  int http_calls = 0;     // HTTP attempts made for this judgment
  int retries = 0;        // of which retries (backoff retries plus unparsable-verdict retries)
  int cached_orders = 0;  // presentation orders answered from the judgment cache (0, 1 or 2)
};

// One pointwise question: how good is `response` as an answer to `prompt`?
struct ScoreItem {
  std::string prompt;
  std::string response;
};

struct ScoreResult {
  int score = 0;     // 1..10
  std::string text;  // the judge's raw answer
  int http_calls = 0;
  int retries = 0;
  bool cached = false;
};

// A reward model's answer (oracle.kind "reward_model") for one ScoreItem.
struct RewardResult {
  double reward = 0;  // r(prompt, response), as the reward model gives it (unbounded)
  int http_calls = 0;
  int retries = 0;
  bool cached = false;  // from the judgment cache, the in-memory memo, or an identical request
};

// One side-by-side question (DNO-Prct, side_by_side.h): score every response to `prompt` on the
// additive 6-point rubric in one judge call. 1..16 responses.
struct SideBySideItem {
  std::string prompt;
  std::vector<std::string> responses;
};

struct SideBySideScores {
  std::vector<int> scores;  // scores[i] in [0, 6] is responses[i]'s (un-shuffled)
  std::vector<int> order;   // order[k]: the response shown as id{k+1}
  std::string text;         // the judge's raw answer
  int http_calls = 0;
  int retries = 0;
  bool cached = false;  // answered from the cache or by an identical request in flight
};

// Limits of one job's judging (JudgeBudget in oracle.proto); 0 = unlimited. Calls are HTTP
// requests (retries included), tokens prompt + completion (the request about to be sent is
// estimated), cost priced with oracle.price_*_per_1k_usd.
struct JobBudget {
  int64_t max_calls = 0;
  int64_t max_tokens = 0;
  double max_cost_usd = 0;
  int64_t round_max_calls = 0;
  int64_t round_max_tokens = 0;
  double round_max_cost_usd = 0;
};

// Whose judging a call is: usage is accounted per job and per (job, round), durably in the
// judgment cache's SQLite file when there is one (in memory otherwise), and `budget` is enforced
// on it. The limits of the most recent call apply (a resumed job may raise them).
struct JobScope {
  std::string job_id;  // "" = no per-job accounting
  int round = 0;
  JobBudget budget;
};

// What a job (or one of its rounds) has spent on the judge.
using JobUsage = JudgeUsage;

class OracleClient {
 public:
  // Validates `config` (InvalidArgument). `registry` may be null (metrics are then kept private);
  // `clock` (not owned, must outlive the client) is used for backoff sleeps.
  static absl::StatusOr<std::unique_ptr<OracleClient>> Create(OracleConfig config,
                                                              metrics::Registry* registry,
                                                              Clock* clock = Clock::Real());
  ~OracleClient();
  OracleClient(const OracleClient&) = delete;
  OracleClient& operator=(const OracleClient&) = delete;

  // Blocking. Errors: ResourceExhausted (insufficient_quota), Unavailable (judge unreachable, or
  // still failing transiently at the judgment deadline or after max_retries), DataLoss (verdict
  // or body unparsable twice),
  // Unauthenticated (401), PermissionDenied (403), NotFound (404), InvalidArgument (400/422),
  // FailedPrecondition (other 4xx, TLS verification failure).
  // ResourceExhausted is also returned, with a message starting "budget: ", when the configured
  // budget would be exceeded by the next request.
  absl::StatusOr<Judgment> Compare(const Comparison& comparison);
  // The same, accounted to `scope` (its job and round budgets enforced; ResourceExhausted
  // "budget: job <id> round <t> <limit> ..." before a request that would exceed one).
  absl::StatusOr<Judgment> Compare(const Comparison& comparison, const JobScope& scope);

  // Pointwise score with the pointwise template; same errors as Compare. FailedPrecondition for
  // a reward-model oracle (use Reward).
  absl::StatusOr<ScoreResult> Score(const ScoreItem& item);

  // The reward of item.response as the answer to item.prompt (oracle.kind "reward_model" only,
  // else FailedPrecondition): POST {base_url}/pooling, with the budgets, rate limits, retries,
  // single-flight and cache of Compare. Each (model, prompt, response) is asked once: from the
  // judgment cache file when there is one, else from an in-memory memo. Same errors as Compare.
  absl::StatusOr<RewardResult> Reward(const ScoreItem& item, const JobScope& scope = JobScope());

  // Side-by-side 6-point scores of every response (DNO-Prct); FailedPrecondition for a
  // reward-model oracle. The presentation order is
  // SideBySideOrder seeded by a hash of the prompt and the responses (a re-run shows the same
  // order); the cache key covers the judge model, the side-by-side template id, the truncation,
  // that order, the prompt and every response, so a re-run pays nothing. An answer that breaks
  // ParseSideBySideScores is retried once, then DataLoss (never a guessed score). InvalidArgument
  // for an empty prompt or not 1..16 responses; otherwise the errors of Compare.
  absl::StatusOr<SideBySideScores> ScoreSideBySide(const SideBySideItem& item,
                                                   const JobScope& scope = JobScope());
  // ScoreSideBySide for every item, with the threading and callback contract of CompareAll.
  void ScoreSideBySideAll(
      const std::vector<SideBySideItem>& items,
      const std::function<void(size_t index, absl::StatusOr<SideBySideScores>)>& on_done,
      const std::function<bool()>& cancelled = nullptr, const JobScope& scope = JobScope());

  // For a server that is stopping (SIGTERM): every HTTP request in flight is cut at once instead
  // of running to timeout_s, and no request is sent or retried any more; the judgments concerned
  // fail Cancelled. A call merely cancelled by its caller (CompareAll's `cancelled`) lets the
  // requests already sent finish and caches their answers: they are paid for. Irreversible.
  void Stop();
  bool stopped() const;

  // Judges every item, up to max_concurrency at a time, on the client's own threads. `on_done` is
  // called exactly once per index as each item completes, from worker threads but serialized
  // (never two at once), so it need not lock. Items not started when `cancelled()` turns true end
  // with Cancelled (an item already in its backoff loop stops at the next attempt). Returns when
  // every callback has returned.
  // `scope`: as for Compare (default: none).
  void CompareAll(const std::vector<Comparison>& comparisons,
                  const std::function<void(size_t index, absl::StatusOr<Judgment>)>& on_done,
                  const std::function<bool()>& cancelled = nullptr,
                  const JobScope& scope = JobScope());

  // What this client has done since it was created. JudgeUsage::calls counts HTTP attempts,
  // JudgeUsage::cost_usd is priced with oracle.price_*_per_1k_usd.
  struct Usage : JudgeUsage {
    int64_t retries = 0;       // attempts that were retries
    int64_t failures = 0;      // judgments that ended in an error
    int64_t cache_hits = 0;    // presentation orders (or scores) answered from the cache
    int64_t cache_misses = 0;  // looked up and not found (then asked over HTTP)
    // answers shared with an identical request (same cache key) already in flight: the judge is
    // asked once per key at a time (single-flight); like cache hits they cost nothing
    int64_t shared = 0;
    int64_t swap_judgments = 0;   // both-order judgments completed
    int64_t swap_consistent = 0;  // of which the two orders agreed after un-swapping
    // swap_consistent / swap_judgments; 1 when there were none.
    double swap_consistency() const {
      return swap_judgments == 0 ? 1.0 : static_cast<double>(swap_consistent) / swap_judgments;
    }
  };
  Usage GetUsage() const;
  // What `job_id` has spent (all rounds, or only `round` when given): the durable account when
  // the client has a cache file, else what this client has seen. Unavailable on a SQLite error.
  absl::StatusOr<JobUsage> GetJobUsage(const std::string& job_id,
                                       std::optional<int> round = std::nullopt) const;

  const OracleConfig& config() const;

 private:
  struct Impl;
  explicit OracleClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace spar::oracle
