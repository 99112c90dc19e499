// OracleClient with oracle.kind "reward_model" against a real JudgeServer on 127.0.0.1:0 serving
// the arithmetic rule as a reward model (POST /pooling, vLLM's pooling API shape): the rewards it
// receives, P(a wins) = sigma(r_a - r_b) (pinned from Python: 1/(1+exp(-(r_a-r_b)))), each
// response scored once (memo without a cache file, the SQLite cache across processes), budgets,
// faults, and the questions a reward model cannot answer. Waits go through a FakeClock.
#include <stdlib.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "oracle_client/oracle_client.h"
#include "services/judge/judge_server.h"
#include "tests/testing/status_matchers.h"

namespace spar::judge {
namespace {

using ::spar::oracle::Comparison;
using ::spar::oracle::JobScope;
using ::spar::oracle::Judgment;
using ::spar::oracle::OracleClient;
using ::spar::oracle::OracleConfig;
using ::spar::oracle::OracleKind;
using ::spar::oracle::RewardResult;
using ::spar::oracle::ScoreItem;
using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;
using ::testing::HasSubstr;

class RewardModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/spar_reward_model_XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { RemoveAll(dir_).IgnoreError(); }

  void StartServer(JudgeServerOptions o = {}) {
    absl::StatusOr<std::unique_ptr<JudgeServer>> s = JudgeServer::Start(std::move(o));
    ASSERT_THAT(s, IsOk());
    server_ = *std::move(s);
  }

  // The server root, as vLLM serves /pooling (not under /v1).
  OracleConfig Config() const {
    OracleConfig c;
    c.kind = OracleKind::kRewardModel;
    c.base_url = absl::StrCat("http://127.0.0.1:", server_->port());
    c.model = "rule-rm";
    c.timeout = absl::Seconds(10);
    c.max_concurrency = 4;
    return c;
  }

  std::unique_ptr<OracleClient> MakeClient(OracleConfig config) {
    absl::StatusOr<std::unique_ptr<OracleClient>> c =
        OracleClient::Create(std::move(config), nullptr, &clock_);  // metrics kept private
    EXPECT_THAT(c, IsOk());
    return c.ok() ? *std::move(c) : nullptr;
  }

  std::string dir_;
  std::unique_ptr<JudgeServer> server_;
  FakeClock clock_;
};

TEST_F(RewardModelTest, RewardsAreTheModelsAndAComparisonIsTheSigmoidOfTheirDifference) {
  StartServer();
  auto client = MakeClient(Config());
  // The rule's rewards for "37+48=": correct 5, 1 off -ln 2, 5 off -ln 6, no number -5.
  const std::vector<std::pair<std::string, double>> want = {
      {"85", 5.0}, {"84", -0.6931471805599453}, {"90", -1.791759469228055}, {"no idea", -5.0}};
  for (const auto& [response, reward] : want) {
    absl::StatusOr<RewardResult> r = client->Reward(ScoreItem{"37+48=", response});
    ASSERT_THAT(r, IsOk());
    EXPECT_NEAR(r->reward, reward, 1e-12) << response;
    EXPECT_EQ(r->http_calls, 1);
  }
  // sigma(r_a - r_b), evaluated in Python.
  struct Case {
    std::string a, b;
    double p;
  } cases[] = {{"85", "84", 0.9966423383734974},
               {"84", "90", 0.7499999999999999},
               {"no idea", "85", 4.5397868702434395e-05},
               {"85", "85", 0.5}};
  for (const Case& c : cases) {
    absl::StatusOr<Judgment> j = client->Compare(Comparison{"37+48=", c.a, c.b});
    ASSERT_THAT(j, IsOk());
    EXPECT_NEAR(j->p_a_wins, c.p, 1e-12) << c.a << " vs " << c.b;
    EXPECT_EQ(j->p_ab, j->p_a_wins);
    EXPECT_EQ(j->p_ba, -1);
    EXPECT_EQ(j->cached_orders, 2);  // both rewards were known already
    nlohmann::json v = nlohmann::json::parse(j->verdict_ab);
    EXPECT_TRUE(v.contains("reward_a") && v.contains("reward_b")) << j->verdict_ab;
  }
  EXPECT_EQ(server_->requests_served(), 4);  // every reward asked once
  // What the reward model was sent: the conversation, prompt as user, response as assistant.
  std::vector<nlohmann::json> seen = server_->seen_requests();
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0]["instruction"], "37+48=");
  EXPECT_EQ(seen[0]["output"], "85");
  EXPECT_EQ(seen[0]["mode"], "reward");
  EXPECT_EQ(seen[0]["model"], "rule-rm");
}

TEST_F(RewardModelTest, EachResponseIsScoredOnceAcrossAllPairsAndAcrossProcessesWithACache) {
  StartServer();
  // All pairs of a prompt's 5 samples: 10 comparisons, 5 rewards.
  const std::vector<std::string> samples = {"85", "84", "83", "80", "none"};
  std::vector<Comparison> pairs;
  for (size_t i = 0; i < samples.size(); ++i) {
    for (size_t k = i + 1; k < samples.size(); ++k) {
      pairs.push_back(Comparison{"37+48=", samples[i], samples[k]});
    }
  }
  auto run = [&](OracleClient& client) {
    std::vector<double> p(pairs.size(), -1);
    client.CompareAll(pairs, [&](size_t i, absl::StatusOr<Judgment> j) {
      ASSERT_THAT(j, IsOk()) << i;
      p[i] = j->p_a_wins;
    });
    return p;
  };
  std::vector<double> first = run(*MakeClient(Config()));  // no cache file: the memo
  EXPECT_EQ(server_->requests_served(), 5);
  OracleConfig cached = Config();
  cached.cache_path = dir_ + "/judge.sqlite";
  EXPECT_EQ(run(*MakeClient(cached)), first);
  EXPECT_EQ(server_->requests_served(), 10);
  auto restarted = MakeClient(cached);  // another process's client on the same file pays nothing
  EXPECT_EQ(run(*restarted), first);
  EXPECT_EQ(server_->requests_served(), 10);
  EXPECT_EQ(restarted->GetUsage().calls, 0);
  // Both rewards of each comparison: from the file, or shared with an identical lookup in flight.
  EXPECT_EQ(restarted->GetUsage().cache_hits + restarted->GetUsage().shared, 20);
}

TEST_F(RewardModelTest, AJobBudgetRefusesTheNextRewardAndAResumedJobLosesNothing) {
  StartServer();
  auto client = MakeClient(Config());
  JobScope scope{"job-1", 1, {}};
  scope.budget.max_calls = 3;
  EXPECT_THAT(client->Compare(Comparison{"1+1=", "2", "3"}, scope), IsOk());
  EXPECT_THAT(client->Compare(Comparison{"1+1=", "2", "4"}, scope), IsOk());  // "2" known
  EXPECT_THAT(client->Compare(Comparison{"1+1=", "5", "6"}, scope),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("budget:")));
  EXPECT_EQ(server_->requests_served(), 3);  // "2", "3", "4"; the 4th call was never sent
  scope.budget.max_calls = 10;               // the job resumed with a larger budget
  absl::StatusOr<Judgment> j = client->Compare(Comparison{"1+1=", "5", "6"}, scope);
  ASSERT_THAT(j, IsOk());
  EXPECT_NEAR(j->p_a_wins, 5.0 / 9, 1e-12);  // 3 and 4 off: sigma(ln 5 - ln 4) = 5/9
  EXPECT_EQ(server_->requests_served(), 5);
  absl::StatusOr<oracle::JobUsage> used = client->GetJobUsage("job-1");
  ASSERT_THAT(used, IsOk());
  EXPECT_EQ(used->calls, 5);
}

TEST_F(RewardModelTest, FaultsAreRetriedAndABrokenAnswerIsNeverGuessed) {
  JudgeServerOptions flaky;
  flaky.fault = "500";
  flaky.fault_rate = 0.5;  // requests 1, 3, 5, ...
  StartServer(flaky);
  auto client = MakeClient(Config());
  absl::StatusOr<Judgment> j = client->Compare(Comparison{"2+2=", "4", "5"});
  ASSERT_THAT(j, IsOk());
  EXPECT_NEAR(j->p_a_wins, 0.9966423383734974, 1e-12);
  EXPECT_EQ(j->retries, 2);  // each reward's first request faulted
  client.reset();            // closes its keep-alive connections, so the server stops at once
  server_.reset();

  JudgeServerOptions broken_options;
  broken_options.fault = "bad_verdict";  // two values where one reward belongs
  StartServer(broken_options);
  auto broken = MakeClient(Config());
  EXPECT_THAT(broken->Reward(ScoreItem{"2+2=", "4"}),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("2 values")));
  EXPECT_EQ(server_->requests_served(), 2);  // asked once more, then refused
}

TEST_F(RewardModelTest, QuestionsARewardModelCannotAnswerAreRefused) {
  StartServer();
  auto client = MakeClient(Config());
  EXPECT_THAT(client->ScoreSideBySide({"1+1=", {"2", "3"}}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("dno_prct")));
  EXPECT_THAT(client->Score(ScoreItem{"1+1=", "2"}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("reward_model")));
  OracleConfig chat = Config();
  chat.kind = OracleKind::kChat;
  chat.base_url = server_->base_url();
  EXPECT_THAT(MakeClient(chat)->Reward(ScoreItem{"1+1=", "2"}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("reward_model")));
  EXPECT_EQ(server_->requests_served(), 0);
  OracleConfig with_template = Config();
  with_template.template_path = "judge.txt";
  EXPECT_THAT(OracleClient::Create(with_template, nullptr, &clock_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("oracle.template_path")));
}

TEST_F(RewardModelTest, ARewardModelAtTheWrongPathIsNotFoundNamingTheUrl) {
  StartServer();
  OracleConfig config = Config();
  config.base_url += "/nowhere";
  EXPECT_THAT(MakeClient(config)->Reward(ScoreItem{"1+1=", "2"}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nowhere")));
}

}  // namespace
}  // namespace spar::judge
