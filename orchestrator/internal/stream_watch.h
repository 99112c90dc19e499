// Internal to orchestrator/: ends a streaming call that blocks in Read from outside it (#12 item
// 9). A watcher thread calls `end_call` (the call's TryCancel) once, when the job is cancelled
// (`cancelled` turns true: a user's cancel or the server's shutdown) or when no message arrived
// for `idle_timeout`. Without it a stream whose peer stopped sending held the job RUNNING and
// SIGTERM waited on it for hours. No gRPC here: the call is ended through the callback.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace spar::orchestrator::internal {

class StreamWatch {
 public:
  enum class Reason { kNone, kCancelled, kIdle };

  // `cancelled` may be empty (only the idle timeout applies). `poll`: how often it is asked.
  StreamWatch(std::function<void()> end_call, std::function<bool()> cancelled,
              absl::Duration idle_timeout, absl::Duration poll = absl::Milliseconds(100));
  // Stops and joins the watcher (without calling end_call).
  ~StreamWatch();
  StreamWatch(const StreamWatch&) = delete;
  StreamWatch& operator=(const StreamWatch&) = delete;

  // A message arrived: the idle clock starts again.
  void Touch();
  // Why end_call was called (kNone: it was not).
  Reason fired() const;

  // The call's status as the runner should see it: `call_status` unless the watch ended the
  // call, then Cancelled("job cancelled") or DeadlineExceeded naming `what` and the timeout.
  absl::Status Explain(absl::Status call_status, const std::string& what) const;

 private:
  void Run();

  std::function<void()> end_call_;
  std::function<bool()> cancelled_;
  const absl::Duration idle_timeout_;
  const absl::Duration poll_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  absl::Time last_message_;
  bool stop_ = false;
  Reason fired_ = Reason::kNone;
  std::thread thread_;  // last: started after every other member is set
};

}  // namespace spar::orchestrator::internal
