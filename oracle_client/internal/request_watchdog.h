// Internal to oracle_client: enforces a total deadline per HTTP request. cpp-httplib's timeouts
// apply to each read and write, so a judge that drips one byte a second would hold a request
// forever (issue #12 item 10); the watchdog calls the request's `cut` function (httplib's
// Client::stop(), which shuts the socket down and is safe from another thread) once the deadline
// passes, and again every few milliseconds until the request is disarmed, so a cut that lands
// before the socket is opened still ends the request. Real time (sockets do not run on a fake
// clock). One thread per watchdog. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace spar::oracle::internal {

class RequestWatchdog {
 public:
  RequestWatchdog();
  ~RequestWatchdog();  // joins the thread; every request must be disarmed by then
  RequestWatchdog(const RequestWatchdog&) = delete;
  RequestWatchdog& operator=(const RequestWatchdog&) = delete;

  // Calls `cut` (on the watchdog thread, never after Disarm(id) returned) once `deadline` has
  // passed. Returns the id for Disarm.
  uint64_t Arm(absl::Time deadline, std::function<void()> cut);
  // Stops watching `id`; true when its deadline had passed (the request was cut).
  bool Disarm(uint64_t id);
  // From now on every request, armed or to be armed, is past its deadline (a stopping server
  // cuts what the judge holds instead of waiting up to timeout_s). Irreversible.
  void CutAll();

 private:
  struct Entry {
    absl::Time deadline;
    std::function<void()> cut;
    bool fired = false;
  };
  void Loop();

  absl::Mutex mu_;
  std::map<uint64_t, Entry> entries_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool cut_all_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace spar::oracle::internal
