// Internal to oracle_client: client-side request and token rate limits for the judge, on the
// injected Clock (so tests run on a FakeClock without sleeping).
//
// Each limit is a token bucket whose tokens come back exactly 60 s after they are spent (a
// sliding-window log). A classic refilling bucket of capacity C and rate R/60 s lets C + R requests
// through in some 60 s window; this one never lets more than R through in any window
// [t, t + 60 s), yet still allows a full burst of R at start-up and a sustained rate of R/min.
// Token estimates (the caller's, e.g. bytes/4 of the rendered prompt + max_tokens) are charged
// up front, the way OpenAI counts max_tokens against TPM when a request arrives.
//
// Server feedback: x-ratelimit-remaining-{requests,tokens} with x-ratelimit-reset-{requests,tokens}
// cap what is sent until the reset time (at most `remaining` more requests, or tokens); when the
// server says 0 remain, Acquire waits for the reset. Requests already in flight when the header
// was produced are not subtracted again, so up to max_concurrency - 1 requests may overshoot; the
// retry policy absorbs the rare resulting 429.
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace spar::oracle::internal {

struct RateLimits {
  int64_t requests_per_minute = 0;  // 0 = unlimited
  int64_t tokens_per_minute = 0;    // 0 = unlimited
};

class RateLimiter {
 public:
  // `clock` is not owned and must outlive the limiter.
  RateLimiter(RateLimits limits, Clock* clock);

  // Blocks (through clock->SleepFor) until one request estimated at `tokens` tokens may be sent,
  // charges it and returns the grant time. A request larger than the whole TPM limit is charged
  // as exactly the limit (it waits for an empty window instead of forever). Cancelled when
  // `cancelled` (may be null) turns true between waits.
  absl::StatusOr<absl::Time> Acquire(int64_t tokens, const std::function<bool()>& cancelled);

  // Feedback from a response's x-ratelimit-* headers (nullopt = header absent or unparsable).
  void OnServerHints(std::optional<int64_t> remaining_requests,
                     std::optional<absl::Duration> reset_requests,
                     std::optional<int64_t> remaining_tokens,
                     std::optional<absl::Duration> reset_tokens);

  // Total time Acquire callers spent waiting (summed over callers).
  absl::Duration total_wait() const;
  const RateLimits& limits() const { return limits_; }

 private:
  // How long to wait before a request of `tokens` may go; ZeroDuration = now.
  absl::Duration WaitFor(absl::Time now, int64_t tokens) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const RateLimits limits_;
  Clock* const clock_;
  mutable absl::Mutex mu_;
  std::deque<std::pair<absl::Time, int64_t>> sent_ ABSL_GUARDED_BY(mu_);  // (grant time, tokens)
  int64_t tokens_in_window_ ABSL_GUARDED_BY(mu_) = 0;
  // Server hints: until *_reset_at, at most *_remaining more.
  absl::Time requests_reset_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int64_t requests_remaining_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time tokens_reset_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int64_t tokens_remaining_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration total_wait_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
};

}  // namespace spar::oracle::internal
