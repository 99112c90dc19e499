#include "oracle_client/internal/request_watchdog.h"

#include <algorithm>
#include <utility>

#include "absl/time/clock.h"

namespace spar::oracle::internal {
namespace {

// How often a fired cut is repeated until the request is disarmed.
constexpr absl::Duration kRecut = absl::Milliseconds(20);

}  // namespace

RequestWatchdog::RequestWatchdog() : thread_([this] { Loop(); }) {}

RequestWatchdog::~RequestWatchdog() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

uint64_t RequestWatchdog::Arm(absl::Time deadline, std::function<void()> cut) {
  absl::MutexLock lock(&mu_);
  const uint64_t id = next_id_++;
  entries_.emplace(id, Entry{deadline, std::move(cut)});
  return id;
}

bool RequestWatchdog::Disarm(uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return false;
  const bool fired = it->second.fired;
  entries_.erase(it);
  return fired;
}

void RequestWatchdog::CutAll() {
  absl::MutexLock lock(&mu_);
  cut_all_ = true;
}

void RequestWatchdog::Loop() {
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    absl::Time next = absl::InfiniteFuture();
    const absl::Time now = absl::Now();
    for (auto& [id, e] : entries_) {
      if (e.deadline <= now || (cut_all_ && !e.fired)) {
        // Under the lock: Disarm cannot return (and the client be reused) while this runs.
        e.cut();
        e.fired = true;
        e.deadline = now + kRecut;
      }
      next = std::min(next, e.deadline);
    }
    // Wakes at the earliest deadline, or when an entry is added or stop_ is set.
    const uint64_t seen = next_id_;
    const bool cut_all = cut_all_;
    auto changed = [this, seen, cut_all]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return stop_ || next_id_ != seen || cut_all_ != cut_all;
    };
    mu_.AwaitWithDeadline(absl::Condition(&changed), next);
  }
}

}  // namespace spar::oracle::internal
