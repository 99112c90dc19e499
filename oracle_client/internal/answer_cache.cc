#include "oracle_client/internal/answer_cache.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <random>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "oracle_client/side_by_side.h"

namespace spar::oracle::internal {
namespace {

std::string HostName() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) return "unknown-host";
  return host;
}

// "<host>/<pid>/<random>": unique per client, and tells a waiter on the same host whether the
// holder's process still exists.
std::string LeaseOwnerId() {
  std::random_device rd;
  return absl::StrFormat("%s/%d/%08x%08x", HostName(), static_cast<int>(getpid()), rd(), rd());
}

// True when `owner` (a LeaseOwnerId) names a process on this host that no longer exists: its
// lease can be broken at once instead of waiting for it to expire (a restarted oracle retakes
// the keys its killed predecessor held).
bool LeaseOwnerIsDeadHere(const std::string& owner) {
  std::vector<std::string> parts = absl::StrSplit(owner, '/');
  int pid = 0;
  if (parts.size() != 3 || parts[0] != HostName() || !absl::SimpleAtoi(parts[1], &pid) ||
      pid <= 0) {
    return false;
  }
  return kill(pid, 0) != 0 && errno == ESRCH;
}

}  // namespace

AnswerCache::AnswerCache(JudgmentCache* cache, absl::Duration request_timeout, Clock* clock,
                         OracleMetrics* metrics, ClientCounters* counters)
    : cache_(cache),
      request_timeout_(request_timeout),
      clock_(clock),
      metrics_(metrics),
      counters_(counters),
      lease_owner_(LeaseOwnerId()) {}

bool AnswerCache::Caches(const AskSpec& spec) const {
  return cache_ != nullptr && !spec.cache_key.empty();
}

// The stored answer under `key`; `count` = count a cache hit or miss.
std::optional<OrderResult> AnswerCache::Get(const std::string& key, bool count) {
  if (!count) {
    absl::StatusOr<std::optional<CachedAnswer>> got = cache_->Get(key);
    if (got.ok() && got->has_value())
      return OrderResult{(*got)->value, (*got)->verdict_text, {}, true};
    return std::nullopt;
  }
  if (cache_ == nullptr || key.empty()) return std::nullopt;
  absl::StatusOr<std::optional<CachedAnswer>> got = cache_->Get(key);
  if (!got.ok()) SPAR_LOG(Warning) << "oracle: " << got.status();
  if (got.ok() && got->has_value()) {
    counters_->cache_hits.fetch_add(1, std::memory_order_relaxed);
    metrics_->cache_hits.Increment();
    OrderResult r;
    r.p_first = (*got)->value;
    r.verdict_text = (*got)->verdict_text;
    r.cached = true;
    return r;
  }
  counters_->cache_misses.fetch_add(1, std::memory_order_relaxed);
  metrics_->cache_misses.Increment();
  return std::nullopt;
}

std::optional<OrderResult> AnswerCache::LookUp(const AskSpec& spec, bool count) {
  std::optional<OrderResult> hit = Get(spec.cache_key, count);
  if (!hit || spec.kind != AskKind::kSideBySide) return hit;
  // Only parsed answers are stored, so this parses; a row that does not is asked again.
  absl::StatusOr<std::vector<int>> scores = ParseSideBySideScores(hit->verdict_text, spec.order);
  if (scores.ok()) {
    hit->scores = *std::move(scores);
    return hit;
  }
  SPAR_LOG(Warning) << "oracle: cached side-by-side answer unparsable; asking again";
  return std::nullopt;
}

std::optional<OrderResult> AnswerCache::LookUp(const AskSpec& spec) {
  return LookUp(spec, /*count=*/true);
}

void AnswerCache::RecordCharge(const UsageCharge& charge) {
  if (cache_ == nullptr || charge.job_id.empty()) return;
  absl::Status st = cache_->Charge(charge);
  if (!st.ok()) SPAR_LOG(Warning) << "oracle: " << st;
}

void AnswerCache::Put(const AskSpec& spec, const OrderResult& r, int64_t prompt, int64_t completion,
                      const UsageCharge& charge) {
  if (cache_ == nullptr) return;
  if (spec.cache_key.empty()) return RecordCharge(charge);
  absl::Status st =
      cache_->Put(spec.cache_key, CachedAnswer{r.p_first, r.verdict_text, prompt, completion},
                  charge.job_id.empty() ? nullptr : &charge);
  if (!st.ok()) SPAR_LOG(Warning) << "oracle: " << st;
}

// How long a lease is claimed for: one request plus `wait`, plus slack. The holder renews it
// before every attempt and every backoff wait, so only a dead holder lets it expire.
absl::Duration AnswerCache::LeaseTtl(absl::Duration wait) const {
  return request_timeout_ + wait + absl::Seconds(10);
}

bool AnswerCache::KeepLease(const AskSpec& spec, absl::Duration wait) {
  if (cache_ == nullptr || spec.cache_key.empty()) return true;
  absl::StatusOr<bool> held =
      cache_->ExtendLease(spec.cache_key, lease_owner_, absl::Now() + LeaseTtl(wait));
  if (!held.ok()) SPAR_LOG(Warning) << "oracle: " << held.status();
  return !held.ok() || *held;  // a broken cache costs money, never judgments
}

void AnswerCache::ReleaseLease(const AskSpec& spec) {
  absl::Status released = cache_->ReleaseLease(spec.cache_key, lease_owner_);
  if (!released.ok()) SPAR_LOG(Warning) << "oracle: " << released;
}

absl::StatusOr<std::optional<OrderResult>> AnswerCache::ClaimOrAwait(
    const AskSpec& spec, absl::Time deadline, const std::function<bool()>& cancelled) {
  absl::Duration poll = absl::Milliseconds(2);
  for (;;) {
    const absl::Time now = absl::Now();
    std::string holder;
    absl::StatusOr<JudgmentCache::Lease> claim = cache_->ClaimLease(
        spec.cache_key, lease_owner_, now, now + LeaseTtl(absl::ZeroDuration()), &holder);
    if (!claim.ok()) {
      SPAR_LOG(Warning) << "oracle: " << claim.status();
      return std::nullopt;
    }
    if (*claim == JudgmentCache::Lease::kAcquired) return std::nullopt;
    if (*claim == JudgmentCache::Lease::kAnswered) {
      std::optional<OrderResult> answer = LookUp(spec, /*count=*/false);
      if (answer) {
        counters_->shared.fetch_add(1, std::memory_order_relaxed);
        metrics_->single_flight_shared.Increment();
      }
      return answer;
    }
    if (LeaseOwnerIsDeadHere(holder)) {
      SPAR_LOG(Warning) << "oracle: breaking the judge lease of dead process " << holder;
      (void)cache_->ReleaseLease(spec.cache_key, holder);
      continue;
    }
    if (cancelled && cancelled()) return absl::CancelledError("judgment cancelled");
    if (clock_->Now() > deadline) {
      return absl::UnavailableError(
          "judgment deadline (oracle.judgment_deadline_s) passed while another process "
          "sharing oracle.cache_path was asking the judge the same question");
    }
    absl::SleepFor(poll);
    poll = std::min(poll * 2, absl::Milliseconds(50));
  }
}

}  // namespace spar::oracle::internal
