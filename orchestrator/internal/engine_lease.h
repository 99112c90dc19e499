// Internal to the engine sampler port: who may use a generation engine now. An engine serves one
// policy at a time, so a caller (one job's sample or eval request) holds it from its hand-off
// until its last request: callers of the same policy share it (two jobs sampling the same base
// model in round 1), callers of another policy wait, in arrival order (no starvation: a newcomer
// of the serving policy waits behind an earlier caller of another). Thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"

namespace spar::orchestrator::internal {

class EngineLease {
 public:
  // Releases its hold when destroyed. Movable.
  class Holder {
   public:
    Holder(Holder&& other) noexcept : lease_(other.lease_) { other.lease_ = nullptr; }
    Holder& operator=(Holder&&) = delete;
    Holder(const Holder&) = delete;
    ~Holder();

   private:
    friend class EngineLease;
    explicit Holder(EngineLease* lease) : lease_(lease) {}
    EngineLease* lease_;
  };

  // Blocks until `policy` may use the engine. Cancelled (and out of the queue) once `cancelled`
  // (polled while waiting; may be empty) says so.
  absl::StatusOr<Holder> Acquire(const std::string& policy, const std::function<bool()>& cancelled);

  // Callers waiting now; callers holding the engine now.
  int waiting() const;
  int holding() const;

 private:
  struct Ticket {
    uint64_t id;
    std::string policy;
  };
  bool MayEnter(uint64_t id) const;  // mu_ held
  void Remove(uint64_t id);          // mu_ held
  void Release();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Ticket> queue_;
  uint64_t next_id_ = 0;
  int active_ = 0;
  std::string active_policy_;
};

}  // namespace spar::orchestrator::internal
