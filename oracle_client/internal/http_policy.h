// Internal to oracle_client: base-URL parsing and the OpenAI SDK retry policy as pure functions,
// so they are unit-tested without sockets. Thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace spar::oracle::internal {

struct BaseUrl {
  std::string scheme;       // "http" | "https"
  std::string host;         // without brackets for IPv6
  int port = 0;             // explicit or the scheme's default
  std::string path_prefix;  // "" or "/v1" (no trailing slash)
  bool loopback = false;
  // "http://127.0.0.1:8081" (IPv6 hosts bracketed), what httplib::Client takes.
  std::string SchemeHostPort() const;
};

// http(s)://host[:port][/path]; no user info, query or fragment. Plain http only for loopback
// hosts (127.0.0.0/8, localhost, ::1) and for the hosts named in `allow_http_hosts` (compared
// case-insensitively; the explicit opt-in for a judge on a private network such as a Compose
// service name). InvalidArgument naming `field` otherwise.
absl::StatusOr<BaseUrl> ParseBaseUrl(const std::string& url, const std::string& field,
                                     const std::vector<std::string>& allow_http_hosts = {});

bool IsLoopbackHost(const std::string& host);

// What a failed attempt looked like.
struct AttemptOutcome {
  int http_status = 0;                 // 0: connection error / timeout (no response)
  std::optional<bool> x_should_retry;  // the x-should-retry header, when "true"/"false"
  bool insufficient_quota = false;     // 429 whose error code/type is insufficient_quota
};

// The SDK's _should_retry: x-should-retry wins; else connection errors, 408, 409, 429 and >= 500
// are retried. insufficient_quota is never retried (billing, not a rate limit).
bool ShouldRetry(const AttemptOutcome& outcome);

// Delay before retry number `retry` (0-based): the server's retry-after-ms, then retry-after
// (seconds, may be fractional, or an HTTP-date such as "Wed, 21 Oct 2015 07:28:00 GMT", taken
// relative to `now`; a date is ignored when `now` is InfinitePast), when positive and at most
// 60 s; otherwise min(initial * 2^retry, max) * jitter, jitter in [0.75, 1] (the SDK's 0.5 s
// and 8 s by default).
absl::Duration RetryDelay(int retry, const std::string& retry_after_ms,
                          const std::string& retry_after, double jitter,
                          absl::Time now = absl::InfinitePast(),
                          absl::Duration initial = absl::Milliseconds(500),
                          absl::Duration max = absl::Seconds(8));

// An RFC 9110 IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"); nullopt otherwise.
std::optional<absl::Time> ParseHttpDate(const std::string& text);

// An x-ratelimit-reset-* value: a Go-style duration ("6m0s", "12ms", "1.5s") or plain seconds
// ("20", "0.5"); nullopt when empty or unparsable or negative.
std::optional<absl::Duration> ParseRateLimitReset(const std::string& text);

// An x-ratelimit-remaining-* value: a non-negative integer; nullopt otherwise.
std::optional<int64_t> ParseRateLimitRemaining(const std::string& text);

}  // namespace spar::oracle::internal
