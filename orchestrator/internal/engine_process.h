// Internal to the engine sampler port: a generation engine process the orchestrator supervises
// (sampler_engine.command), so engines that cannot reload weights over HTTP (vLLM) are handed
// each round's checkpoint by a restart on it. The command is an argv template; "{model_path}" in
// any argument is replaced by the checkpoint path. The engine runs in its own process group
// (its workers are stopped with it), with the orchestrator's stdout/stderr. Thread-compatible:
// the port calls it under its hand-off lock.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace spar::orchestrator::internal {

class EngineProcess {
 public:
  explicit EngineProcess(std::vector<std::string> command_template);
  ~EngineProcess();  // Stop()
  EngineProcess(const EngineProcess&) = delete;
  EngineProcess& operator=(const EngineProcess&) = delete;

  // Starts the engine on `model_path` (stopping a running one first). InvalidArgument for an
  // empty command; Internal when the program cannot be started (named).
  absl::Status Start(const std::string& model_path);
  // SIGTERM to the process group, SIGKILL after `grace`; reaps it. No-op when not running.
  void Stop(absl::Duration grace = absl::Seconds(30));
  // True while the process has not exited (reaps it once it has).
  bool Running();
  // How the last process ended ("exit 1", "signal 9"), "" while running or before any start.
  std::string ExitDescription() const { return exit_; }
  // The checkpoint the running process was started on ("" when none).
  const std::string& model_path() const { return model_path_; }

 private:
  std::vector<std::string> template_;
  pid_t pid_ = -1;
  std::string model_path_;
  std::string exit_;
  bool stopping_ = false;  // Stop is reaping it: an expected end
};

}  // namespace spar::orchestrator::internal
