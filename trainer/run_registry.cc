#include "trainer/run_registry.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace spar::trainer {

TrainingRunEntry::TrainingRunEntry(std::string run_id, std::string key)
    : run_id_(std::move(run_id)), key_(std::move(key)) {
  last_.run_id = run_id_;
  last_.state = RunState::kRunning;
}

void TrainingRunEntry::Publish(const RunEvent& event, bool done) {
  std::lock_guard<std::mutex> lock(mu_);
  last_ = event;
  version_++;
  done_ = done;
  cv_.notify_all();
}

bool TrainingRunEntry::WaitNewer(int64_t* seen, std::chrono::milliseconds timeout, RunEvent* event,
                                 bool* done) const {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return version_ != *seen; });
  if (version_ == *seen) return false;
  *seen = version_;
  *event = last_;
  *done = done_;
  return true;
}

RunEvent ProgressEvent(const std::string& run_id, const TrainProgress& p) {
  RunEvent ev;
  ev.run_id = run_id;
  ev.state = RunState::kRunning;
  ev.step = p.step;
  ev.total_steps = p.total_steps;
  ev.loss = p.loss;
  ev.tokens_per_second = p.tokens_per_second;
  ev.resumed_from_step = p.resumed_from_step;
  ev.metrics = p.metrics;
  return ev;
}

RunEvent FinalEvent(const std::string& run_id, const absl::StatusOr<TrainResult>& result) {
  RunEvent ev;
  ev.run_id = run_id;
  if (result.ok()) {
    ev.state = RunState::kSucceeded;
    ev.step = result->steps;
    ev.total_steps = result->steps;
    ev.loss = result->final_loss;
    ev.resumed_from_step = result->resumed_from_step;
    ev.metrics = result->metrics;
  } else if (absl::IsCancelled(result.status())) {
    ev.state = RunState::kCancelled;
    ev.error = result.status().ToString();
  } else {
    ev.state = RunState::kFailed;
    ev.error = result.status().ToString();
    ev.error_code = static_cast<int32_t>(result.status().code());
  }
  return ev;
}

RunRegistry::Started RunRegistry::StartOrAttach(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_key_.find(key);
  if (it != by_key_.end()) return {it->second, true};
  auto run = std::make_shared<TrainingRunEntry>(
      absl::StrCat("run-", by_id_.size() + 1, "-", absl::ToUnixMillis(absl::Now()) % 100000), key);
  by_key_[key] = run;
  by_id_[run->run_id()] = run;
  return {run, false};
}

std::shared_ptr<TrainingRunEntry> RunRegistry::Find(const std::string& run_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_id_.find(run_id);
  return it == by_id_.end() ? nullptr : it->second;
}

void RunRegistry::ReleaseKey(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  by_key_.erase(key);
}

void RunRegistry::CancelAll() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, run] : by_id_) run->Cancel();
}

}  // namespace spar::trainer
