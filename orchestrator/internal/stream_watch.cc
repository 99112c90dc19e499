#include "orchestrator/internal/stream_watch.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace spar::orchestrator::internal {

StreamWatch::StreamWatch(std::function<void()> end_call, std::function<bool()> cancelled,
                         absl::Duration idle_timeout, absl::Duration poll)
    : end_call_(std::move(end_call)),
      cancelled_(std::move(cancelled)),
      idle_timeout_(idle_timeout),
      poll_(poll),
      last_message_(absl::Now()),
      thread_([this] { Run(); }) {}

StreamWatch::~StreamWatch() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void StreamWatch::Touch() {
  std::lock_guard<std::mutex> lock(mu_);
  last_message_ = absl::Now();
}

StreamWatch::Reason StreamWatch::fired() const {
  std::lock_guard<std::mutex> lock(mu_);
  return fired_;
}

void StreamWatch::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::milliseconds(absl::ToInt64Milliseconds(poll_)));
    if (stop_) return;
    Reason reason = Reason::kNone;
    if (cancelled_ && cancelled_()) {
      reason = Reason::kCancelled;
    } else if (absl::Now() - last_message_ >= idle_timeout_) {
      reason = Reason::kIdle;
    }
    if (reason == Reason::kNone) continue;
    fired_ = reason;
    lock.unlock();
    end_call_();  // TryCancel: thread-safe, returns at once
    return;
  }
}

absl::Status StreamWatch::Explain(absl::Status call_status, const std::string& what) const {
  switch (fired()) {
    case Reason::kCancelled:
      return absl::CancelledError("job cancelled");
    case Reason::kIdle:
      return absl::DeadlineExceededError(
          absl::StrCat(what, ": no message for ", absl::FormatDuration(idle_timeout_),
                       " (stream_idle_timeout); the peer stopped answering"));
    case Reason::kNone:
      break;
  }
  return call_status;
}

}  // namespace spar::orchestrator::internal
