// The gRPC Oracle service over an in-process channel, with a real OracleClient and JudgeServer:
// Compare streams one judgment per comparison (budget-refused ones as ok=false with the reason),
// a repeated request is served from the judgment cache, and GetUsage reports calls, tokens,
// cost, cache hits/misses and swap consistency; Score streams one side-by-side result per item.
#include "services/oracle/oracle_service.h"

#include <grpcpp/grpcpp.h>
#include <stdlib.h>

#include <map>
#include <memory>
#include <set>

#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/metrics/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "oracle_client/oracle_client.h"
#include "services/common/server_runner.h"
#include "services/judge/judge_server.h"
#include "spar/v1/oracle.grpc.pb.h"
#include "tests/testing/status_matchers.h"

namespace spar::services {
namespace {

using ::spar::testing::IsOk;

class OracleServiceTest : public ::testing::Test {
 protected:
  void Start(oracle::OracleConfig config, judge::JudgeServerOptions judge_options = {}) {
    char tmpl[] = "/tmp/spar_oracle_service_XXXXXX";
    dir_ = mkdtemp(tmpl);
    auto judge = judge::JudgeServer::Start(judge_options);
    ASSERT_THAT(judge, IsOk());
    judge_ = *std::move(judge);
    config.base_url = judge_->base_url();
    config.cache_path = JoinPath(dir_, "cache.sqlite");
    auto client = oracle::OracleClient::Create(config, &registry_);
    ASSERT_THAT(client, IsOk());
    client_ = *std::move(client);
    service_ = std::make_unique<OracleService>(*client_, registry_);
    ServerRunnerOptions o;
    o.metrics_port = -1;
    o.services = {service_.get()};
    auto runner = ServerRunner::Start(o);
    ASSERT_THAT(runner, IsOk());
    runner_ = *std::move(runner);
    stub_ = v1::Oracle::NewStub(runner_->InProcessChannel());
  }
  void TearDown() override {
    if (runner_) runner_->Shutdown();
    runner_.reset();
    service_.reset();
    client_.reset();
    judge_.reset();
    if (!dir_.empty()) RemoveAll(dir_).IgnoreError();
  }

  static v1::CompareRequest Request(int n) {
    v1::CompareRequest req;
    req.set_idempotency_key("job/iter_001/judge");
    for (int i = 0; i < n; ++i) {
      v1::Comparison* c = req.add_comparisons();
      c->set_prompt(std::to_string(i) + "+1=");
      c->set_response_a(std::to_string(i + 1));
      c->set_response_b(std::to_string(i + 2));
    }
    return req;
  }

  std::map<int64_t, v1::Judgment> Compare(int n) {
    v1::CompareRequest req = Request(n);
    grpc::ClientContext ctx;
    auto reader = stub_->Compare(&ctx, req);
    std::map<int64_t, v1::Judgment> out;
    v1::Judgment j;
    while (reader->Read(&j)) {
      EXPECT_EQ(out.count(j.index()), 0u) << "index " << j.index() << " twice";
      out[j.index()] = j;
    }
    grpc::Status st = reader->Finish();
    EXPECT_TRUE(st.ok()) << st.error_message();
    return out;
  }

  v1::GetUsageResponse Usage() {
    grpc::ClientContext ctx;
    v1::GetUsageResponse resp;
    grpc::Status st = stub_->GetUsage(&ctx, v1::GetUsageRequest(), &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp;
  }

  std::string dir_;
  metrics::Registry registry_;
  std::unique_ptr<judge::JudgeServer> judge_;
  std::unique_ptr<oracle::OracleClient> client_;
  std::unique_ptr<OracleService> service_;
  std::unique_ptr<ServerRunner> runner_;
  std::unique_ptr<v1::Oracle::Stub> stub_;
};

TEST_F(OracleServiceTest, RetriedCompareIsFreeAndUsageReportsCacheAndCost) {
  oracle::OracleConfig config;
  config.price_prompt_per_1k_usd = 0.5;
  config.price_completion_per_1k_usd = 1.5;
  Start(config);
  std::map<int64_t, v1::Judgment> first = Compare(10);
  ASSERT_EQ(first.size(), 10u);
  for (auto& [i, j] : first) {
    EXPECT_TRUE(j.ok()) << j.error();
    EXPECT_NEAR(j.p_a_wins(), 0.99, 1e-9);
  }
  v1::GetUsageResponse u = Usage();
  EXPECT_EQ(u.calls(), 20);
  EXPECT_EQ(u.cache_misses(), 20);
  EXPECT_EQ(u.cache_hits(), 0);
  EXPECT_GT(u.cost(), 0);
  EXPECT_EQ(u.swap_judgments(), 10);
  EXPECT_DOUBLE_EQ(u.swap_consistency(), 1.0);
  // The orchestrator retrying the same stage (same idempotency key) pays nothing.
  std::map<int64_t, v1::Judgment> again = Compare(10);
  ASSERT_EQ(again.size(), 10u);
  v1::GetUsageResponse u2 = Usage();
  EXPECT_EQ(u2.calls(), 20);
  EXPECT_EQ(u2.cache_hits(), 20);
  EXPECT_DOUBLE_EQ(u2.cost(), u.cost());
  EXPECT_EQ(judge_->requests_served(), 20);
}

TEST_F(OracleServiceTest, ScoreStreamsOneResultPerItemAndARepeatIsFree) {
  Start(oracle::OracleConfig());
  v1::ScoreRequest req;
  req.set_idempotency_key("job/iter_001/judge");
  req.set_job_id("job");
  req.set_round(1);
  for (int i = 0; i < 5; ++i) {
    v1::ScoreItem* item = req.add_items();
    item->set_prompt(std::to_string(i) + "+1=");
    item->add_responses(std::to_string(i + 2));  // wrong: 1
    item->add_responses(std::to_string(i + 1));  // right: 6
    item->add_responses("pass");                 // no number: 0
  }
  auto run = [&] {
    grpc::ClientContext ctx;
    auto reader = stub_->Score(&ctx, req);
    std::map<int64_t, v1::ScoreResult> out;
    v1::ScoreResult r;
    while (reader->Read(&r)) {
      EXPECT_EQ(out.count(r.index()), 0u) << "index " << r.index() << " twice";
      out[r.index()] = r;
    }
    grpc::Status st = reader->Finish();
    EXPECT_TRUE(st.ok()) << st.error_message();
    return out;
  };
  std::map<int64_t, v1::ScoreResult> first = run();
  ASSERT_EQ(first.size(), 5u);
  for (auto& [i, r] : first) {
    ASSERT_TRUE(r.ok()) << r.error();
    EXPECT_THAT(r.scores(), ::testing::ElementsAre(1, 6, 0));
    EXPECT_EQ(r.order_size(), 3);
    EXPECT_FALSE(r.verdict().empty());
  }
  EXPECT_EQ(judge_->requests_served(), 5);
  std::map<int64_t, v1::ScoreResult> again = run();
  ASSERT_EQ(again.size(), 5u);
  for (auto& [i, r] : again) EXPECT_THAT(r.scores(), ::testing::ElementsAre(1, 6, 0));
  EXPECT_EQ(judge_->requests_served(), 5);
  EXPECT_EQ(Usage().cache_hits(), 5);
  // Bad requests are INVALID_ARGUMENT naming the field.
  v1::ScoreRequest bad = req;
  bad.mutable_items(2)->clear_responses();
  grpc::ClientContext ctx;
  auto reader = stub_->Score(&ctx, bad);
  v1::ScoreResult r;
  while (reader->Read(&r)) {
  }
  grpc::Status st = reader->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), ::testing::HasSubstr("items[2].responses"));
}

TEST_F(OracleServiceTest, BudgetRefusalsAreStreamedAsFailedJudgments) {
  oracle::OracleConfig config;
  config.budget_calls = 6;
  config.max_concurrency = 1;
  Start(config);
  std::map<int64_t, v1::Judgment> out = Compare(5);
  ASSERT_EQ(out.size(), 5u);  // none dropped
  int failed = 0;
  for (auto& [i, j] : out) {
    if (!j.ok()) {
      ++failed;
      EXPECT_THAT(j.error(), ::testing::HasSubstr("RESOURCE_EXHAUSTED: budget: "));
    }
  }
  EXPECT_EQ(failed, 2);
  EXPECT_EQ(Usage().failures(), 2);
}

// The orchestrator killed mid-judge: its Compare stream goes away while requests are at the
// judge. Those requests still finish and are cached; the restarted orchestrator's identical
// request waits for them instead of asking again, so the judge sees no (prompt, a, b, order)
// twice.
TEST_F(OracleServiceTest, AbandonedCompareFinishesAndTheRepeatedRequestWaitsForIt) {
  judge::JudgeServerOptions jo;
  jo.latency = absl::Milliseconds(400);
  oracle::OracleConfig config;
  config.max_concurrency = 8;
  Start(config, jo);
  constexpr int kItems = 8;
  {
    grpc::ClientContext ctx;
    auto reader = stub_->Compare(&ctx, Request(kItems));
    // Wait (bounded) until the first requests are at the judge, then go away.
    absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (judge_->requests_served() == 0 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    ASSERT_GT(judge_->requests_served(), 0);
    ctx.TryCancel();
    v1::Judgment j;
    while (reader->Read(&j)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  std::map<int64_t, v1::Judgment> out = Compare(kItems);  // the "restarted orchestrator"
  ASSERT_EQ(out.size(), static_cast<size_t>(kItems));
  for (auto& [i, j] : out) EXPECT_TRUE(j.ok()) << j.error();
  // Every (prompt, a, b, order) asked exactly once, by one call or the other.
  EXPECT_EQ(judge_->requests_served(), 2 * kItems);
  std::vector<nlohmann::json> seen = judge_->seen_requests();
  std::set<std::string> distinct;
  for (const nlohmann::json& r : seen) distinct.insert(r.dump());
  EXPECT_EQ(distinct.size(), seen.size());
  v1::GetUsageResponse u = Usage();
  EXPECT_EQ(u.calls(), 2 * kItems);
  // What the abandoned call asked reached the second request from the flight (or, if it had
  // finished by then, from the cache).
  EXPECT_GE(u.single_flight_shared() + u.cache_hits(), 1);
}

}  // namespace
}  // namespace spar::services
