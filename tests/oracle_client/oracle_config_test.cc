#include "oracle_client/oracle_config.h"

#include <cstdlib>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace spar::oracle {
namespace {

using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;
using ::testing::HasSubstr;

TEST(OracleConfigTest, ParsesAllFields) {
  nlohmann::json j = {{"base_url", "http://127.0.0.1:8081/v1"},
                      {"model", "judge-x"},
                      {"max_concurrency", 4},
                      {"timeout_s", 2.5},
                      {"max_retries", 6},
                      {"judgment_deadline_s", 90},
                      {"retry_backoff_initial_s", 0.01},
                      {"retry_backoff_max_s", 0.2},
                      {"both_orders", false},
                      {"use_logprobs", false}};
  absl::StatusOr<OracleConfig> c = ParseOracleConfig(j);
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->base_url, "http://127.0.0.1:8081/v1");
  EXPECT_EQ(c->model, "judge-x");
  EXPECT_EQ(c->max_concurrency, 4);
  EXPECT_EQ(c->timeout, absl::Milliseconds(2500));
  EXPECT_EQ(c->max_retries, 6);
  EXPECT_EQ(c->judgment_deadline, absl::Seconds(90));
  EXPECT_EQ(c->retry_backoff_initial, absl::Milliseconds(10));
  EXPECT_EQ(c->retry_backoff_max, absl::Milliseconds(200));
  EXPECT_FALSE(c->both_orders);
  EXPECT_FALSE(c->use_logprobs);
  EXPECT_TRUE(c->api_key.empty());
  EXPECT_TRUE(Validate(*c).ok());
}

TEST(OracleConfigTest, DefaultsWhenAbsent) {
  absl::StatusOr<OracleConfig> c =
      ParseOracleConfig({{"base_url", "https://judge.example.com/v1"}});
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->model, "spar-rule-judge");
  EXPECT_EQ(c->max_concurrency, 8);
  EXPECT_EQ(c->timeout, absl::Seconds(30));
  EXPECT_EQ(c->max_retries, -1);  // no count limit: retries end at the judgment deadline
  EXPECT_EQ(c->judgment_deadline, absl::Minutes(10));
  EXPECT_TRUE(c->both_orders);
  EXPECT_TRUE(c->use_logprobs);
  EXPECT_TRUE(Validate(*c).ok());
}

TEST(OracleConfigTest, KindIsChatByDefaultOrARewardModel) {
  absl::StatusOr<OracleConfig> chat = ParseOracleConfig({{"base_url", "http://127.0.0.1:1/v1"}});
  ASSERT_THAT(chat, IsOk());
  EXPECT_EQ(chat->kind, OracleKind::kChat);
  absl::StatusOr<OracleConfig> rm =
      ParseOracleConfig({{"kind", "reward_model"}, {"base_url", "http://127.0.0.1:8000"}});
  ASSERT_THAT(rm, IsOk());
  EXPECT_EQ(rm->kind, OracleKind::kRewardModel);
  EXPECT_THAT(Validate(*rm), IsOk());
  EXPECT_EQ(RedactedOracleConfig(*rm)["kind"], "reward_model");
  EXPECT_THAT(ParseOracleConfig({{"kind", "pairwise"}, {"base_url", "http://127.0.0.1:1"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("oracle.kind")));
  EXPECT_THAT(ParseOracleConfig({{"kind", 1}, {"base_url", "http://127.0.0.1:1"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("oracle.kind")));
  rm->score_template_path = "score.txt";
  EXPECT_THAT(Validate(*rm), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("oracle.score_template_path")));
}

TEST(OracleConfigTest, RejectsUnknownKeyNamingIt) {
  absl::StatusOr<OracleConfig> c =
      ParseOracleConfig({{"base_url", "http://127.0.0.1/v1"}, {"max_retry", 3}});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_retry")));
}

TEST(OracleConfigTest, RejectsApiKeyInConfig) {
  absl::StatusOr<OracleConfig> c = ParseOracleConfig({{"api_key", "sk-secret"}});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("api_key_env"));
  EXPECT_THAT(std::string(c.status().message()), ::testing::Not(HasSubstr("sk-secret")));
}

TEST(OracleConfigTest, RejectsWrongTypes) {
  EXPECT_FALSE(ParseOracleConfig({{"max_concurrency", "8"}}).ok());
  EXPECT_FALSE(ParseOracleConfig({{"max_concurrency", 1.5}}).ok());
  EXPECT_FALSE(ParseOracleConfig({{"timeout_s", "30"}}).ok());
  EXPECT_FALSE(ParseOracleConfig({{"timeout_s", 0}}).ok());
  EXPECT_FALSE(ParseOracleConfig({{"both_orders", 1}}).ok());
  EXPECT_FALSE(ParseOracleConfig(nlohmann::json::array()).ok());
}

// The key itself is read at the edge (services::ResolveJudgeApiKey, tested in
// tests/services/judge_api_key_test.cc); the library keeps the variable's name and never reads
// the environment, and never logs a key it is given.
TEST(OracleConfigTest, KeepsApiKeyEnvAndLeavesTheKeyToTheEdge) {
  ::setenv("SPAR_TEST_ORACLE_KEY", "sk-test", 1);
  absl::StatusOr<OracleConfig> c = ParseOracleConfig(
      {{"base_url", "http://localhost:1/v1"}, {"api_key_env", "SPAR_TEST_ORACLE_KEY"}});
  ::unsetenv("SPAR_TEST_ORACLE_KEY");
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->api_key_env, "SPAR_TEST_ORACLE_KEY");
  EXPECT_EQ(c->api_key, "");
  c->api_key = "sk-test";
  EXPECT_EQ(RedactedOracleConfig(*c)["api_key"], "<redacted>");
  EXPECT_EQ(RedactedOracleConfig(*c).dump().find("sk-test"), std::string::npos);
}

TEST(OracleConfigTest, RequiresHttpsUnlessLoopback) {
  OracleConfig c;
  for (const char* ok :
       {"http://127.0.0.1:8081/v1", "http://127.1.2.3/v1", "http://localhost:80",
        "http://[::1]:8081/v1", "https://api.openai.com/v1", "https://10.0.0.5:8443/v1/"}) {
    c.base_url = ok;
    EXPECT_TRUE(Validate(c).ok()) << ok << ": " << Validate(c);
  }
  for (const char* bad : {"http://10.0.0.5:8081/v1", "http://judge.internal/v1",
                          "http://128.0.0.1/v1", "http://127.0.0.1.evil.com/v1"}) {
    c.base_url = bad;
    absl::Status st = Validate(c);
    EXPECT_THAT(st, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("https"))) << bad;
  }
}

TEST(OracleConfigTest, AllowHttpHostsIsAnExplicitPerHostOptIn) {
  absl::StatusOr<OracleConfig> c = ParseOracleConfig(
      {{"base_url", "http://spar-judge:8081/v1"}, {"allow_http_hosts", {"spar-judge"}}});
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->allow_http_hosts, std::vector<std::string>{"spar-judge"});
  EXPECT_THAT(Validate(*c), IsOk());
  EXPECT_EQ(RedactedOracleConfig(*c)["allow_http_hosts"], nlohmann::json({"spar-judge"}));

  // Only the named host: another plain-http host is still refused, and the error names the
  // opt-in.
  c->base_url = "http://other-judge:8081/v1";
  absl::Status st = Validate(*c);
  EXPECT_THAT(st,
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("oracle.allow_http_hosts")));
  EXPECT_THAT(std::string(st.message()), HasSubstr("--judge_allow_http_host=other-judge"));

  // Not listed at all: refused as before.
  OracleConfig plain;
  plain.base_url = "http://spar-judge:8081/v1";
  EXPECT_THAT(Validate(plain), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(OracleConfigTest, RejectsMalformedAllowHttpHostsNamingTheEntry) {
  EXPECT_THAT(
      std::string(ParseOracleConfig({{"allow_http_hosts", "spar-judge"}}).status().message()),
      HasSubstr("oracle.allow_http_hosts"));
  EXPECT_THAT(std::string(ParseOracleConfig({{"allow_http_hosts", {1}}}).status().message()),
              HasSubstr("oracle.allow_http_hosts"));
  OracleConfig c;
  c.base_url = "https://judge.example.com/v1";
  for (const char* bad : {"", "http://spar-judge", "spar-judge:8081", "spar-judge/v1", "a b"}) {
    c.allow_http_hosts = {"ok-host", bad};
    absl::Status st = Validate(c);
    EXPECT_THAT(
        st, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("oracle.allow_http_hosts[1]")))
        << bad;
  }
}

TEST(OracleConfigTest, ValidateRules) {
  OracleConfig c;
  c.base_url = "http://127.0.0.1:1/v1";
  ASSERT_TRUE(Validate(c).ok());
  OracleConfig bad = c;
  bad.base_url = "";
  EXPECT_THAT(std::string(Validate(bad).message()), HasSubstr("base_url"));
  for (const char* url :
       {"ftp://127.0.0.1/", "127.0.0.1:80", "http://:80/v1", "http://127.0.0.1:0/",
        "http://127.0.0.1:99999/", "http://127.0.0.1/v1?x=1", "http://user@127.0.0.1/"}) {
    bad.base_url = url;
    EXPECT_THAT(Validate(bad), StatusIs(absl::StatusCode::kInvalidArgument)) << url;
  }
  bad = c;
  bad.max_concurrency = 0;
  EXPECT_THAT(std::string(Validate(bad).message()), HasSubstr("max_concurrency"));
  bad = c;
  bad.timeout = absl::ZeroDuration();
  EXPECT_THAT(std::string(Validate(bad).message()), HasSubstr("timeout"));
  bad = c;
  bad.max_retries = -2;
  EXPECT_THAT(std::string(Validate(bad).message()), HasSubstr("max_retries"));
  bad = c;
  bad.judgment_deadline = absl::ZeroDuration();
  EXPECT_THAT(std::string(Validate(bad).message()), HasSubstr("judgment_deadline"));
  bad = c;
  bad.retry_backoff_initial = absl::Seconds(9);
  EXPECT_THAT(std::string(Validate(bad).message()), HasSubstr("retry_backoff_initial"));
  EXPECT_THAT(ParseOracleConfig({{"judgment_deadline_s", 0}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(std::string(ParseOracleConfig({{"retry_backoff_max_s", "1"}}).status().message()),
              HasSubstr("retry_backoff_max_s"));
  bad = c;
  bad.model = "";
  EXPECT_THAT(std::string(Validate(bad).message()), HasSubstr("model"));
}

}  // namespace
}  // namespace spar::oracle

namespace spar::oracle {
namespace {

TEST(OracleConfigTest, ParsesCacheRateLimitBudgetAndTemplateFields) {
  nlohmann::json j = {{"base_url", "http://127.0.0.1:8081/v1"},
                      {"cache_path", "/tmp/j.sqlite"},
                      {"requests_per_minute", 500},
                      {"tokens_per_minute", 200000},
                      {"budget_calls", 1000},
                      {"budget_tokens", 5000000},
                      {"budget_cost_usd", 12.5},
                      {"price_prompt_per_1k_usd", 0.01},
                      {"price_completion_per_1k_usd", 0.03},
                      {"template_path", "t.json"},
                      {"score_template_path", "s.json"},
                      {"max_response_tokens", 400}};
  absl::StatusOr<OracleConfig> c = ParseOracleConfig(j);
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->cache_path, "/tmp/j.sqlite");
  EXPECT_EQ(c->requests_per_minute, 500);
  EXPECT_EQ(c->tokens_per_minute, 200000);
  EXPECT_EQ(c->budget_calls, 1000);
  EXPECT_EQ(c->budget_tokens, 5000000);
  EXPECT_DOUBLE_EQ(c->budget_cost_usd, 12.5);
  EXPECT_DOUBLE_EQ(c->price_prompt_per_1k_usd, 0.01);
  EXPECT_DOUBLE_EQ(c->price_completion_per_1k_usd, 0.03);
  EXPECT_EQ(c->template_path, "t.json");
  EXPECT_EQ(c->score_template_path, "s.json");
  EXPECT_EQ(c->max_response_tokens, 400);
  EXPECT_TRUE(Validate(*c).ok());
  EXPECT_EQ(RedactedOracleConfig(*c)["budget_cost_usd"], 12.5);
}

TEST(OracleConfigTest, ValidatesNewRulesOneByOne) {
  auto invalid = [](void (*mutate)(OracleConfig&)) {
    OracleConfig c;
    c.base_url = "http://127.0.0.1:1/v1";
    mutate(c);
    return std::string(Validate(c).message());
  };
  EXPECT_THAT(invalid([](OracleConfig& c) { c.requests_per_minute = -1; }),
              HasSubstr("requests_per_minute"));
  EXPECT_THAT(invalid([](OracleConfig& c) { c.tokens_per_minute = -1; }),
              HasSubstr("tokens_per_minute"));
  EXPECT_THAT(invalid([](OracleConfig& c) { c.budget_calls = -1; }), HasSubstr("budget_calls"));
  EXPECT_THAT(invalid([](OracleConfig& c) { c.price_prompt_per_1k_usd = -0.1; }),
              HasSubstr("price_prompt_per_1k_usd"));
  EXPECT_THAT(invalid([](OracleConfig& c) { c.budget_cost_usd = 5; }),
              HasSubstr("both prices are 0"));
  EXPECT_THAT(invalid([](OracleConfig& c) { c.max_response_tokens = -5; }),
              HasSubstr("max_response_tokens"));
  EXPECT_FALSE(ParseOracleConfig({{"budget_calls", 1.5}}).ok());
  EXPECT_FALSE(ParseOracleConfig({{"budget_cost_usd", "5"}}).ok());
  EXPECT_THAT(std::string(ParseOracleConfig({{"cache_pth", "x"}}).status().message()),
              HasSubstr("cache_pth"));
}

}  // namespace
}  // namespace spar::oracle
