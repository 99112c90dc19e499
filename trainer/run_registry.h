// The Trainer service's runs, without gRPC: each StartTraining idempotency key maps to one run
// (a repeated key attaches to it; a failed or cancelled run's key is released so it can be
// started again), each run has an id, a cancel flag and its latest event, which any number of
// watchers wait on. The service converts RunEvent to its proto (services/trainer/).
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "trainer/trainer.h"

namespace spar::trainer {

enum class RunState { kRunning, kSucceeded, kFailed, kCancelled };

// A run's progress as watchers see it (TrainingEvent on the wire).
struct RunEvent {
  std::string run_id;
  RunState state = RunState::kRunning;
  int step = 0;  // optimizer steps done
  int total_steps = 0;
  double loss = 0;
  double tokens_per_second = 0;
  int resumed_from_step = 0;              // steps restored from train_state; 0 = fresh
  std::map<std::string, double> metrics;  // TRL names
  std::string error;                      // failed / cancelled: the status
  int32_t error_code = 0;                 // failed: the status code; 0 otherwise
};

// One run: its names, its cancel flag and its latest event.
class TrainingRunEntry {
 public:
  TrainingRunEntry(std::string run_id, std::string key);

  const std::string& run_id() const { return run_id_; }
  const std::string& key() const { return key_; }

  void Cancel() { cancel_.store(true); }
  bool cancelled() const { return cancel_.load(); }

  // Replaces the latest event (done: the run ended; no event follows) and wakes the watchers.
  void Publish(const RunEvent& event, bool done);

  // Waits up to `timeout` for an event newer than the one *seen (-1 before the first) and, when
  // there is one, copies it and its done flag out and advances *seen; false on timeout.
  bool WaitNewer(int64_t* seen, std::chrono::milliseconds timeout, RunEvent* event,
                 bool* done) const;

 private:
  const std::string run_id_;
  const std::string key_;
  std::atomic<bool> cancel_{false};
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  RunEvent last_;        // guarded by mu_
  int64_t version_ = 0;  // guarded by mu_; bumped on every new event
  bool done_ = false;    // guarded by mu_
};

// The event of a step in progress, and the final event of a run that ended with `result`
// (cancelled: CANCELLED; other errors: FAILED with the code).
RunEvent ProgressEvent(const std::string& run_id, const TrainProgress& progress);
RunEvent FinalEvent(const std::string& run_id, const absl::StatusOr<TrainResult>& result);

class RunRegistry {
 public:
  struct Started {
    std::shared_ptr<TrainingRunEntry> run;
    bool attached = false;  // true: `key` named a run that was already registered
  };
  // The run registered under `key`, or a new one (id "run-<n>-<ms>", its first event RUNNING).
  Started StartOrAttach(const std::string& key);
  // The run with id `run_id`; null when there is none.
  std::shared_ptr<TrainingRunEntry> Find(const std::string& run_id) const;
  // Releases `key` (a failed or cancelled run can be started again); the run stays watchable.
  void ReleaseKey(const std::string& key);
  // Sets every run's cancel flag.
  void CancelAll();

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<TrainingRunEntry>> by_key_;
  std::map<std::string, std::shared_ptr<TrainingRunEntry>> by_id_;
};

}  // namespace spar::trainer
