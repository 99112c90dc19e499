#include "oracle_client/internal/http_policy.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/civil_time.h"

namespace spar::oracle::internal {

std::string BaseUrl::SchemeHostPort() const {
  bool v6 = host.find(':') != std::string::npos;
  return absl::StrCat(scheme, "://", v6 ? "[" : "", host, v6 ? "]" : "", ":", port);
}

bool IsLoopbackHost(const std::string& host) {
  std::string h = absl::AsciiStrToLower(host);
  if (h == "localhost" || h == "::1") return true;
  std::vector<std::string> parts = absl::StrSplit(h, '.');
  if (parts.size() != 4) return false;
  for (size_t i = 0; i < 4; ++i) {
    int v = 0;
    if (parts[i].empty() || parts[i].size() > 3 ||
        !std::all_of(parts[i].begin(), parts[i].end(),
                     [](char c) { return c >= '0' && c <= '9'; }) ||
        !absl::SimpleAtoi(parts[i], &v) || v > 255) {
      return false;
    }
    if (i == 0 && v != 127) return false;
  }
  return true;
}

absl::StatusOr<BaseUrl> ParseBaseUrl(const std::string& url, const std::string& field,
                                     const std::vector<std::string>& allow_http_hosts) {
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(field, " must be http(s)://host[:port][/path] (",
                                                   why, "), got \"", url, "\""));
  };
  BaseUrl out;
  std::string rest;
  if (absl::StartsWith(url, "https://")) {
    out.scheme = "https";
    out.port = 443;
    rest = url.substr(8);
  } else if (absl::StartsWith(url, "http://")) {
    out.scheme = "http";
    out.port = 80;
    rest = url.substr(7);
  } else {
    return bad("scheme must be http or https");
  }
  if (rest.find_first_of("?#@ \t\r\n") != std::string::npos) {
    return bad("no query, fragment, user info or whitespace allowed");
  }
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  std::string path = slash == std::string::npos ? "" : rest.substr(slash);
  while (!path.empty() && path.back() == '/') path.pop_back();
  out.path_prefix = path;
  std::string port_text;
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    if (close == std::string::npos) return bad("unterminated IPv6 literal");
    out.host = authority.substr(1, close - 1);
    std::string after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return bad("junk after IPv6 literal");
      port_text = after.substr(1);
      if (port_text.empty()) return bad("empty port");
    }
  } else {
    size_t colon = authority.find(':');
    out.host = authority.substr(0, colon);
    if (colon != std::string::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty()) return bad("empty port");
    }
  }
  if (out.host.empty()) return bad("empty host");
  if (!port_text.empty()) {
    int port = 0;
    if (!std::all_of(port_text.begin(), port_text.end(),
                     [](char c) { return c >= '0' && c <= '9'; }) ||
        !absl::SimpleAtoi(port_text, &port) || port < 1 || port > 65535) {
      return bad("port must be 1..65535");
    }
    out.port = port;
  }
  out.loopback = IsLoopbackHost(out.host);
  const bool allowed =
      std::any_of(allow_http_hosts.begin(), allow_http_hosts.end(),
                  [&](const std::string& h) { return absl::EqualsIgnoreCase(h, out.host); });
  if (out.scheme == "http" && !out.loopback && !allowed) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " uses plain http to a non-loopback host \"", out.host,
        "\"; use https, or allow plain http to this host by name with oracle.allow_http_hosts "
        "or --judge_allow_http_host=",
        out.host, " (http is otherwise allowed only for 127.0.0.0/8, localhost and ::1)"));
  }
  return out;
}

bool ShouldRetry(const AttemptOutcome& o) {
  if (o.insufficient_quota) return false;
  if (o.x_should_retry.has_value()) return *o.x_should_retry;
  if (o.http_status == 0) return true;
  return o.http_status == 408 || o.http_status == 409 || o.http_status == 429 ||
         o.http_status >= 500;
}

std::optional<absl::Time> ParseHttpDate(const std::string& text) {
  // "Wed, 21 Oct 2015 07:28:00 GMT"
  std::vector<std::string> parts =
      absl::StrSplit(absl::StripAsciiWhitespace(text), ' ', absl::SkipEmpty());
  if (parts.size() != 6 || parts[0].size() != 4 || parts[0][3] != ',' || parts[5] != "GMT") {
    return std::nullopt;
  }
  static const char* const kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  int month = 0;
  for (int i = 0; i < 12; ++i) {
    if (parts[2] == kMonths[i]) month = i + 1;
  }
  int day = 0, year = 0, hh = 0, mm = 0, ss = 0;
  std::vector<std::string> hms = absl::StrSplit(parts[4], ':');
  if (month == 0 || !absl::SimpleAtoi(parts[1], &day) || !absl::SimpleAtoi(parts[3], &year) ||
      hms.size() != 3 || !absl::SimpleAtoi(hms[0], &hh) || !absl::SimpleAtoi(hms[1], &mm) ||
      !absl::SimpleAtoi(hms[2], &ss) || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60 ||
      hh < 0 || mm < 0 || ss < 0) {
    return std::nullopt;
  }
  absl::CivilSecond cs(year, month, day, hh, mm, ss);
  if (cs.day() != day) return std::nullopt;  // e.g. 31 Feb normalised away
  return absl::FromCivil(cs, absl::UTCTimeZone());
}

std::optional<absl::Duration> ParseRateLimitReset(const std::string& text) {
  std::string t(absl::StripAsciiWhitespace(text));
  if (t.empty()) return std::nullopt;
  double seconds = 0;
  if (absl::SimpleAtod(t, &seconds)) {
    if (!std::isfinite(seconds) || seconds < 0) return std::nullopt;
    return absl::Seconds(seconds);
  }
  absl::Duration d;
  if (!absl::ParseDuration(t, &d) || d < absl::ZeroDuration() || d == absl::InfiniteDuration()) {
    return std::nullopt;
  }
  return d;
}

std::optional<int64_t> ParseRateLimitRemaining(const std::string& text) {
  int64_t v = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &v) || v < 0) return std::nullopt;
  return v;
}

absl::Duration RetryDelay(int retry, const std::string& retry_after_ms,
                          const std::string& retry_after, double jitter, absl::Time now,
                          absl::Duration initial, absl::Duration max) {
  constexpr double kMaxRetryAfterSeconds = 60.0;
  double seconds = 0.0;
  if (!retry_after_ms.empty() &&
      absl::SimpleAtod(absl::StripAsciiWhitespace(retry_after_ms), &seconds)) {
    seconds /= 1000.0;
  } else if (!retry_after.empty() &&
             absl::SimpleAtod(absl::StripAsciiWhitespace(retry_after), &seconds)) {
    // seconds
  } else if (std::optional<absl::Time> date = ParseHttpDate(retry_after);
             date && now != absl::InfinitePast()) {
    seconds = absl::ToDoubleSeconds(*date - now);
  } else {
    seconds = 0.0;  // absent or unparsable: computed backoff
  }
  if (std::isfinite(seconds) && seconds > 0.0 && seconds <= kMaxRetryAfterSeconds) {
    return absl::Seconds(seconds);
  }
  jitter = std::clamp(jitter, 0.75, 1.0);
  const double doubling = std::pow(2.0, std::clamp(retry, 0, 60));
  double backoff = std::min(absl::ToDoubleSeconds(initial) * doubling, absl::ToDoubleSeconds(max));
  return absl::Seconds(backoff * jitter);
}

}  // namespace spar::oracle::internal
