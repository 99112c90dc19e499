#include "orchestrator/internal/engine_lease.h"

#include <chrono>

namespace spar::orchestrator::internal {

EngineLease::Holder::~Holder() {
  if (lease_ != nullptr) lease_->Release();
}

bool EngineLease::MayEnter(uint64_t id) const {
  if (queue_.empty()) return false;
  const std::string& head = queue_.front().policy;
  if (active_ > 0 && head != active_policy_) return false;
  // The head and the callers of its policy right behind it go in together.
  for (const Ticket& t : queue_) {
    if (t.policy != head) return false;
    if (t.id == id) return true;
  }
  return false;
}

void EngineLease::Remove(uint64_t id) {
  for (auto it = queue_.begin(); it != queue_.end(); ++it) {
    if (it->id == id) {
      queue_.erase(it);
      return;
    }
  }
}

absl::StatusOr<EngineLease::Holder> EngineLease::Acquire(const std::string& policy,
                                                         const std::function<bool()>& cancelled) {
  std::unique_lock<std::mutex> lock(mu_);
  const uint64_t id = next_id_++;
  queue_.push_back({id, policy});
  while (!MayEnter(id)) {
    // Cancellation is polled: the job's cancel flag has no way to wake this wait.
    cv_.wait_for(lock, std::chrono::milliseconds(100));
    if (cancelled && !MayEnter(id) && cancelled()) {
      Remove(id);
      cv_.notify_all();
      return absl::CancelledError("sampling cancelled while waiting for the engine");
    }
  }
  Remove(id);
  ++active_;
  active_policy_ = policy;
  cv_.notify_all();  // same-policy callers right behind may follow
  return Holder(this);
}

void EngineLease::Release() {
  std::lock_guard<std::mutex> lock(mu_);
  --active_;
  cv_.notify_all();
}

int EngineLease::waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(queue_.size());
}

int EngineLease::holding() const {
  std::lock_guard<std::mutex> lock(mu_);
  return active_;
}

}  // namespace spar::orchestrator::internal
