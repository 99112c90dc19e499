#include "oracle_client/internal/rate_limiter.h"

#include <algorithm>

#include "absl/status/status.h"

namespace spar::oracle::internal {
namespace {
constexpr absl::Duration kWindow = absl::Seconds(60);
}  // namespace

RateLimiter::RateLimiter(RateLimits limits, Clock* clock) : limits_(limits), clock_(clock) {}

absl::Duration RateLimiter::WaitFor(absl::Time now, int64_t tokens) {
  // Tokens spent at t come back at t + 60 s.
  while (!sent_.empty() && sent_.front().first + kWindow <= now) {
    tokens_in_window_ -= sent_.front().second;
    sent_.pop_front();
  }
  absl::Duration wait = absl::ZeroDuration();
  const int64_t rpm = limits_.requests_per_minute;
  if (rpm > 0 && static_cast<int64_t>(sent_.size()) >= rpm) {
    // The request at index size - rpm must leave the window first.
    wait = std::max(wait, sent_[sent_.size() - rpm].first + kWindow - now);
  }
  const int64_t tpm = limits_.tokens_per_minute;
  if (tpm > 0 && tokens_in_window_ + tokens > tpm) {
    int64_t in_window = tokens_in_window_;
    for (const auto& [t, n] : sent_) {
      in_window -= n;
      if (in_window + tokens <= tpm) {
        wait = std::max(wait, t + kWindow - now);
        break;
      }
    }
  }
  if (now < requests_reset_at_ && requests_remaining_ <= 0) {
    wait = std::max(wait, requests_reset_at_ - now);
  }
  if (now < tokens_reset_at_ && tokens_remaining_ < tokens) {
    wait = std::max(wait, tokens_reset_at_ - now);
  }
  return wait;
}

absl::StatusOr<absl::Time> RateLimiter::Acquire(int64_t tokens,
                                                const std::function<bool()>& cancelled) {
  tokens = std::max<int64_t>(tokens, 0);
  if (limits_.tokens_per_minute > 0) tokens = std::min(tokens, limits_.tokens_per_minute);
  for (;;) {
    if (cancelled && cancelled()) return absl::CancelledError("judgment cancelled");
    absl::Duration wait;
    {
      absl::MutexLock lock(&mu_);
      absl::Time now = clock_->Now();
      wait = WaitFor(now, tokens);
      if (wait <= absl::ZeroDuration()) {
        sent_.emplace_back(now, tokens);
        tokens_in_window_ += tokens;
        if (now < requests_reset_at_) --requests_remaining_;
        if (now < tokens_reset_at_) tokens_remaining_ -= tokens;
        return now;
      }
      total_wait_ += wait;
    }
    clock_->SleepFor(wait);
  }
}

void RateLimiter::OnServerHints(std::optional<int64_t> remaining_requests,
                                std::optional<absl::Duration> reset_requests,
                                std::optional<int64_t> remaining_tokens,
                                std::optional<absl::Duration> reset_tokens) {
  absl::MutexLock lock(&mu_);
  absl::Time now = clock_->Now();
  if (remaining_requests && reset_requests && *reset_requests > absl::ZeroDuration()) {
    requests_remaining_ = *remaining_requests;
    requests_reset_at_ = now + *reset_requests;
  }
  if (remaining_tokens && reset_tokens && *reset_tokens > absl::ZeroDuration()) {
    tokens_remaining_ = *remaining_tokens;
    tokens_reset_at_ = now + *reset_tokens;
  }
}

absl::Duration RateLimiter::total_wait() const {
  absl::MutexLock lock(&mu_);
  return total_wait_;
}

}  // namespace spar::oracle::internal
