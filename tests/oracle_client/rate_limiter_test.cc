// RateLimiter on a FakeClock: the must-show property (no 60 s window ever holds more than the
// configured RPM, checked over every window starting at a recorded send time), TPM, and server
// hints.
#include "oracle_client/internal/rate_limiter.h"

#include <algorithm>
#include <mutex>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace spar::oracle::internal {
namespace {

using ::spar::testing::StatusIs;

// Max number of sends inside any window [t, t + 60 s), t ranging over the send times (a window
// that holds the most sends can always be slid right until it starts at one of them).
int64_t MaxInAnyMinute(std::vector<absl::Time> times) {
  std::sort(times.begin(), times.end());
  int64_t best = 0;
  size_t j = 0;
  for (size_t i = 0; i < times.size(); ++i) {
    while (j < times.size() && times[j] < times[i] + absl::Seconds(60)) ++j;
    best = std::max<int64_t>(best, static_cast<int64_t>(j - i));
  }
  return best;
}

TEST(RateLimiterTest, NeverExceedsRpmInAnySixtySecondWindow) {
  FakeClock clock;
  constexpr int64_t kRpm = 37;
  RateLimiter limiter({kRpm, 0}, &clock);
  std::mutex mu;
  std::vector<absl::Time> sends;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 60; ++i) {
        absl::StatusOr<absl::Time> at = limiter.Acquire(1, nullptr);
        ASSERT_TRUE(at.ok());
        {
          std::lock_guard<std::mutex> lock(mu);
          sends.push_back(*at);
        }
        // Uneven pacing between requests, like real responses.
        clock.Advance(absl::Milliseconds(100 * ((t + i) % 7)));
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(sends.size(), 480u);
  EXPECT_LE(MaxInAnyMinute(sends), kRpm);
  EXPECT_EQ(MaxInAnyMinute(sends), kRpm);  // and the limit is actually used
  // 480 requests at 37/min need at least 12 full windows after the first burst.
  auto [lo, hi] = std::minmax_element(sends.begin(), sends.end());
  EXPECT_GE(*hi - *lo, absl::Seconds(60 * (480 / kRpm - 1)));
  EXPECT_GT(limiter.total_wait(), absl::ZeroDuration());
}

TEST(RateLimiterTest, BurstUpToTheLimitThenWaitsForTheOldestToExpire) {
  FakeClock clock;
  RateLimiter limiter({3, 0}, &clock);
  absl::Time t0 = clock.Now();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(*limiter.Acquire(1, nullptr), t0);
  clock.Advance(absl::Seconds(10));
  EXPECT_EQ(*limiter.Acquire(1, nullptr), t0 + absl::Seconds(60));
}

TEST(RateLimiterTest, TokensPerMinuteAndOversizedRequests) {
  FakeClock clock;
  RateLimiter limiter({0, 1000}, &clock);
  absl::Time t0 = clock.Now();
  EXPECT_EQ(*limiter.Acquire(600, nullptr), t0);
  EXPECT_EQ(*limiter.Acquire(400, nullptr), t0);
  EXPECT_EQ(*limiter.Acquire(1, nullptr), t0 + absl::Seconds(60));
  // Larger than the whole limit: charged as the limit, waits for an empty window.
  EXPECT_EQ(*limiter.Acquire(5000, nullptr), t0 + absl::Seconds(120));
}

TEST(RateLimiterTest, ServerHintsCapUntilReset) {
  FakeClock clock;
  RateLimiter limiter({0, 0}, &clock);
  absl::Time t0 = clock.Now();
  limiter.OnServerHints(2, absl::Seconds(5), std::nullopt, std::nullopt);
  EXPECT_EQ(*limiter.Acquire(1, nullptr), t0);
  EXPECT_EQ(*limiter.Acquire(1, nullptr), t0);
  EXPECT_EQ(*limiter.Acquire(1, nullptr), t0 + absl::Seconds(5));
  limiter.OnServerHints(std::nullopt, std::nullopt, 100, absl::Milliseconds(1500));
  absl::Time t1 = clock.Now();
  EXPECT_EQ(*limiter.Acquire(80, nullptr), t1);
  EXPECT_EQ(*limiter.Acquire(80, nullptr), t1 + absl::Milliseconds(1500));
}

TEST(RateLimiterTest, CancelledWhileWaiting) {
  FakeClock clock;
  RateLimiter limiter({1, 0}, &clock);
  ASSERT_TRUE(limiter.Acquire(1, nullptr).ok());
  absl::StatusOr<absl::Time> r = limiter.Acquire(1, [] { return true; });
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kCancelled));
}

}  // namespace
}  // namespace spar::oracle::internal
