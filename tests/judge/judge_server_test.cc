// A real JudgeServer on 127.0.0.1:0 and a real OracleClient talking HTTP to it. Backoff waits go
// through a FakeClock, so no test sleeps; fault schedules are deterministic by request number.
#include "services/judge/judge_server.h"

#include <httplib.h>
#include <stdlib.h>

#include <atomic>
#include <cmath>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/file_util.h"
#include "common/metrics/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "oracle_client/judge_template.h"
#include "oracle_client/oracle_client.h"
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

class JudgeServerTest : public ::testing::Test {
 protected:
  void StartServer(JudgeServerOptions options = {}) {
    absl::StatusOr<std::unique_ptr<JudgeServer>> s = JudgeServer::Start(std::move(options));
    ASSERT_THAT(s, IsOk());
    server_ = *std::move(s);
  }

  OracleConfig ClientConfig() const {
    OracleConfig c;
    c.base_url = server_->base_url();
    c.timeout = absl::Seconds(10);
    c.max_concurrency = 4;
    return c;
  }

  // Only the first client of a test registers its metrics in registry_ (families are unique).
  std::unique_ptr<OracleClient> MakeClient(OracleConfig config) {
    absl::StatusOr<std::unique_ptr<OracleClient>> c =
        OracleClient::Create(std::move(config), registry_used_ ? nullptr : &registry_, &clock_);
    registry_used_ = true;
    EXPECT_THAT(c, IsOk());
    return c.ok() ? *std::move(c) : nullptr;
  }

  absl::Duration Slept() { return clock_.Now() - absl::UnixEpoch(); }

  // Declared first so that clients (declared in tests, destroyed first) close their keep-alive
  // connections before the server stops.
  std::unique_ptr<JudgeServer> server_;
  metrics::Registry registry_;
  bool registry_used_ = false;
  FakeClock clock_;
};

const Comparison kCorrectVsWrong{"37+48=", "85", "84"};

TEST_F(JudgeServerTest, CompareReturnsTheRightWinnerWithLogprobs) {
  StartServer();
  auto client = MakeClient(ClientConfig());
  ASSERT_NE(client, nullptr);
  absl::StatusOr<Judgment> j = client->Compare(kCorrectVsWrong);
  ASSERT_THAT(j, IsOk());
  EXPECT_NEAR(j->p_ab, 0.99, 1e-9);
  EXPECT_NEAR(j->p_ba, 0.01, 1e-9);
  EXPECT_NEAR(j->p_a_wins, 0.99, 1e-9);
  EXPECT_EQ(j->verdict_ab, "A");
  EXPECT_EQ(j->verdict_ba, "B");
  EXPECT_EQ(j->http_calls, 2);
  EXPECT_EQ(j->retries, 0);

  std::vector<nlohmann::json> seen = server_->seen_requests();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0]["instruction"], "37+48=");
  EXPECT_EQ(seen[0]["output_a"], "85");
  EXPECT_EQ(seen[0]["output_b"], "84");
  EXPECT_EQ(seen[1]["output_a"], "84");  // swapped order
  EXPECT_EQ(seen[1]["output_b"], "85");
  EXPECT_EQ(seen[0]["logprobs"], true);
  EXPECT_EQ(seen[0]["top_logprobs"], 5);
  EXPECT_EQ(seen[0]["model"], "spar-rule-judge");

  // The wrong answer first: the preference flips.
  j = client->Compare({"37+48=", "84", "85"});
  ASSERT_THAT(j, IsOk());
  EXPECT_NEAR(j->p_a_wins, 0.01, 1e-9);

  OracleClient::Usage u = client->GetUsage();
  EXPECT_EQ(u.calls, 4);
  EXPECT_EQ(u.retries, 0);
  EXPECT_EQ(u.failures, 0);
  EXPECT_GT(u.prompt_tokens, 4 * 20);
  EXPECT_EQ(u.completion_tokens, 4);
  EXPECT_EQ(Slept(), absl::ZeroDuration());
}

TEST_F(JudgeServerTest, RequestLogHasEachJudgedRequestAsItIsJudged) {
  char tmpl[] = "/tmp/spar_judge_log_XXXXXX";
  std::string dir = mkdtemp(tmpl);
  JudgeServerOptions o;
  o.request_log = JoinPath(dir, "requests.jsonl");
  StartServer(o);
  auto client = MakeClient(ClientConfig());
  ASSERT_TRUE(client->Compare(kCorrectVsWrong).ok());
  // Readable while the server runs (the kill test reads it mid-job).
  absl::StatusOr<std::vector<nlohmann::json>> lines = ReadJsonl(o.request_log);
  ASSERT_THAT(lines, IsOk());
  ASSERT_EQ(lines->size(), 2u);
  EXPECT_EQ((*lines)[0], server_->seen_requests()[0]);
  EXPECT_EQ((*lines)[1]["output_a"], "84");
  RemoveAll(dir).IgnoreError();
  JudgeServerOptions bad;
  bad.request_log = "/nonexistent-dir/requests.jsonl";
  absl::StatusOr<std::unique_ptr<JudgeServer>> s = JudgeServer::Start(bad);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("judge.request_log")));
}

TEST_F(JudgeServerTest, IdenticalAnswersDebiasToOneHalf) {
  StartServer();
  auto client = MakeClient(ClientConfig());
  absl::StatusOr<Judgment> j = client->Compare({"37+48=", "85", "85"});
  ASSERT_THAT(j, IsOk());
  EXPECT_GT(j->p_ab, 0.5);  // position A wins the tie in both orders...
  EXPECT_GT(j->p_ba, 0.5);
  EXPECT_NEAR(j->p_a_wins, 0.5, 1e-12);  // ...and debiasing cancels it
}

TEST_F(JudgeServerTest, ExactRuleTiesWrongAnswersAndStillRewardsTheCorrectOne) {
  JudgeServerOptions o;
  o.arith_rule = "exact";
  StartServer(o);
  auto client = MakeClient(ClientConfig());
  absl::StatusOr<Judgment> wrong = client->Compare({"37+48=", "84", "12"});  // closer vs farther
  ASSERT_THAT(wrong, IsOk());
  EXPECT_NEAR(wrong->p_a_wins, 0.5, 1e-12);
  absl::StatusOr<Judgment> right = client->Compare({"37+48=", "12", "85"});
  ASSERT_THAT(right, IsOk());
  EXPECT_LT(right->p_a_wins, 0.05);
  o.arith_rule = "nearest";
  absl::StatusOr<std::unique_ptr<JudgeServer>> bad = JudgeServer::Start(o);
  EXPECT_THAT(bad, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("judge.arith_rule")));
}

TEST_F(JudgeServerTest, TextVerdictsWithoutLogprobs) {
  StartServer();
  OracleConfig config = ClientConfig();
  config.use_logprobs = false;
  config.both_orders = false;
  auto client = MakeClient(config);
  absl::StatusOr<Judgment> j = client->Compare({"1+1=", "3", "2"});
  ASSERT_THAT(j, IsOk());
  EXPECT_EQ(j->p_ab, 0.0);
  EXPECT_EQ(j->p_ba, -1);
  EXPECT_EQ(j->p_a_wins, 0.0);
  EXPECT_EQ(j->verdict_ab, "B");
  EXPECT_EQ(j->http_calls, 1);
  ASSERT_EQ(server_->seen_requests().size(), 1u);
  EXPECT_EQ(server_->seen_requests()[0]["logprobs"], false);
}

TEST_F(JudgeServerTest, RateLimitIsRetriedHonouringRetryAfter) {
  JudgeServerOptions o;
  o.fault = "429";
  o.fault_rate = 0.5;  // requests 1 and 3 get a 429
  o.retry_after = "3";
  StartServer(o);
  auto client = MakeClient(ClientConfig());
  absl::StatusOr<Judgment> j = client->Compare(kCorrectVsWrong);
  ASSERT_THAT(j, IsOk());
  EXPECT_NEAR(j->p_a_wins, 0.99, 1e-9);
  EXPECT_EQ(j->http_calls, 4);
  EXPECT_EQ(j->retries, 2);
  EXPECT_EQ(Slept(), absl::Seconds(6));  // two waits of retry-after: 3
  EXPECT_EQ(server_->requests_served(), 4);
  EXPECT_THAT(registry_.Serialize(), HasSubstr("spar_oracle_http_requests_total{code=\"429\"} 2"));
  EXPECT_THAT(registry_.Serialize(), HasSubstr("spar_oracle_retries_total 2"));
}

TEST_F(JudgeServerTest, RetryAfterMsTakesPrecedence) {
  JudgeServerOptions o;
  o.fault = "503";
  o.fault_rate = 0.5;
  o.retry_after = "3";
  o.retry_after_ms = "1500";
  StartServer(o);
  auto client = MakeClient(ClientConfig());
  absl::StatusOr<Judgment> j = client->Compare(kCorrectVsWrong);
  ASSERT_THAT(j, IsOk());
  EXPECT_EQ(Slept(), absl::Seconds(3));  // 2 x 1.5 s
}

TEST_F(JudgeServerTest, ServerErrorIsRetriedWithJitteredBackoff) {
  JudgeServerOptions o;
  o.fault = "500";
  o.fault_rate = 0.5;
  StartServer(o);
  auto client = MakeClient(ClientConfig());
  absl::StatusOr<Judgment> j = client->Compare(kCorrectVsWrong);
  ASSERT_THAT(j, IsOk());
  EXPECT_EQ(j->retries, 2);
  // Each order waited 0.5 s x jitter in [0.75, 1].
  EXPECT_GE(Slept(), absl::Milliseconds(750));
  EXPECT_LE(Slept(), absl::Seconds(1));
}

TEST_F(JudgeServerTest, PersistentServerErrorExhaustsRetries) {
  JudgeServerOptions o;
  o.fault = "500";
  StartServer(o);
  OracleConfig config = ClientConfig();
  config.max_retries = 2;
  auto client = MakeClient(config);
  absl::StatusOr<Judgment> j = client->Compare(kCorrectVsWrong);
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("HTTP 500")));
  EXPECT_EQ(server_->requests_served(), 3);  // 1 + max_retries, then the other order is not asked
  EXPECT_GE(Slept(), absl::Milliseconds(1125));  // (0.5 + 1) x 0.75
  EXPECT_LE(Slept(), absl::Milliseconds(1500));
  EXPECT_EQ(client->GetUsage().failures, 1);
  EXPECT_THAT(registry_.Serialize(), HasSubstr("spar_oracle_judgments_total{result=\"failed\"} 1"));
}

TEST_F(JudgeServerTest, InsufficientQuotaIsNotRetried) {
  JudgeServerOptions o;
  o.fault = "insufficient_quota";
  StartServer(o);
  auto client = MakeClient(ClientConfig());
  absl::StatusOr<Judgment> j = client->Compare(kCorrectVsWrong);
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j, StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("insufficient_quota")));
  EXPECT_EQ(server_->requests_served(), 1);
  EXPECT_EQ(Slept(), absl::ZeroDuration());
}

TEST_F(JudgeServerTest, BadVerdictIsRetriedOnceThenAnError) {
  JudgeServerOptions o;
  o.fault = "bad_verdict";
  StartServer(o);
  auto client = MakeClient(ClientConfig());
  absl::StatusOr<Judgment> j = client->Compare(kCorrectVsWrong);
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j, StatusIs(absl::StatusCode::kDataLoss, HasSubstr("maybe")));
  EXPECT_EQ(server_->requests_served(), 2);
  EXPECT_EQ(Slept(), absl::ZeroDuration());
}

TEST_F(JudgeServerTest, OccasionalBadVerdictRecoversOnRetry) {
  JudgeServerOptions o;
  o.fault = "bad_verdict";
  o.fault_rate = 0.5;
  StartServer(o);
  auto client = MakeClient(ClientConfig());
  absl::StatusOr<Judgment> j = client->Compare(kCorrectVsWrong);
  ASSERT_THAT(j, IsOk());
  EXPECT_NEAR(j->p_a_wins, 0.99, 1e-9);
  EXPECT_EQ(j->http_calls, 4);
  EXPECT_EQ(j->retries, 2);
}

// A body cut short is a transport fault, not a bad answer: retried with backoff until the
// judgment deadline (issue #12 item 10), then Unavailable naming the deadline.
TEST_F(JudgeServerTest, TruncatedJsonIsRetriedUntilTheJudgmentDeadline) {
  JudgeServerOptions o;
  o.fault = "truncated_json";
  StartServer(o);
  OracleConfig config = ClientConfig();
  config.judgment_deadline = absl::Seconds(20);  // on the FakeClock: backoffs 0.5, 1, 2, 4, 8 s
  auto client = MakeClient(config);
  absl::StatusOr<Judgment> j = client->Compare(kCorrectVsWrong);
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("cut short")));
  EXPECT_THAT(std::string(j.status().message()), HasSubstr("judgment_deadline_s = 20"));
  EXPECT_GE(server_->requests_served(), 5);
  EXPECT_LE(server_->requests_served(), 7);
  EXPECT_LE(Slept(), absl::Seconds(20));
}

TEST_F(JudgeServerTest, TruncatedJsonNowAndThenLosesNothing) {
  JudgeServerOptions o;
  o.fault = "truncated_json";
  o.fault_rate = 0.5;
  StartServer(o);
  auto client = MakeClient(ClientConfig());
  absl::StatusOr<Judgment> j = client->Compare(kCorrectVsWrong);
  ASSERT_THAT(j, IsOk());
  EXPECT_NEAR(j->p_a_wins, 0.99, 1e-9);
  EXPECT_EQ(j->http_calls, 4);
}

TEST_F(JudgeServerTest, ConnectionResetIsRetried) {
  JudgeServerOptions o;
  o.fault = "reset";
  o.fault_rate = 0.5;
  StartServer(o);
  auto client = MakeClient(ClientConfig());
  absl::StatusOr<Judgment> j = client->Compare(kCorrectVsWrong);
  ASSERT_THAT(j, IsOk());
  EXPECT_NEAR(j->p_a_wins, 0.99, 1e-9);
  EXPECT_EQ(j->http_calls, 4);
  EXPECT_THAT(registry_.Serialize(),
              HasSubstr("spar_oracle_http_requests_total{code=\"error\"} 2"));
}

TEST_F(JudgeServerTest, SlowJudgeTimesOut) {
  JudgeServerOptions o;
  o.fault = "slow";
  o.slow_latency = absl::Milliseconds(600);
  StartServer(o);
  OracleConfig config = ClientConfig();
  config.timeout = absl::Milliseconds(100);
  config.max_retries = 0;
  auto client = MakeClient(config);
  absl::StatusOr<Judgment> j = client->Compare(kCorrectVsWrong);
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("no response")));
}

TEST_F(JudgeServerTest, CompareAllCallsBackOncePerIndexSerialized) {
  StartServer();
  auto client = MakeClient(ClientConfig());
  std::vector<Comparison> items;
  for (int i = 0; i < 40; ++i) {
    int a = i, b = 2 * i + 1;
    std::string truth = std::to_string(a + b);
    std::string wrong = std::to_string(a + b + 1 + i % 3);
    items.push_back(i % 2 == 0 ? Comparison{absl::StrCat(a, "+", b, "="), truth, wrong}
                               : Comparison{absl::StrCat(a, "+", b, "="), wrong, truth});
  }
  std::vector<int> calls(items.size(), 0);
  std::vector<double> p(items.size(), -1);
  std::atomic<int> inside{0};
  bool overlapped = false;
  client->CompareAll(items, [&](size_t i, absl::StatusOr<Judgment> j) {
    if (inside.fetch_add(1) != 0) overlapped = true;
    ASSERT_LT(i, items.size());
    ++calls[i];
    ASSERT_THAT(j, IsOk());
    p[i] = j->p_a_wins;
    inside.fetch_sub(1);
  });
  EXPECT_FALSE(overlapped);
  for (size_t i = 0; i < items.size(); ++i) {
    EXPECT_EQ(calls[i], 1) << i;
    EXPECT_NEAR(p[i], i % 2 == 0 ? 0.99 : 0.01, 1e-9) << i;
  }
  EXPECT_EQ(server_->requests_served(), 80);
  EXPECT_EQ(client->GetUsage().calls, 80);
}

TEST_F(JudgeServerTest, CompareAllStopsWhenCancelled) {
  StartServer();
  auto client = MakeClient(ClientConfig());
  std::vector<Comparison> items(10, kCorrectVsWrong);
  int cancelled = 0, done = 0;
  client->CompareAll(
      items,
      [&](size_t, absl::StatusOr<Judgment> j) {
        ++done;
        if (!j.ok() && j.status().code() == absl::StatusCode::kCancelled) ++cancelled;
      },
      [] { return true; });
  EXPECT_EQ(done, 10);
  EXPECT_EQ(cancelled, 10);
  EXPECT_EQ(server_->requests_served(), 0);
}

TEST_F(JudgeServerTest, AuthorizationIsEnforced) {
  JudgeServerOptions o;
  o.api_key = "sk-spar-test";
  StartServer(o);
  {
    auto anonymous = MakeClient(ClientConfig());
    absl::StatusOr<Judgment> j = anonymous->Compare(kCorrectVsWrong);
    ASSERT_FALSE(j.ok());
    EXPECT_THAT(j, StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("HTTP 401")));
    EXPECT_EQ(anonymous->GetUsage().calls, 1);  // 401 is not retried
  }
  {
    OracleConfig config = ClientConfig();
    config.api_key = "wrong";
    auto wrong = MakeClient(config);
    EXPECT_THAT(wrong->Compare(kCorrectVsWrong), StatusIs(absl::StatusCode::kUnauthenticated));
  }
  OracleConfig config = ClientConfig();
  config.api_key = "sk-spar-test";
  auto authorized = MakeClient(config);
  absl::StatusOr<Judgment> j = authorized->Compare(kCorrectVsWrong);
  ASSERT_THAT(j, IsOk());
  EXPECT_NEAR(j->p_a_wins, 0.99, 1e-9);
}

TEST_F(JudgeServerTest, UnreachableJudgeIsUnavailable) {
  StartServer();
  OracleConfig config = ClientConfig();
  server_->Stop();  // nothing listens on the port any more
  config.max_retries = 1;
  auto client = MakeClient(config);
  absl::StatusOr<Judgment> j = client->Compare(kCorrectVsWrong);
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(client->GetUsage().calls, 2);
}

TEST_F(JudgeServerTest, HttpsToAClosedLoopbackPortIsUnavailable) {
  StartServer();
  OracleConfig config = ClientConfig();
  config.base_url = absl::StrCat("https://127.0.0.1:", server_->port(), "/v1");
  server_->Stop();
  config.max_retries = 0;
  auto client = MakeClient(config);
  absl::StatusOr<Judgment> j = client->Compare(kCorrectVsWrong);
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j, StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(JudgeServerTest, HttpsToAPlainHttpServerFailsWithoutRetryingForever) {
  StartServer();
  OracleConfig config = ClientConfig();
  config.base_url = absl::StrCat("https://127.0.0.1:", server_->port(), "/v1");
  config.max_retries = 1;
  config.timeout = absl::Seconds(2);
  auto client = MakeClient(config);
  absl::StatusOr<Judgment> j = client->Compare(kCorrectVsWrong);
  ASSERT_FALSE(j.ok());
  EXPECT_EQ(server_->requests_served(), 0);  // the TLS handshake never became a request
}

TEST_F(JudgeServerTest, ServesOpenAiShapedResponsesAndErrors) {
  StartServer();
  httplib::Client http("127.0.0.1", server_->port());
  auto health = http.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto models = http.Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(nlohmann::json::parse(models->body)["data"][0]["id"], "spar-rule-judge");

  auto bad_json = http.Post("/v1/chat/completions", "{not json", "application/json");
  ASSERT_TRUE(bad_json);
  EXPECT_EQ(bad_json->status, 400);
  EXPECT_EQ(nlohmann::json::parse(bad_json->body)["error"]["type"], "invalid_request_error");

  nlohmann::json foreign = {{"model", "m"},
                            {"messages", {{{"role", "user"}, {"content", "Is 2+2=4?"}}}}};
  auto not_template = http.Post("/v1/chat/completions", foreign.dump(), "application/json");
  ASSERT_TRUE(not_template);
  EXPECT_EQ(not_template->status, 400);

  nlohmann::json req = {
      {"model", "m"},
      {"messages",
       {{{"role", "system"}, {"content", oracle::JudgeSystemPrompt()}},
        {{"role", "user"}, {"content", oracle::RenderJudgeUserMessage("2+2=", "5", "4")}}}},
      {"max_tokens", 1},
      {"logprobs", true},
      {"top_logprobs", 1}};
  auto ok = http.Post("/v1/chat/completions", req.dump(), "application/json");
  ASSERT_TRUE(ok);
  ASSERT_EQ(ok->status, 200);
  nlohmann::json body = nlohmann::json::parse(ok->body);
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_EQ(body["model"], "m");
  EXPECT_EQ(body["choices"][0]["message"]["content"], "B");
  EXPECT_EQ(body["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(body["choices"][0]["logprobs"]["content"][0]["top_logprobs"].size(), 1u);
  EXPECT_EQ(body["usage"]["completion_tokens"], 1);
  EXPECT_EQ(body["usage"]["total_tokens"].get<int>(),
            body["usage"]["prompt_tokens"].get<int>() + 1);
}

// The rule as a reward model, in the shape of vLLM's pooling API (POST /pooling at the root).
TEST_F(JudgeServerTest, ServesTheRuleAsARewardModelOnThePoolingApi) {
  StartServer();
  httplib::Client http("127.0.0.1", server_->port());
  auto reward_of = [&](const std::string& prompt, const std::string& response) {
    nlohmann::json req = {{"model", "rm"},
                          {"messages",
                           {{{"role", "user"}, {"content", prompt}},
                            {{"role", "assistant"}, {"content", response}}}}};
    auto r = http.Post("/pooling", req.dump(), "application/json");
    EXPECT_TRUE(r && r->status == 200);
    nlohmann::json body = r ? nlohmann::json::parse(r->body) : nlohmann::json();
    EXPECT_EQ(body["object"], "list");
    EXPECT_EQ(body["model"], "rm");
    EXPECT_EQ(body["data"][0]["object"], "pooling");
    EXPECT_GT(body["usage"]["prompt_tokens"].get<int>(), 0);
    return body["data"][0]["data"][0].get<double>();
  };
  EXPECT_EQ(reward_of("12+30=", "42"), 5.0);
  EXPECT_EQ(reward_of("12+30=", "45"), -std::log1p(3.0));
  EXPECT_EQ(reward_of("12+30=", "12345678"), -4.0);     // far off: the floor
  EXPECT_EQ(reward_of("12+30=", "forty-two"), -5.0);    // no number
  EXPECT_EQ(reward_of("Write a poem.", "Roses"), 0.0);  // not arithmetic
  nlohmann::json text_only = {{"model", "rm"}, {"input", "12+30=42"}};
  auto bad = http.Post("/pooling", text_only.dump(), "application/json");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_THAT(nlohmann::json::parse(bad->body)["error"]["message"].get<std::string>(),
              ::testing::HasSubstr("messages"));
}

TEST(JudgeServerOptionsTest, RejectsBadOptions) {
  JudgeServerOptions o;
  o.fault = "explode";
  EXPECT_THAT(JudgeServer::Start(o), StatusIs(absl::StatusCode::kInvalidArgument));
  o.fault = "429";
  o.fault_rate = 1.5;
  EXPECT_THAT(JudgeServer::Start(o), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace spar::judge
