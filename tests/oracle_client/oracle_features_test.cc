// OracleClient features against a real JudgeServer on 127.0.0.1:0: the SQLite judgment cache (a
// re-run pays nothing), budgets, swap consistency, pointwise scores, rate limits with server
// hints, retry-after as an HTTP date, custom templates, and the fault-injection run (1,000
// judgments per fault mode, every judgment recorded exactly once, nothing paid twice after a
// restart). Backoffs and rate-limit waits go through a FakeClock: no test sleeps.
#include <httplib.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/file_util.h"
#include "common/metrics/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "oracle_client/judgment_cache.h"
#include "oracle_client/oracle_client.h"
#include "services/judge/judge_server.h"
#include "tests/testing/status_matchers.h"

namespace spar::judge {
namespace {

using ::spar::oracle::Comparison;
using ::spar::oracle::Judgment;
using ::spar::oracle::OracleClient;
using ::spar::oracle::OracleConfig;
using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string TempDir() {
  char tmpl[] = "/tmp/spar_oracle_features_XXXXXX";
  return mkdtemp(tmpl);
}

// n distinct arithmetic comparisons; even items have the correct answer first.
std::vector<Comparison> Items(int n, int offset = 0) {
  std::vector<Comparison> items;
  for (int k = 0; k < n; ++k) {
    int i = k + offset;
    int a = i % 97, b = i / 97 + 1;
    std::string truth = std::to_string(a + b);
    std::string wrong = std::to_string(a + b + 1 + i % 5);
    std::string prompt = absl::StrCat(a, "+", b, "=");
    items.push_back(k % 2 == 0 ? Comparison{prompt, truth, wrong}
                               : Comparison{prompt, wrong, truth});
  }
  return items;
}

class OracleFeaturesTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = TempDir(); }
  void TearDown() override { RemoveAll(dir_).IgnoreError(); }

  std::unique_ptr<JudgeServer> StartServer(JudgeServerOptions o = {}) {
    absl::StatusOr<std::unique_ptr<JudgeServer>> s = JudgeServer::Start(std::move(o));
    EXPECT_THAT(s, IsOk());
    return s.ok() ? *std::move(s) : nullptr;
  }

  OracleConfig Config(const JudgeServer& server) const {
    OracleConfig c;
    c.base_url = server.base_url();
    c.timeout = absl::Seconds(10);
    c.max_concurrency = 4;
    return c;
  }

  std::unique_ptr<OracleClient> MakeClient(OracleConfig config,
                                           metrics::Registry* registry = nullptr) {
    absl::StatusOr<std::unique_ptr<OracleClient>> c =
        OracleClient::Create(std::move(config), registry, &clock_);
    EXPECT_THAT(c, IsOk());
    return c.ok() ? *std::move(c) : nullptr;
  }

  // Runs CompareAll and returns per-index results, checking each index is reported once.
  std::vector<absl::StatusOr<Judgment>> RunAll(OracleClient& client,
                                               const std::vector<Comparison>& items) {
    std::vector<absl::StatusOr<Judgment>> out(items.size(), absl::UnknownError("not reported"));
    std::vector<int> reported(items.size(), 0);
    client.CompareAll(items, [&](size_t i, absl::StatusOr<Judgment> j) {
      ++reported[i];
      out[i] = std::move(j);
    });
    for (size_t i = 0; i < items.size(); ++i) EXPECT_EQ(reported[i], 1) << "index " << i;
    return out;
  }

  std::string dir_;
  FakeClock clock_;
};

TEST_F(OracleFeaturesTest, SecondRunIsServedEntirelyFromTheCache) {
  auto server = StartServer();
  OracleConfig config = Config(*server);
  config.cache_path = JoinPath(dir_, "cache.sqlite");
  metrics::Registry registry;
  std::vector<Comparison> items = Items(30);
  std::vector<double> first_p;
  {
    auto client = MakeClient(config, &registry);
    for (auto& j : RunAll(*client, items)) {
      ASSERT_THAT(j, IsOk());
      EXPECT_EQ(j->cached_orders, 0);
      first_p.push_back(j->p_a_wins);
    }
    EXPECT_EQ(server->requests_served(), 60);
    OracleClient::Usage u = client->GetUsage();
    EXPECT_EQ(u.cache_hits, 0);
    EXPECT_EQ(u.cache_misses, 60);
    // Same client, same items: nothing goes out.
    for (auto& j : RunAll(*client, items)) ASSERT_TRUE(j.ok());
    EXPECT_EQ(server->requests_served(), 60);
    EXPECT_EQ(client->GetUsage().cache_hits, 60);
  }
  std::string text = registry.Serialize();
  EXPECT_THAT(text, HasSubstr("spar_oracle_cache_hits_total 60"));
  EXPECT_THAT(text, HasSubstr("spar_oracle_cache_misses_total 60"));
  // A restarted client on the same DB file: zero HTTP calls, identical answers.
  auto restarted = MakeClient(config);
  std::vector<absl::StatusOr<Judgment>> again = RunAll(*restarted, items);
  for (size_t i = 0; i < items.size(); ++i) {
    ASSERT_TRUE(again[i].ok());
    EXPECT_EQ(again[i]->cached_orders, 2);
    EXPECT_EQ(again[i]->http_calls, 0);
    EXPECT_DOUBLE_EQ(again[i]->p_a_wins, first_p[i]);
  }
  EXPECT_EQ(server->requests_served(), 60);
  EXPECT_EQ(restarted->GetUsage().calls, 0);
  EXPECT_EQ(restarted->GetUsage().cache_hits, 60);
}

TEST_F(OracleFeaturesTest, CacheIsSharedAcrossClientsAndKeyedByModel) {
  auto server = StartServer();
  OracleConfig config = Config(*server);
  config.cache_path = JoinPath(dir_, "shared.sqlite");
  auto job1 = MakeClient(config);
  auto job2 = MakeClient(config);  // another job, same DB file, open at the same time
  ASSERT_TRUE(job1->Compare(Items(1)[0]).ok());
  EXPECT_EQ(server->requests_served(), 2);
  absl::StatusOr<Judgment> j = job2->Compare(Items(1)[0]);
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(j->cached_orders, 2);
  EXPECT_EQ(server->requests_served(), 2);
  // (b, a) is the same two requests in the other order: also free.
  Comparison swapped{Items(1)[0].prompt, Items(1)[0].response_b, Items(1)[0].response_a};
  ASSERT_TRUE(job2->Compare(swapped).ok());
  EXPECT_EQ(server->requests_served(), 2);
  // A different judge model is a different question.
  config.model = "another-judge";
  auto other = MakeClient(config);
  ASSERT_TRUE(other->Compare(Items(1)[0]).ok());
  EXPECT_EQ(server->requests_served(), 4);
}

TEST_F(OracleFeaturesTest, FailedJudgmentsAreNotCached) {
  JudgeServerOptions o;
  o.fault = "bad_verdict";
  auto server = StartServer(o);
  OracleConfig config = Config(*server);
  config.cache_path = JoinPath(dir_, "c.sqlite");
  auto client = MakeClient(config);
  absl::StatusOr<Judgment> j = client->Compare(Items(1)[0]);
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j, StatusIs(absl::StatusCode::kDataLoss));
  auto cache = oracle::JudgmentCache::Open(config.cache_path);
  ASSERT_TRUE(cache.ok());
  EXPECT_EQ(*(*cache)->Size(), 0);
}

TEST_F(OracleFeaturesTest, CallBudgetStopsWithResourceExhaustedAndReportsEveryItem) {
  auto server = StartServer();
  OracleConfig config = Config(*server);
  config.budget_calls = 10;  // 5 both-order judgments
  config.max_concurrency = 1;
  metrics::Registry registry;
  auto client = MakeClient(config, &registry);
  EXPECT_THAT(registry.Serialize(), HasSubstr("spar_oracle_budget_remaining_ratio 1\n"));
  std::vector<Comparison> items = Items(8);
  int ok = 0, budget = 0;
  for (auto& j : RunAll(*client, items)) {
    if (j.ok()) {
      ++ok;
    } else {
      EXPECT_THAT(j, StatusIs(absl::StatusCode::kResourceExhausted, StartsWith("budget: ")));
      ++budget;
    }
  }
  EXPECT_EQ(ok, 5);
  EXPECT_EQ(budget, 3);
  EXPECT_EQ(server->requests_served(), 10);
  EXPECT_EQ(client->GetUsage().calls, 10);
  EXPECT_EQ(client->GetUsage().failures, 3);
  // The gauge the "budget nearly spent" alert watches: all 10 calls spent.
  EXPECT_THAT(registry.Serialize(), HasSubstr("spar_oracle_budget_remaining_ratio 0\n"));
}

TEST_F(OracleFeaturesTest, JobRoundBudgetStopsAtExactlyTheRightJudgmentAndCacheHitsAreFree) {
  auto server = StartServer();
  OracleConfig config = Config(*server);
  config.cache_path = JoinPath(dir_, "cache.sqlite");
  metrics::Registry registry;
  auto client = MakeClient(config, &registry);
  std::vector<Comparison> items = Items(4);
  oracle::JobScope scope{"job-a", 1, {}};
  scope.budget.round_max_calls = 5;  // two both-order judgments and one order of a third
  ASSERT_TRUE(client->Compare(items[0], scope).ok());
  ASSERT_TRUE(client->Compare(items[1], scope).ok());
  absl::StatusOr<Judgment> third = client->Compare(items[2], scope);
  ASSERT_FALSE(third.ok());
  EXPECT_THAT(third, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(third.status().message(),
            "budget: job job-a round 1 judge_budget.round_max_calls limit 5 reached (5 calls "
            "made, 0 in flight)");
  EXPECT_EQ(server->requests_served(), 5);  // the refused request was never sent
  EXPECT_FALSE(client->Compare(items[3], scope).ok());
  EXPECT_EQ(server->requests_served(), 5);
  // Cache hits cost nothing: the round's judged items are answered although its budget is spent.
  for (int i : {0, 1}) {
    absl::StatusOr<Judgment> again = client->Compare(items[i], scope);
    ASSERT_THAT(again, IsOk());
    EXPECT_EQ(again->cached_orders, 2);
  }
  // Round 2 has its own count; item 2's first order was paid in round 1 and is not paid again.
  scope.round = 2;
  absl::StatusOr<Judgment> next_round = client->Compare(items[2], scope);
  ASSERT_THAT(next_round, IsOk());
  EXPECT_EQ(next_round->cached_orders, 1);
  EXPECT_EQ(next_round->http_calls, 1);
  EXPECT_EQ(server->requests_served(), 6);
  // The job-wide limit counts every round.
  scope.round = 3;
  scope.budget.max_calls = 6;
  absl::StatusOr<Judgment> over = client->Compare(items[3], scope);
  ASSERT_FALSE(over.ok());
  EXPECT_THAT(std::string(over.status().message()),
              StartsWith("budget: job job-a round 3 judge_budget.max_calls limit 6 reached"));
  // Another job is not limited by job-a's spending.
  ASSERT_TRUE(client->Compare(items[3], oracle::JobScope{"job-b", 1, {2, 0, 0, 2, 0, 0}}).ok());
  EXPECT_EQ(server->requests_served(), 8);

  auto usage = [&](const std::string& job, std::optional<int> round) {
    absl::StatusOr<oracle::JobUsage> u = client->GetJobUsage(job, round);
    EXPECT_THAT(u, IsOk());
    return u.ok() ? u->calls : -1;
  };
  EXPECT_EQ(usage("job-a", 1), 5);
  EXPECT_EQ(usage("job-a", 2), 1);
  EXPECT_EQ(usage("job-a", 3), 0);
  EXPECT_EQ(usage("job-a", std::nullopt), 6);
  EXPECT_EQ(usage("job-b", std::nullopt), 2);
  EXPECT_EQ(usage("nobody", std::nullopt), 0);
  std::string text = registry.Serialize();
  EXPECT_THAT(text, HasSubstr("spar_oracle_job_calls{job=\"job-a\"} 6\n"));
  EXPECT_THAT(text, HasSubstr("spar_oracle_job_calls{job=\"job-b\"} 2\n"));
}

TEST_F(OracleFeaturesTest, JobUsageSurvivesAReopenedClientAndIsNotCountedTwice) {
  auto server = StartServer();
  OracleConfig config = Config(*server);
  config.cache_path = JoinPath(dir_, "cache.sqlite");
  config.price_prompt_per_1k_usd = 1.0;
  config.price_completion_per_1k_usd = 2.0;
  std::vector<Comparison> items = Items(6);
  oracle::JobScope scope{"job-r", 1, {}};
  scope.budget.round_max_calls = 4;
  oracle::JobUsage before;
  {
    auto client = MakeClient(config);
    // Three items (six orders), concurrently; the round allows 4 calls, reserved before sending.
    int reported = 0;
    client->CompareAll(
        {items[0], items[1], items[2]}, [&](size_t, absl::StatusOr<Judgment>) { ++reported; },
        nullptr, scope);
    EXPECT_EQ(reported, 3);
    before = *client->GetJobUsage("job-r", 1);
  }
  EXPECT_EQ(before.calls, 4);
  EXPECT_GT(before.prompt_tokens, 0);
  EXPECT_EQ(before.completion_tokens, 4);  // spar-judge reports one token per verdict
  EXPECT_NEAR(before.cost_usd,
              before.prompt_tokens / 1000.0 + before.completion_tokens * 2.0 / 1000.0, 1e-9);
  const int64_t served = server->requests_served();
  // A restarted client on the same file continues the count: the round is spent.
  auto restarted = MakeClient(config);
  absl::StatusOr<oracle::JobUsage> reloaded = restarted->GetJobUsage("job-r", 1);
  ASSERT_TRUE(reloaded.ok());
  EXPECT_EQ(reloaded->calls, 4);
  EXPECT_DOUBLE_EQ(reloaded->cost_usd, before.cost_usd);
  absl::StatusOr<Judgment> refused = restarted->Compare(items[3], scope);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("round_max_calls limit 4"));
  EXPECT_EQ(server->requests_served(), served);
  // Raised (as ResumeJob does): only what was not judged yet is paid, and counted once.
  scope.budget.round_max_calls = 100;
  for (const Comparison& c : {items[0], items[1], items[2], items[3]}) {
    ASSERT_TRUE(restarted->Compare(c, scope).ok());
  }
  EXPECT_EQ(server->requests_served(), served + 4);  // 2 left of items 0-2, 2 for item 3
  EXPECT_EQ(restarted->GetJobUsage("job-r", 1)->calls, 8);
  auto cache = oracle::JudgmentCache::Open(config.cache_path);
  ASSERT_TRUE(cache.ok());
  absl::StatusOr<std::vector<oracle::RoundUsage>> rows = (*cache)->JobUsage("job-r");
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].round, 1);
  EXPECT_EQ((*rows)[0].calls, 8);
}

TEST_F(OracleFeaturesTest, ConcurrentIdenticalComparesMakeOneHttpRequest) {
  // No cache: only single-flight can keep the copies from reaching the judge. The judge's latency
  // keeps the first request in flight while the others arrive.
  JudgeServerOptions o;
  o.latency = absl::Milliseconds(500);
  auto server = StartServer(o);
  OracleConfig config = Config(*server);
  config.both_orders = false;
  config.max_concurrency = 8;
  metrics::Registry registry;
  auto client = MakeClient(config, &registry);
  constexpr int kCallers = 8;
  const Comparison item = Items(1)[0];
  std::vector<absl::StatusOr<Judgment>> results(kCallers, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < kCallers; ++i) {
    threads.emplace_back([&, i] { results[i] = client->Compare(item); });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(server->requests_served(), 1);
  int paid = 0;
  for (const absl::StatusOr<Judgment>& r : results) {
    ASSERT_THAT(r, IsOk());
    EXPECT_DOUBLE_EQ(r->p_a_wins, results[0]->p_a_wins);
    paid += r->http_calls;
  }
  EXPECT_EQ(paid, 1);
  EXPECT_EQ(client->GetUsage().shared, kCallers - 1);
  EXPECT_EQ(client->GetUsage().calls, 1);
  EXPECT_THAT(registry.Serialize(),
              HasSubstr(absl::StrCat("spar_oracle_single_flight_shared_total ", kCallers - 1)));
}

// Issue #12 item 11: two clients with their own connections to one cache file (as two
// `spar judge` processes have), judging the same comparisons at the same time: the lease in the
// cache lets only one of them ask each question; the other waits for the stored answer.
TEST_F(OracleFeaturesTest, TwoClientsSharingACacheFilePayEachQuestionOnce) {
  JudgeServerOptions o;
  o.latency = absl::Milliseconds(20);  // keeps each question in flight while the other arrives
  auto server = StartServer(o);
  OracleConfig config = Config(*server);
  config.cache_path = JoinPath(dir_, "shared.sqlite");
  auto first = MakeClient(config);
  auto second = MakeClient(config);
  const std::vector<Comparison> items = Items(40);
  std::vector<absl::StatusOr<Judgment>> a, b;
  std::thread t([&] { a = RunAll(*first, items); });
  b = RunAll(*second, items);
  t.join();
  for (size_t i = 0; i < items.size(); ++i) {
    ASSERT_THAT(a[i], IsOk());
    ASSERT_THAT(b[i], IsOk());
    EXPECT_DOUBLE_EQ(a[i]->p_a_wins, b[i]->p_a_wins);
  }
  EXPECT_EQ(server->requests_served(), 80);  // 40 comparisons x 2 orders, each paid once
  std::set<std::string> seen;
  for (const nlohmann::json& r : server->seen_requests()) {
    EXPECT_TRUE(seen.insert(r.dump()).second) << "asked twice: " << r.dump();
  }
  const OracleClient::Usage u1 = first->GetUsage(), u2 = second->GetUsage();
  EXPECT_EQ(u1.calls + u2.calls, 80);
  EXPECT_GT(u1.shared + u2.shared, 0);  // the clients did overlap
}

// A lease whose holder died (never released, never renewed) is taken over once it expires.
TEST_F(OracleFeaturesTest, ExpiredLeaseOfADeadClientIsTakenOver) {
  auto server = StartServer();
  OracleConfig config = Config(*server);
  config.cache_path = JoinPath(dir_, "shared.sqlite");
  config.both_orders = false;
  auto client = MakeClient(config);
  const Comparison item = Items(1)[0];
  const std::string key =
      oracle::JudgmentCache::Key({config.model, "spar-pairwise-v1/logprobs/trunc0", item.prompt,
                                  item.response_a, item.response_b, oracle::JudgeOrder::kAB});
  absl::StatusOr<std::unique_ptr<oracle::JudgmentCache>> dead =
      oracle::JudgmentCache::Open(config.cache_path);
  ASSERT_TRUE(dead.ok());
  const absl::Time now = absl::Now();
  ASSERT_EQ(*(*dead)->ClaimLease(key, "dead process", now, now + absl::Milliseconds(300)),
            oracle::JudgmentCache::Lease::kAcquired);
  absl::StatusOr<Judgment> j = client->Compare(item);
  const absl::Duration waited = absl::Now() - now;
  ASSERT_THAT(j, IsOk());
  EXPECT_EQ(j->http_calls, 1);
  EXPECT_EQ(server->requests_served(), 1);
  EXPECT_GE(waited, absl::Milliseconds(300)) << "the lease was ignored (or the key differs)";
}

// A lease held by a process on this host that no longer exists (a killed oracle) is broken at
// once: the restarted process does not wait for it to expire.
TEST_F(OracleFeaturesTest, LeaseOfAProcessThatIsGoneIsBrokenAtOnce) {
  auto server = StartServer();
  OracleConfig config = Config(*server);
  config.cache_path = JoinPath(dir_, "shared.sqlite");
  config.both_orders = false;
  auto client = MakeClient(config);
  const Comparison item = Items(1)[0];
  const std::string key =
      oracle::JudgmentCache::Key({config.model, "spar-pairwise-v1/logprobs/trunc0", item.prompt,
                                  item.response_a, item.response_b, oracle::JudgeOrder::kAB});
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(0);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);  // a pid that no longer exists
  char host[256] = {};
  ASSERT_EQ(gethostname(host, sizeof(host) - 1), 0);
  absl::StatusOr<std::unique_ptr<oracle::JudgmentCache>> dead =
      oracle::JudgmentCache::Open(config.cache_path);
  ASSERT_TRUE(dead.ok());
  const absl::Time now = absl::Now();
  ASSERT_EQ(
      *(*dead)->ClaimLease(key, absl::StrCat(host, "/", child, "/0"), now, now + absl::Hours(1)),
      oracle::JudgmentCache::Lease::kAcquired);
  absl::StatusOr<Judgment> j = client->Compare(item);
  ASSERT_THAT(j, IsOk());
  EXPECT_EQ(server->requests_served(), 1);
  EXPECT_LT(absl::Now() - now, absl::Seconds(5));
}

// A clock whose sleeps run a hook first (here: another process taking the lease over while this
// client waits for its rate limiter).
class HookedClock final : public Clock {
 public:
  absl::Time Now() override { return clock_.Now(); }
  void SleepFor(absl::Duration d) override {
    if (hook) std::exchange(hook, nullptr)();
    clock_.SleepFor(d);
  }
  std::function<void()> hook;

 private:
  FakeClock clock_;
};

// The lease expires while its holder waits for the rate limiter, another process takes the
// question over and stores the answer: the first client takes that answer instead of paying.
TEST_F(OracleFeaturesTest, LeaseLostDuringARateLimitWaitIsNotPaidTwice) {
  auto server = StartServer();
  OracleConfig config = Config(*server);
  config.cache_path = JoinPath(dir_, "shared.sqlite");
  config.both_orders = false;
  config.requests_per_minute = 1;
  HookedClock clock;
  absl::StatusOr<std::unique_ptr<OracleClient>> client =
      OracleClient::Create(config, nullptr, &clock);
  ASSERT_THAT(client, IsOk());
  const std::vector<Comparison> items = Items(2);
  ASSERT_TRUE((*client)->Compare(items[0]).ok());  // uses the minute's one request
  const std::string key = oracle::JudgmentCache::Key(
      {config.model, "spar-pairwise-v1/logprobs/trunc0", items[1].prompt, items[1].response_a,
       items[1].response_b, oracle::JudgeOrder::kAB});
  absl::StatusOr<std::unique_ptr<oracle::JudgmentCache>> other =
      oracle::JudgmentCache::Open(config.cache_path);
  ASSERT_TRUE(other.ok());
  clock.hook = [&] {  // the second request waits a minute for the limiter: its lease runs out
    const absl::Time later = absl::Now() + absl::Hours(1);
    ASSERT_EQ(*(*other)->ClaimLease(key, "other", later, later + absl::Hours(1)),
              oracle::JudgmentCache::Lease::kAcquired);
    ASSERT_TRUE((*other)->Put(key, oracle::CachedAnswer{0.25, "B", 1, 1}).ok());
    ASSERT_TRUE((*other)->ReleaseLease(key, "other").ok());
  };
  absl::StatusOr<Judgment> j = (*client)->Compare(items[1]);
  ASSERT_THAT(j, IsOk());
  EXPECT_EQ(clock.hook, nullptr) << "the limiter never waited";
  EXPECT_DOUBLE_EQ(j->p_a_wins, 0.25);  // the other process's answer
  EXPECT_EQ(j->http_calls, 0);
  EXPECT_EQ(server->requests_served(), 1);
}

TEST_F(OracleFeaturesTest, TokenAndCostBudgetsUseReportedUsageAndPrices) {
  auto server = StartServer();
  OracleConfig config = Config(*server);
  config.price_prompt_per_1k_usd = 1.0;
  config.price_completion_per_1k_usd = 2.0;
  auto probe = MakeClient(config);
  ASSERT_TRUE(probe->Compare(Items(1)[0]).ok());
  OracleClient::Usage u = probe->GetUsage();
  ASSERT_GT(u.prompt_tokens, 0);
  EXPECT_EQ(u.completion_tokens, 2);
  EXPECT_NEAR(u.cost_usd, u.prompt_tokens / 1000.0 + 2 * 2.0 / 1000.0, 1e-12);
  const double per_judgment = u.cost_usd;

  config.budget_cost_usd = per_judgment * 3.5;
  config.max_concurrency = 1;
  auto costly = MakeClient(config);
  int ok = 0;
  for (auto& j : RunAll(*costly, Items(6, 100))) {
    if (j.ok()) {
      ++ok;
    } else {
      EXPECT_THAT(std::string(j.status().message()), HasSubstr("budget_cost_usd"));
    }
  }
  EXPECT_GE(ok, 3);
  EXPECT_LE(costly->GetUsage().cost_usd, config.budget_cost_usd);

  config.budget_cost_usd = 0;
  config.budget_tokens = u.prompt_tokens + u.completion_tokens;  // about one judgment
  auto tokens = MakeClient(config);
  std::vector<absl::StatusOr<Judgment>> r = RunAll(*tokens, Items(3, 200));
  int failed = 0;
  for (auto& j : r) {
    if (!j.ok()) {
      ++failed;
      EXPECT_THAT(std::string(j.status().message()), HasSubstr("budget_tokens"));
    }
  }
  EXPECT_GE(failed, 2);
  EXPECT_LE(tokens->GetUsage().prompt_tokens + tokens->GetUsage().completion_tokens,
            config.budget_tokens + 8);
}

TEST_F(OracleFeaturesTest, SwapConsistencyIsExported) {
  auto server = StartServer();
  metrics::Registry registry;
  auto client = MakeClient(Config(*server), &registry);
  // A clear win agrees in both orders. Identical answers: the rule judge gives "A" in both
  // orders (position bias by construction), which is inconsistent after un-swapping.
  ASSERT_TRUE(client->Compare({"2+2=", "4", "5"}).ok());
  ASSERT_TRUE(client->Compare({"2+2=", "4", "4"}).ok());
  OracleClient::Usage u = client->GetUsage();
  EXPECT_EQ(u.swap_judgments, 2);
  EXPECT_EQ(u.swap_consistent, 1);
  EXPECT_DOUBLE_EQ(u.swap_consistency(), 0.5);
  EXPECT_THAT(registry.Serialize(), HasSubstr("spar_oracle_swap_consistency_ratio 0.5"));
}

TEST_F(OracleFeaturesTest, PointwiseScores) {
  auto server = StartServer();
  OracleConfig config = Config(*server);
  config.cache_path = JoinPath(dir_, "scores.sqlite");
  auto client = MakeClient(config);
  absl::StatusOr<oracle::ScoreResult> good = client->Score({"37+48=", "85"});
  ASSERT_THAT(good, IsOk());
  EXPECT_EQ(good->score, 10);
  absl::StatusOr<oracle::ScoreResult> bad = client->Score({"37+48=", "84"});
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->score, 3);
  EXPECT_EQ(client->Score({"37+48=", "no idea"})->score, 1);
  EXPECT_EQ(server->requests_served(), 3);
  absl::StatusOr<oracle::ScoreResult> again = client->Score({"37+48=", "85"});
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->cached);
  EXPECT_EQ(server->requests_served(), 3);
  ASSERT_EQ(server->seen_requests().size(), 3u);
  EXPECT_EQ(server->seen_requests()[0]["output"], "85");
}

TEST_F(OracleFeaturesTest, SideBySideScoresAreParsedCachedAndAccounted) {
  auto server = StartServer();
  OracleConfig config = Config(*server);
  config.cache_path = JoinPath(dir_, "sbs.sqlite");
  metrics::Registry registry;
  std::vector<oracle::SideBySideItem> items = {
      {"37+48=", {"84", "85", "no idea", "85"}},
      {"2+2=", {"4", "5"}},
      {"Write a haiku.", {"leaves fall", "autumn"}},
  };
  const std::vector<std::vector<int>> want = {{1, 6, 0, 6}, {6, 1}, {3, 3}};
  oracle::JobScope scope{"job-sbs", 1, {}};
  {
    auto client = MakeClient(config, &registry);
    std::vector<int> reported(items.size(), 0);
    client->ScoreSideBySideAll(
        items,
        [&](size_t i, absl::StatusOr<oracle::SideBySideScores> r) {
          ++reported[i];
          ASSERT_THAT(r, IsOk());
          EXPECT_EQ(r->scores, want[i]) << "item " << i;
          EXPECT_FALSE(r->cached);
          EXPECT_EQ(r->http_calls, 1);
          ASSERT_EQ(r->order.size(), items[i].responses.size());
        },
        nullptr, scope);
    EXPECT_EQ(reported, (std::vector<int>{1, 1, 1}));
    EXPECT_EQ(server->requests_served(), 3);
    absl::StatusOr<oracle::JobUsage> ju = client->GetJobUsage("job-sbs", 1);
    ASSERT_TRUE(ju.ok());
    EXPECT_EQ(ju->calls, 3);
    EXPECT_GT(ju->completion_tokens, 0);
  }
  EXPECT_THAT(registry.Serialize(),
              HasSubstr("spar_oracle_side_by_side_scores_total{result=\"ok\"} 3"));
  // The judge saw every response once, in the shuffled order the client reported.
  ASSERT_EQ(server->seen_requests().size(), 3u);
  for (const nlohmann::json& seen : server->seen_requests()) {
    EXPECT_EQ(seen["mode"], "side_by_side");
  }
  // A restarted client on the same cache file: zero new HTTP requests, the same scores.
  auto restarted = MakeClient(config);
  for (size_t i = 0; i < items.size(); ++i) {
    absl::StatusOr<oracle::SideBySideScores> r = restarted->ScoreSideBySide(items[i], scope);
    ASSERT_THAT(r, IsOk());
    EXPECT_TRUE(r->cached);
    EXPECT_EQ(r->http_calls, 0);
    EXPECT_EQ(r->scores, want[i]);
  }
  EXPECT_EQ(server->requests_served(), 3);
  EXPECT_EQ(restarted->GetUsage().calls, 0);
  EXPECT_EQ(restarted->GetJobUsage("job-sbs")->calls, 3);  // cache hits cost nothing
  // The order is part of the content's identity: the same responses permuted are another key.
  absl::StatusOr<oracle::SideBySideScores> permuted =
      restarted->ScoreSideBySide({"2+2=", {"5", "4"}});
  ASSERT_TRUE(permuted.ok());
  EXPECT_EQ(permuted->scores, (std::vector<int>{1, 6}));
  EXPECT_EQ(server->requests_served(), 4);
}

TEST_F(OracleFeaturesTest, SideBySideOrderIsShuffledAndUnshuffled) {
  auto server = StartServer();
  auto client = MakeClient(Config(*server));
  // Eight candidates, one correct: whatever id it is shown under, its score comes back at its
  // own index.
  oracle::SideBySideItem item{"40+2=", {"41", "43", "44", "42", "45", "46", "47", "48"}};
  absl::StatusOr<oracle::SideBySideScores> r = client->ScoreSideBySide(item);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->scores, (std::vector<int>{1, 1, 1, 6, 1, 1, 1, 1}));
  std::vector<int> identity = {0, 1, 2, 3, 4, 5, 6, 7};
  EXPECT_NE(r->order, identity);
  ASSERT_EQ(server->seen_requests().size(), 1u);
  const nlohmann::json outputs = server->seen_requests()[0]["outputs"];
  ASSERT_EQ(outputs.size(), 8u);
  for (size_t k = 0; k < 8; ++k) EXPECT_EQ(outputs[k], item.responses[r->order[k]]);
}

TEST_F(OracleFeaturesTest, SideBySideUnparsableAnswerIsRetriedOnceThenFailsUncached) {
  JudgeServerOptions o;
  o.fault = "bad_verdict";
  auto server = StartServer(o);
  OracleConfig config = Config(*server);
  config.cache_path = JoinPath(dir_, "sbs_bad.sqlite");
  metrics::Registry registry;
  auto client = MakeClient(config, &registry);
  absl::StatusOr<oracle::SideBySideScores> r = client->ScoreSideBySide({"2+2=", {"4", "5"}});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kDataLoss, HasSubstr("not guessing")));
  EXPECT_EQ(server->requests_served(), 2);  // the answer, then one retry
  EXPECT_EQ(client->GetUsage().failures, 1);
  EXPECT_THAT(registry.Serialize(),
              HasSubstr("spar_oracle_side_by_side_scores_total{result=\"failed\"} 1"));
  auto cache = oracle::JudgmentCache::Open(config.cache_path);
  ASSERT_TRUE(cache.ok());
  EXPECT_EQ(*(*cache)->Size(), 0);
  // Bad requests never reach the judge.
  EXPECT_THAT(client->ScoreSideBySide({"", {"4"}}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(client->ScoreSideBySide({"2+2=", {}}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(server->requests_served(), 2);
}

TEST_F(OracleFeaturesTest, ResponsesAreTruncatedToTheTokenBudget) {
  auto server = StartServer();
  OracleConfig config = Config(*server);
  config.max_response_tokens = 2;  // 8 bytes
  config.both_orders = false;
  auto client = MakeClient(config);
  ASSERT_TRUE(client->Compare({"1+1=", "2 because one and one", "3"}).ok());
  ASSERT_EQ(server->seen_requests().size(), 1u);
  EXPECT_EQ(server->seen_requests()[0]["output_a"], "2 becaus");
  EXPECT_EQ(server->seen_requests()[0]["output_b"], "3");
}

// A minimal OpenAI-style server scripted by the test (headers, bodies), for what spar-judge does
// not emit.
class ScriptedServer {
 public:
  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;
  explicit ScriptedServer(Handler h) {
    server_.Post("/v1/chat/completions", std::move(h));
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) absl::SleepFor(absl::Milliseconds(1));
  }
  ~ScriptedServer() {
    server_.stop();
    thread_.join();
  }
  std::string base_url() const { return absl::StrCat("http://127.0.0.1:", port_, "/v1"); }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

std::string VerdictBody(const std::string& verdict) {
  return nlohmann::json{
      {"choices", {{{"index", 0}, {"message", {{"role", "assistant"}, {"content", verdict}}}}}},
      {"usage", {{"prompt_tokens", 100}, {"completion_tokens", 1}}}}
      .dump();
}

TEST_F(OracleFeaturesTest, RetryAfterHttpDateIsHonoured) {
  clock_.Advance(absl::FromUnixSeconds(1445412480) - clock_.Now());  // Wed, 21 Oct 2015 07:28:00
  std::atomic<int> n{0};
  ScriptedServer server([&](const httplib::Request&, httplib::Response& res) {
    if (n.fetch_add(1) == 0) {
      res.status = 429;
      res.set_header("retry-after", "Wed, 21 Oct 2015 07:28:07 GMT");
      res.set_content(R"({"error":{"message":"slow down","code":"rate_limit_exceeded"}})",
                      "application/json");
      return;
    }
    res.set_content(VerdictBody("A"), "application/json");
  });
  OracleConfig config;
  config.base_url = server.base_url();
  config.both_orders = false;
  config.use_logprobs = false;
  auto client = MakeClient(config);
  absl::Time before = clock_.Now();
  absl::StatusOr<Judgment> j = client->Compare({"q", "x", "y"});
  ASSERT_THAT(j, IsOk());
  EXPECT_EQ(clock_.Now() - before, absl::Seconds(7));
  EXPECT_EQ(j->retries, 1);
}

TEST_F(OracleFeaturesTest, XShouldRetryFalseStopsRetrying) {
  std::atomic<int> n{0};
  ScriptedServer server([&](const httplib::Request&, httplib::Response& res) {
    n.fetch_add(1);
    res.status = 503;
    res.set_header("x-should-retry", "false");
    res.set_content(R"({"error":{"message":"down"}})", "application/json");
  });
  OracleConfig config;
  config.base_url = server.base_url();
  config.both_orders = false;
  auto client = MakeClient(config);
  absl::StatusOr<Judgment> j = client->Compare({"q", "x", "y"});
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(n.load(), 1);
}

TEST_F(OracleFeaturesTest, RateLimitHeadersPauseUntilTheReset) {
  std::atomic<int> n{0};
  ScriptedServer server([&](const httplib::Request&, httplib::Response& res) {
    int k = n.fetch_add(1);
    // The server allows 2 requests, then says none remain for 20 s.
    res.set_header("x-ratelimit-remaining-requests", k < 1 ? "1" : "0");
    res.set_header("x-ratelimit-reset-requests", "20s");
    res.set_header("x-ratelimit-remaining-tokens", "1000000");
    res.set_header("x-ratelimit-reset-tokens", "6m0s");
    res.set_content(VerdictBody("A"), "application/json");
  });
  OracleConfig config;
  config.base_url = server.base_url();
  config.both_orders = false;
  config.use_logprobs = false;
  config.max_concurrency = 1;
  auto client = MakeClient(config);
  absl::Time start = clock_.Now();
  ASSERT_TRUE(client->Compare({"q", "1", "2"}).ok());
  ASSERT_TRUE(client->Compare({"q", "3", "4"}).ok());
  EXPECT_EQ(clock_.Now(), start);  // remaining 1 after the first: the second goes at once
  ASSERT_TRUE(client->Compare({"q", "5", "6"}).ok());
  EXPECT_EQ(clock_.Now() - start, absl::Seconds(20));  // remaining 0: waited for the reset
  EXPECT_EQ(n.load(), 3);
}

TEST_F(OracleFeaturesTest, ClientRateLimitHoldsRpmOnTheFakeClock) {
  auto server = StartServer();
  OracleConfig config = Config(*server);
  config.requests_per_minute = 20;
  config.both_orders = false;
  config.max_concurrency = 4;
  auto client = MakeClient(config);
  absl::Time start = clock_.Now();
  for (auto& j : RunAll(*client, Items(50))) ASSERT_TRUE(j.ok());
  // 50 requests at 20/min: the 21st waits for the first minute, the 41st for the second.
  EXPECT_GE(clock_.Now() - start, absl::Seconds(120));
  EXPECT_EQ(server->requests_served(), 50);
}

TEST_F(OracleFeaturesTest, CustomTemplateFileIsRendered) {
  std::atomic<int> n{0};
  std::string seen_system, seen_user;
  std::mutex mu;
  ScriptedServer server([&](const httplib::Request& req, httplib::Response& res) {
    n.fetch_add(1);
    nlohmann::json body = nlohmann::json::parse(req.body);
    std::lock_guard<std::mutex> lock(mu);
    seen_system = body["messages"][0]["content"];
    seen_user = body["messages"][1]["content"];
    res.set_content(VerdictBody("B"), "application/json");
  });
  std::string path = JoinPath(dir_, "tmpl.json");
  ASSERT_TRUE(
      WriteJsonFileAtomic(path, {{"id", "terse-v1"},
                                 {"kind", "pairwise"},
                                 {"system", "Be terse."},
                                 {"user", "Q: {instruction}\n1) {output_a}\n2) {output_b}"}})
          .ok());
  OracleConfig config;
  config.base_url = server.base_url();
  config.template_path = path;
  config.both_orders = false;
  config.use_logprobs = false;
  auto client = MakeClient(config);
  absl::StatusOr<Judgment> j = client->Compare({"why?", "because {output_b}", "no"});
  ASSERT_THAT(j, IsOk());
  EXPECT_EQ(j->p_a_wins, 0.0);
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(seen_system, "Be terse.");
  EXPECT_EQ(seen_user, "Q: why?\n1) because {output_b}\n2) no");

  config.template_path = JoinPath(dir_, "missing.json");
  EXPECT_FALSE(OracleClient::Create(config, nullptr, &clock_).ok());
}

// ---- Fault injection: 1,000 judgments per fault mode, then a restart on the same cache. -------

class FaultInjectionTest : public OracleFeaturesTest,
                           public ::testing::WithParamInterface<std::string> {};

TEST_P(FaultInjectionTest, EveryJudgmentRecordedOnceAndNothingPaidTwiceAfterRestart) {
  constexpr int kItems = 1000;
  JudgeServerOptions o;
  o.fault = GetParam();
  o.fault_rate = 0.05;
  o.slow_latency = absl::Milliseconds(300);
  o.retry_after = "1";
  auto faulty = StartServer(o);
  OracleConfig config = Config(*faulty);
  config.cache_path = JoinPath(dir_, "cache.sqlite");
  config.max_concurrency = 8;
  config.max_retries = 4;
  config.timeout = absl::Milliseconds(GetParam() == "slow" ? 150 : 5000);
  std::vector<Comparison> items = Items(kItems);

  int64_t ok1 = 0, failed1 = 0;
  int64_t cached_after_first = 0;
  {
    auto client = MakeClient(config);
    std::vector<absl::StatusOr<Judgment>> r = RunAll(*client, items);  // checks exactly-once
    for (size_t i = 0; i < r.size(); ++i) {
      if (r[i].ok()) {
        ++ok1;
        EXPECT_NEAR(r[i]->p_a_wins, i % 2 == 0 ? 0.99 : 0.01, 1e-9) << i;
      } else {
        ++failed1;
        // A failure is always the documented code of its cause, never a guess.
        if (GetParam() == "insufficient_quota") {
          EXPECT_THAT(r[i], StatusIs(absl::StatusCode::kResourceExhausted));
        } else {
          EXPECT_THAT(r[i], StatusIs(absl::StatusCode::kDataLoss));
        }
      }
    }
    OracleClient::Usage u = client->GetUsage();
    if (GetParam() == "slow") {
      // A request that timed out while still queued at the server never reached the handler.
      EXPECT_GE(u.calls, faulty->requests_served());
    } else {
      EXPECT_EQ(u.calls, faulty->requests_served());  // every attempt counted on both sides
    }
    EXPECT_EQ(u.failures, failed1);
    if (GetParam() == "insufficient_quota") {
      EXPECT_GT(failed1, 0);  // billing errors are not retried
    } else if (GetParam() == "bad_verdict" || GetParam() == "truncated_json") {
      // An unparsable answer is retried once (not with backoff): only a retry that lands on
      // another faulted request number fails, which concurrency makes possible but rare.
      EXPECT_LE(failed1, 10);
    } else {
      EXPECT_EQ(failed1, 0) << "retries should absorb a 5% " << GetParam() << " rate";
    }
    auto cache = oracle::JudgmentCache::Open(config.cache_path);
    ASSERT_TRUE(cache.ok());
    cached_after_first = *(*cache)->Size();
    // Every successful judgment has both orders stored; no answer was paid for twice in this run.
    EXPECT_GE(cached_after_first, 2 * ok1);
    EXPECT_LE(cached_after_first, 2 * kItems);
  }
  faulty->Stop();
  // Restart: a new client on the same DB, against a healthy judge.
  auto healthy = StartServer();
  config.base_url = healthy->base_url();
  auto client = MakeClient(config);
  std::vector<absl::StatusOr<Judgment>> r = RunAll(*client, items);
  for (size_t i = 0; i < r.size(); ++i) ASSERT_TRUE(r[i].ok()) << i << ": " << r[i].status();
  OracleClient::Usage u = client->GetUsage();
  EXPECT_EQ(u.cache_hits, cached_after_first);
  EXPECT_EQ(healthy->requests_served(), 2 * kItems - cached_after_first);
  EXPECT_EQ(u.calls, 2 * kItems - cached_after_first);
  RecordProperty("first_run_ok", static_cast<int>(ok1));
  RecordProperty("first_run_failed", static_cast<int>(failed1));
  RecordProperty("restart_http_requests", static_cast<int>(healthy->requests_served()));
  std::printf(
      "[fault %s] run1: ok=%lld failed=%lld requests=%lld; restart: cache_hits=%lld "
      "requests=%lld\n",
      GetParam().c_str(), static_cast<long long>(ok1), static_cast<long long>(failed1),
      static_cast<long long>(faulty->requests_served()), static_cast<long long>(u.cache_hits),
      static_cast<long long>(healthy->requests_served()));
}

INSTANTIATE_TEST_SUITE_P(AllFaults, FaultInjectionTest,
                         ::testing::Values("429", "500", "503", "slow", "truncated_json",
                                           "bad_verdict", "reset", "insufficient_quota"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (c == '_') c = 'X';
                           }
                           return absl::StrCat("Fault", name);
                         });

}  // namespace
}  // namespace spar::judge
