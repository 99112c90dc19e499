#include "oracle_client/internal/http_policy.h"

#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace spar::oracle::internal {
namespace {

using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;

TEST(ParseBaseUrlTest, SplitsSchemeHostPortAndPath) {
  absl::StatusOr<BaseUrl> u = ParseBaseUrl("http://127.0.0.1:8081/v1/", "f");
  ASSERT_THAT(u, IsOk());
  EXPECT_EQ(u->scheme, "http");
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, 8081);
  EXPECT_EQ(u->path_prefix, "/v1");
  EXPECT_TRUE(u->loopback);
  EXPECT_EQ(u->SchemeHostPort(), "http://127.0.0.1:8081");

  u = ParseBaseUrl("https://api.example.com", "f");
  ASSERT_THAT(u, IsOk());
  EXPECT_EQ(u->port, 443);
  EXPECT_EQ(u->path_prefix, "");
  EXPECT_FALSE(u->loopback);

  u = ParseBaseUrl("http://[::1]:9/v1", "f");
  ASSERT_THAT(u, IsOk());
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->SchemeHostPort(), "http://[::1]:9");
}

TEST(ParseBaseUrlTest, ErrorNamesTheField) {
  absl::Status st = ParseBaseUrl("http://example.com/v1", "oracle.base_url").status();
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(std::string(st.message()).find("oracle.base_url"), std::string::npos);
}

TEST(ParseBaseUrlTest, PlainHttpOnlyToLoopbackOrNamedHosts) {
  absl::Status st = ParseBaseUrl("http://spar-judge:8081/v1", "oracle.base_url").status();
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(std::string(st.message()).find("--judge_allow_http_host=spar-judge"), std::string::npos)
      << st;

  absl::StatusOr<BaseUrl> u = ParseBaseUrl("http://spar-judge:8081/v1", "f", {"SPAR-Judge"});
  ASSERT_THAT(u, IsOk());
  EXPECT_EQ(u->host, "spar-judge");
  EXPECT_FALSE(u->loopback);
  EXPECT_EQ(u->SchemeHostPort(), "http://spar-judge:8081");

  // The list names hosts exactly: no suffix or prefix matches.
  EXPECT_FALSE(ParseBaseUrl("http://spar-judge.evil.com/v1", "f", {"spar-judge"}).ok());
  EXPECT_FALSE(ParseBaseUrl("http://judge/v1", "f", {"spar-judge"}).ok());
  // https needs no opt-in.
  EXPECT_TRUE(ParseBaseUrl("https://judge/v1", "f", {}).ok());
}

TEST(LoopbackTest, Hosts) {
  EXPECT_TRUE(IsLoopbackHost("127.0.0.1"));
  EXPECT_TRUE(IsLoopbackHost("127.255.0.9"));
  EXPECT_TRUE(IsLoopbackHost("LOCALHOST"));
  EXPECT_TRUE(IsLoopbackHost("::1"));
  EXPECT_FALSE(IsLoopbackHost("127.0.0.256"));
  EXPECT_FALSE(IsLoopbackHost("127.0.0"));
  EXPECT_FALSE(IsLoopbackHost("10.0.0.1"));
  EXPECT_FALSE(IsLoopbackHost("localhost.example.com"));
}

TEST(ShouldRetryTest, FollowsTheSdkPolicy) {
  for (int code : {0, 408, 409, 429, 500, 502, 503, 504}) {
    EXPECT_TRUE(ShouldRetry({code, std::nullopt, false})) << code;
  }
  for (int code : {400, 401, 403, 404, 422}) {
    EXPECT_FALSE(ShouldRetry({code, std::nullopt, false})) << code;
  }
  EXPECT_FALSE(ShouldRetry({429, std::nullopt, true}));  // insufficient_quota
  EXPECT_FALSE(ShouldRetry({429, true, true}));
  EXPECT_TRUE(ShouldRetry({400, true, false}));    // x-should-retry: true overrides
  EXPECT_FALSE(ShouldRetry({503, false, false}));  // x-should-retry: false overrides
}

TEST(RetryDelayTest, ExponentialBackoffWithJitterCappedAtEightSeconds) {
  EXPECT_EQ(RetryDelay(0, "", "", 1.0), absl::Milliseconds(500));
  EXPECT_EQ(RetryDelay(1, "", "", 1.0), absl::Seconds(1));
  EXPECT_EQ(RetryDelay(2, "", "", 0.75), absl::Milliseconds(1500));
  EXPECT_EQ(RetryDelay(10, "", "", 1.0), absl::Seconds(8));
  EXPECT_EQ(RetryDelay(0, "", "", 0.1), absl::Milliseconds(375));  // jitter clamped to [0.75, 1]
}

TEST(RetryDelayTest, HonoursServerHintsWithinSixtySeconds) {
  EXPECT_EQ(RetryDelay(0, "250", "3", 1.0), absl::Milliseconds(250));  // retry-after-ms first
  EXPECT_EQ(RetryDelay(0, "", "3", 1.0), absl::Seconds(3));
  EXPECT_EQ(RetryDelay(0, "", "1.5", 1.0), absl::Milliseconds(1500));
  EXPECT_EQ(RetryDelay(0, "junk", "2", 1.0), absl::Seconds(2));
  EXPECT_EQ(RetryDelay(0, "", "120", 1.0), absl::Milliseconds(500));  // too long: computed
  EXPECT_EQ(RetryDelay(0, "", "0", 1.0), absl::Milliseconds(500));
  EXPECT_EQ(RetryDelay(1, "", "Wed, 21 Oct 2015 07:28:00 GMT", 1.0), absl::Seconds(1));
}

}  // namespace
}  // namespace spar::oracle::internal

namespace spar::oracle::internal {
namespace {

TEST(RetryDelayTest, HttpDateRelativeToNow) {
  absl::Time now = absl::FromUnixSeconds(1445412480);  // Wed, 21 Oct 2015 07:28:00 GMT
  EXPECT_EQ(RetryDelay(0, "", "Wed, 21 Oct 2015 07:28:05 GMT", 1.0, now), absl::Seconds(5));
  // In the past or beyond 60 s: computed backoff.
  EXPECT_EQ(RetryDelay(0, "", "Wed, 21 Oct 2015 07:27:00 GMT", 1.0, now), absl::Milliseconds(500));
  EXPECT_EQ(RetryDelay(0, "", "Wed, 21 Oct 2015 08:28:00 GMT", 1.0, now), absl::Milliseconds(500));
  // retry-after-ms still wins.
  EXPECT_EQ(RetryDelay(0, "100", "Wed, 21 Oct 2015 07:28:05 GMT", 1.0, now),
            absl::Milliseconds(100));
}

TEST(HttpDateTest, ParsesImfFixdateOnly) {
  EXPECT_EQ(ParseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT"), absl::FromUnixSeconds(784111777));
  EXPECT_FALSE(ParseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT").has_value());
  EXPECT_FALSE(ParseHttpDate("Sun, 31 Feb 1994 08:49:37 GMT").has_value());
  EXPECT_FALSE(ParseHttpDate("Sun, 06 Nov 1994 08:49:37 PST").has_value());
  EXPECT_FALSE(ParseHttpDate("").has_value());
}

TEST(RateLimitHeaderTest, ParsesGoDurationsAndSeconds) {
  EXPECT_EQ(ParseRateLimitReset("6m0s"), absl::Minutes(6));
  EXPECT_EQ(ParseRateLimitReset("12ms"), absl::Milliseconds(12));
  EXPECT_EQ(ParseRateLimitReset("1.5s"), absl::Milliseconds(1500));
  EXPECT_EQ(ParseRateLimitReset("1h2m3s"), absl::Seconds(3723));
  EXPECT_EQ(ParseRateLimitReset("20"), absl::Seconds(20));
  EXPECT_FALSE(ParseRateLimitReset("").has_value());
  EXPECT_FALSE(ParseRateLimitReset("soon").has_value());
  EXPECT_FALSE(ParseRateLimitReset("-1s").has_value());
  EXPECT_EQ(ParseRateLimitRemaining(" 42 "), 42);
  EXPECT_FALSE(ParseRateLimitRemaining("-1").has_value());
  EXPECT_FALSE(ParseRateLimitRemaining("x").has_value());
}

}  // namespace
}  // namespace spar::oracle::internal
