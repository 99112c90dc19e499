// Internal to oracle_client: in-process single-flight. While a call for one key is running, an
// identical call (same key) waits for its result instead of running again; the key leaves the
// table before the waiters wake, so a call arriving later runs afresh (and, for the judge, finds
// the leader's answer in the cache). Thread-safe.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace spar::oracle::internal {

template <typename T>
class SingleFlight {
 public:
  struct Outcome {
    absl::StatusOr<T> result;
    bool leader = false;  // this call ran `fn`; false: it took the result of the call that did
  };

  // Runs `fn` as the leader of `key`, or waits for the running leader's result.
  Outcome Do(const std::string& key, const std::function<absl::StatusOr<T>()>& fn) {
    std::shared_ptr<Flight> flight;
    bool leader = false;
    {
      absl::MutexLock lock(&mu_);
      auto [it, inserted] = flights_.try_emplace(key);
      if (inserted) it->second = std::make_shared<Flight>();
      flight = it->second;
      leader = inserted;
    }
    if (!leader) {
      flight->done.WaitForNotification();
      return Outcome{flight->result, false};
    }
    absl::StatusOr<T> r = fn();
    {
      absl::MutexLock lock(&mu_);
      flights_.erase(key);
    }
    flight->result = r;
    flight->done.Notify();
    return Outcome{std::move(r), true};
  }

 private:
  struct Flight {
    absl::Notification done;
    absl::StatusOr<T> result = absl::UnknownError("in flight");
  };
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Flight>> flights_ ABSL_GUARDED_BY(mu_);
};

}  // namespace spar::oracle::internal
