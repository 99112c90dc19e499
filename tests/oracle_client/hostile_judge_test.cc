// OracleClient against HostileJudge (raw sockets, 127.0.0.1:0) fronting a real JudgeServer:
// a judge that echoes the API key (issue #12 item 3), answers non-ASCII and invalid UTF-8
// (item 9), drips bytes, and fails every 7th/11th/13th/17th/19th/23rd request (item 10).
// Backoff and retry-after waits go through a FakeClock; the only real waits are the fault
// server's drips and the request deadline that cuts them.
#include "tests/judge/hostile_judge.h"

#include <atomic>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/metrics/registry.h"
#include "common/utf8.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
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
using ::testing::Not;
using Fault = HostileJudge::Fault;
using Reply = HostileJudge::Reply;

constexpr char kKey[] = "sk-live-TESTKEY-0123456789abcdef";
const Comparison kCorrectVsWrong{"37+48=", "85", "84"};

bool IsValidUtf8(const std::string& s) { return SanitizeUtf8(s) == s; }

std::string ErrorBody(const std::string& message) {
  return nlohmann::json{{"error", {{"message", message}, {"type", "invalid_request_error"}}}}
      .dump();
}

// The value of the request's Authorization header, as a careless judge would echo it.
std::string AuthorizationOf(const std::string& headers) {
  size_t at = headers.find("Authorization: ");
  if (at == std::string::npos) return "";
  size_t end = headers.find("\r\n", at);
  return headers.substr(at, end - at);
}

class HostileJudgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<JudgeServer>> s = JudgeServer::Start({});
    ASSERT_THAT(s, IsOk());
    upstream_ = *std::move(s);
  }

  void StartHostile(HostileJudge::Plan plan) {
    hostile_ = std::make_unique<HostileJudge>(std::move(plan),
                                              absl::StrCat("127.0.0.1:", upstream_->port()));
    ASSERT_TRUE(hostile_->ok());
  }

  OracleConfig Config() const {
    OracleConfig c;
    c.base_url = hostile_->base_url();
    c.api_key = kKey;
    c.timeout = absl::Seconds(10);
    c.max_concurrency = 4;
    return c;
  }

  std::unique_ptr<OracleClient> MakeClient(OracleConfig config, Clock* clock = nullptr) {
    absl::StatusOr<std::unique_ptr<OracleClient>> c =
        OracleClient::Create(std::move(config), &registry_, clock ? clock : &clock_);
    EXPECT_THAT(c, IsOk());
    return c.ok() ? *std::move(c) : nullptr;
  }

  std::unique_ptr<JudgeServer> upstream_;
  std::unique_ptr<HostileJudge> hostile_;  // stops before the upstream
  metrics::Registry registry_;
  FakeClock clock_;
};

// Item 3: a judge that echoes "Authorization: Bearer <key>" (and the bare key) in its error
// bodies, first as a retried 500, then as a final 401: the key is in no status, log line or
// metric.
TEST_F(HostileJudgeTest, EchoedApiKeyIsRedactedFromStatusesLogsAndMetrics) {
  StartHostile([](int64_t n, const std::string& headers) {
    Reply r;
    r.fault = Fault::kStatus;
    r.status = n == 1 ? 500 : 401;
    r.body = ErrorBody(absl::StrCat("Incorrect API key provided: ", kKey, "; you sent ",
                                    AuthorizationOf(headers)));
    r.headers = {{"x-request-id", absl::StrCat("req-", kKey)}};
    return r;
  });
  auto client = MakeClient(Config());
  ::testing::internal::CaptureStderr();
  absl::StatusOr<Judgment> j = client->Compare(kCorrectVsWrong);
  std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j, StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_EQ(hostile_->requests(), 2);  // 401 is not retried
  const std::string msg(j.status().message());
  EXPECT_THAT(msg, HasSubstr("Incorrect API key provided: <redacted>"));
  EXPECT_THAT(msg, HasSubstr("Bearer <redacted>"));
  EXPECT_THAT(msg, Not(HasSubstr("TESTKEY")));
  EXPECT_THAT(log, Not(HasSubstr("TESTKEY")));
  EXPECT_THAT(registry_.Serialize(), Not(HasSubstr("TESTKEY")));
}

// Item 9: error text cut by the client must be cut on a character boundary, and a body of
// invalid UTF-8 must come back as valid UTF-8 (JSON and protobuf strings need it).
TEST_F(HostileJudgeTest, NonAsciiAndInvalidUtf8ErrorTextStaysValidUtf8) {
  std::string euros;
  for (int i = 0; i < 150; ++i) euros += "\xE2\x82\xAC";  // 450 bytes of U+20AC
  StartHostile([euros](int64_t n, const std::string&) {
    Reply r;
    r.fault = Fault::kStatus;
    if (n == 1) {
      r.status = 400;
      r.body = ErrorBody(euros);
    } else {
      r.status = 200;  // not JSON at all, and not UTF-8 either
      r.body = "\xFF\xFE<html>\xC3(\xE2\x82 \xF0\x9F\x98 ok?</html>";
    }
    return r;
  });
  auto client = MakeClient(Config());
  absl::StatusOr<Judgment> cut = client->Compare(kCorrectVsWrong);
  ASSERT_FALSE(cut.ok());
  EXPECT_THAT(cut, StatusIs(absl::StatusCode::kInvalidArgument));
  const std::string cut_msg(cut.status().message());
  EXPECT_TRUE(IsValidUtf8(cut_msg)) << cut_msg;
  EXPECT_THAT(cut_msg, HasSubstr("\xE2\x82\xAC..."));  // whole characters, then "..."
  absl::StatusOr<Judgment> garbage = client->Compare(kCorrectVsWrong);
  ASSERT_FALSE(garbage.ok());
  EXPECT_THAT(garbage, StatusIs(absl::StatusCode::kDataLoss));  // answered twice, unparsable
  const std::string garbage_msg(garbage.status().message());
  EXPECT_TRUE(IsValidUtf8(garbage_msg)) << garbage_msg;
  EXPECT_THAT(garbage_msg, HasSubstr("<html>"));
  EXPECT_NO_THROW(nlohmann::json({{"a", cut_msg}, {"b", garbage_msg}}).dump());
}

// Issue 24 item 11: a judge whose answer is 40 MB is cut off at the client's limit (8 MiB)
// instead of being read whole into memory; the error names the limit.
TEST_F(HostileJudgeTest, HugeAnswerIsCutAtTheBodyLimit) {
  StartHostile([](int64_t, const std::string&) {
    Reply r;
    r.fault = Fault::kStatus;
    r.status = 200;
    r.body = std::string(40 << 20, 'x');
    return r;
  });
  OracleConfig config = Config();
  config.max_retries = 0;
  auto client = MakeClient(config);
  absl::StatusOr<Judgment> j = client->Compare(kCorrectVsWrong);
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(std::string(j.status().message()), HasSubstr("response body over 8388608 bytes"));
}

// Item 10: a judge that drips one byte every 50 ms would take 10 s per answer; the request
// deadline (oracle.timeout_s, total, not per read) cuts each attempt at 300 ms.
TEST_F(HostileJudgeTest, DrippingJudgeIsCutAtTheRequestDeadline) {
  StartHostile([](int64_t, const std::string&) {
    Reply r;
    r.fault = Fault::kDrip;
    r.body = std::string(200, ' ');
    return r;
  });
  OracleConfig config = Config();
  config.timeout = absl::Milliseconds(300);
  config.max_retries = 1;
  auto client = MakeClient(config);
  const absl::Time start = absl::Now();
  absl::StatusOr<Judgment> j = client->Compare(kCorrectVsWrong);
  const absl::Duration took = absl::Now() - start;
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("request deadline")));
  EXPECT_EQ(hostile_->requests(), 2);
  EXPECT_GE(took, absl::Milliseconds(600));
  EXPECT_LT(took, absl::Seconds(3)) << "the drip was not cut: per-read timeouts only";
}

// Item 9: a judge that holds the request (a drip that would take 10 minutes, inside a 10-minute
// request deadline) does not hold a stopping server: Stop() (App::Shutdown, SIGTERM) cuts the
// request at once and nothing is retried. (A caller's cancel alone lets it finish: it is paid
// for; OracleServiceTest.AbandonedCompareFinishesAndTheRepeatedRequestWaitsForIt.)
TEST_F(HostileJudgeTest, StopEndsARequestTheJudgeHolds) {
  std::promise<void> arrived;
  std::atomic<bool> first{true};
  StartHostile([&](int64_t, const std::string&) {
    if (first.exchange(false)) arrived.set_value();
    Reply r;
    r.fault = Fault::kDrip;
    r.body = std::string(600, ' ');
    r.drip_interval = absl::Seconds(1);
    return r;
  });
  OracleConfig config = Config();
  config.timeout = absl::Minutes(10);
  config.max_concurrency = 1;
  auto client = MakeClient(config);
  std::vector<absl::Status> results;
  std::thread caller([&] {
    client->CompareAll({kCorrectVsWrong},
                       [&](size_t, absl::StatusOr<Judgment> j) { results.push_back(j.status()); });
  });
  arrived.get_future().wait();
  client->Stop();
  caller.join();  // without the cut: 10 minutes (ctest's timeout)
  ASSERT_EQ(results.size(), 1u);
  EXPECT_THAT(results[0], StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(hostile_->requests(), 1);
}

// Item 10: 401, 403 and 400 are not transient: one request each, no waiting.
TEST_F(HostileJudgeTest, NonTransientErrorsFailFast) {
  const int kCodes[] = {401, 403, 400};
  StartHostile([&kCodes](int64_t n, const std::string&) {
    Reply r;
    r.fault = Fault::kStatus;
    r.status = kCodes[(n - 1) % 3];
    r.body = ErrorBody("no");
    return r;
  });
  auto client = MakeClient(Config());
  const absl::StatusCode kWant[] = {absl::StatusCode::kUnauthenticated,
                                    absl::StatusCode::kPermissionDenied,
                                    absl::StatusCode::kInvalidArgument};
  for (absl::StatusCode want : kWant) {
    absl::StatusOr<Judgment> j = client->Compare(kCorrectVsWrong);
    ASSERT_FALSE(j.ok());
    EXPECT_THAT(j, StatusIs(want));
  }
  EXPECT_EQ(hostile_->requests(), 3);
  EXPECT_EQ(clock_.Now(), absl::UnixEpoch());  // no backoff
}

// Item 10: retries are timed, not counted: a judge that answers 503 (retry-after 1 s) to
// everything is retried until the judgment deadline (far more than the old 2 retries), then
// Unavailable naming the deadline.
TEST_F(HostileJudgeTest, TransientErrorsAreRetriedUntilTheJudgmentDeadline) {
  StartHostile([](int64_t, const std::string&) {
    Reply r;
    r.fault = Fault::kStatus;
    r.status = 503;
    r.body = ErrorBody("overloaded");
    r.headers = {{"Retry-After", "1"}};
    return r;
  });
  OracleConfig config = Config();
  config.judgment_deadline = absl::Seconds(30);
  auto client = MakeClient(config);
  absl::StatusOr<Judgment> j = client->Compare(kCorrectVsWrong);
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("judgment_deadline_s = 30")));
  EXPECT_EQ(hostile_->requests(), 31);  // at 0, 1, ..., 30 s: retry-after honoured exactly
  EXPECT_EQ(clock_.Now() - absl::UnixEpoch(), absl::Seconds(30));
}

// A judge that is down fails a judgment at its deadline; the judgments after it try once and
// fail fast instead of each waiting out its own deadline; the first answer closes the breaker.
TEST_F(HostileJudgeTest, JudgeThatStaysDownFailsLaterJudgmentsFastUntilItRecovers) {
  std::atomic<bool> up{false};
  StartHostile([&up](int64_t, const std::string&) {
    Reply r;
    if (up) return r;  // forward: a real answer
    r.fault = Fault::kStatus;
    r.status = 503;
    r.body = ErrorBody("down");
    r.headers = {{"Retry-After", "1"}};
    return r;
  });
  OracleConfig config = Config();
  config.judgment_deadline = absl::Seconds(5);
  auto client = MakeClient(config);
  absl::StatusOr<Judgment> first = client->Compare(kCorrectVsWrong);
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(hostile_->requests(), 6);  // at 0..5 s
  absl::StatusOr<Judgment> second = client->Compare(kCorrectVsWrong);
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(second, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("not retried")));
  EXPECT_EQ(hostile_->requests(), 7);  // one attempt, no waiting
  up = true;
  absl::StatusOr<Judgment> third = client->Compare(kCorrectVsWrong);
  ASSERT_THAT(third, IsOk());
  EXPECT_NEAR(third->p_a_wins, 0.99, 1e-9);
}

// n distinct arithmetic comparisons; even items have the correct answer first.
std::vector<Comparison> Items(int n) {
  std::vector<Comparison> items;
  for (int i = 0; i < n; ++i) {
    int a = i % 97, b = i / 97 + 1;
    std::string truth = std::to_string(a + b), wrong = std::to_string(a + b + 1 + i % 5);
    std::string prompt = absl::StrCat(a, "+", b, "=");
    items.push_back(i % 2 == 0 ? Comparison{prompt, truth, wrong}
                               : Comparison{prompt, wrong, truth});
  }
  return items;
}

// The fault plan of issue #12 item 10: every 23rd request reset, 19th cut short, 17th slow
// (dripped), 13th 503, 11th 500, 7th 429 (the first that divides n wins).
Reply FaultPlan(int64_t n) {
  Reply r;
  const std::string answer =
      R"({"choices":[{"message":{"role":"assistant","content":"A"}}],"usage":{}})";
  if (n % 23 == 0) {
    r.fault = Fault::kReset;
  } else if (n % 19 == 0) {
    r.fault = Fault::kCutShort;
    r.body = answer;
  } else if (n % 17 == 0) {
    r.fault = Fault::kDrip;
    r.body = answer;
  } else if (n % 13 == 0 || n % 11 == 0 || n % 7 == 0) {
    r.fault = Fault::kStatus;
    r.status = n % 13 == 0 ? 503 : n % 11 == 0 ? 500 : 429;
    r.body = ErrorBody("try again");
    if (r.status != 500) r.headers = {{"Retry-After", "1"}};
  }
  return r;
}

TEST_F(HostileJudgeTest, FaultServerRunLosesNoJudgmentAndPaysEachOnce) {
  StartHostile([](int64_t n, const std::string&) { return FaultPlan(n); });
  OracleConfig config = Config();
  // Cuts the drip (a whole answer would take ~4 s) yet leaves a loaded CI machine ample time for
  // a clean answer (a clean answer cut here would be paid twice).
  config.timeout = absl::Milliseconds(500);
  auto client = MakeClient(config);
  const std::vector<Comparison> items = Items(160);
  std::vector<absl::StatusOr<Judgment>> out(items.size(), absl::UnknownError("not reported"));
  client->CompareAll(items, [&](size_t i, absl::StatusOr<Judgment> j) { out[i] = std::move(j); });
  for (size_t i = 0; i < items.size(); ++i) {
    ASSERT_TRUE(out[i].ok()) << "judgment " << i << " lost: " << out[i].status();
    EXPECT_NEAR(out[i]->p_a_wins, i % 2 == 0 ? 0.99 : 0.01, 1e-9) << i;
  }
  EXPECT_EQ(upstream_->requests_served(), 320);  // every order answered (and paid) once
  for (Fault f : {Fault::kStatus, Fault::kDrip, Fault::kCutShort, Fault::kReset}) {
    EXPECT_GE(hostile_->count(f), 5) << static_cast<int>(f);
  }
  EXPECT_EQ(client->GetUsage().failures, 0);
  EXPECT_EQ(client->GetUsage().calls, hostile_->requests());
  RecordProperty("requests", static_cast<int>(hostile_->requests()));
  RecordProperty("faulted_status", static_cast<int>(hostile_->count(Fault::kStatus)));
  RecordProperty("faulted_drip", static_cast<int>(hostile_->count(Fault::kDrip)));
  RecordProperty("faulted_cut_short", static_cast<int>(hostile_->count(Fault::kCutShort)));
  RecordProperty("faulted_reset", static_cast<int>(hostile_->count(Fault::kReset)));
  // 429 and 503 said "retry-after: 1": each of those retries waited exactly 1 s (FakeClock).
  EXPECT_GE(clock_.Now() - absl::UnixEpoch(), absl::Seconds(40));
}

// The same fault plan in front of a reward model (oracle.kind "reward_model", POST /pooling):
// every comparison answered, with exactly the probabilities a fault-free run gives, and each
// reward paid once.
TEST_F(HostileJudgeTest, FaultServerRunOfARewardModelLosesNothingAndPaysEachRewardOnce) {
  StartHostile([](int64_t n, const std::string&) {
    Reply r = FaultPlan(n);
    r.body = r.fault == Fault::kDrip || r.fault == Fault::kCutShort
                 ? R"({"object":"list","data":[{"index":0,"object":"pooling","data":[1.5]}]})"
                 : r.body;
    return r;
  });
  auto reward_config = [](OracleConfig c, int port) {
    c.kind = oracle::OracleKind::kRewardModel;
    c.base_url = absl::StrCat("http://127.0.0.1:", port);  // /pooling at the server root
    return c;
  };
  OracleConfig config = reward_config(Config(), hostile_->port());
  config.timeout = absl::Milliseconds(500);  // cuts the drip (as the chat run above)
  auto client = MakeClient(config);
  const std::vector<Comparison> items = Items(160);
  std::vector<absl::StatusOr<Judgment>> out(items.size(), absl::UnknownError("not reported"));
  client->CompareAll(items, [&](size_t i, absl::StatusOr<Judgment> j) { out[i] = std::move(j); });
  EXPECT_EQ(upstream_->requests_served(), 320);  // every reward answered (and paid) once
  FakeClock clean_clock;
  OracleConfig clean_config = reward_config(Config(), upstream_->port());
  clean_config.api_key = "";
  absl::StatusOr<std::unique_ptr<OracleClient>> clean =
      OracleClient::Create(clean_config, nullptr, &clean_clock);  // its own metrics
  ASSERT_THAT(clean, IsOk());
  for (size_t i = 0; i < items.size(); ++i) {
    ASSERT_TRUE(out[i].ok()) << "judgment " << i << " lost: " << out[i].status();
    absl::StatusOr<Judgment> want = (*clean)->Compare(items[i]);
    ASSERT_THAT(want, IsOk());
    EXPECT_EQ(out[i]->p_a_wins, want->p_a_wins) << i;
    EXPECT_EQ(out[i]->p_a_wins > 0.5, i % 2 == 0) << i;
  }
  for (Fault f : {Fault::kStatus, Fault::kDrip, Fault::kCutShort, Fault::kReset}) {
    EXPECT_GE(hostile_->count(f), 5) << static_cast<int>(f);
  }
  EXPECT_EQ(client->GetUsage().failures, 0);
  EXPECT_EQ(client->GetUsage().calls, hostile_->requests());
}

}  // namespace
}  // namespace spar::judge
