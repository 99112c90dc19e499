// Fault injection for tests only: SPAR_TRAINER_FAULT_KILL_AFTER_STEP=N makes the trainer process
// SIGKILL itself right after optimizer step N (after that step's train_state was written), so
// e2e tests can kill a run at a known point and check the resume.
#pragma once

namespace spar::trainer {

class FaultHook {
 public:
  // Reads SPAR_TRAINER_FAULT_KILL_AFTER_STEP (absent or not a number: no fault).
  static FaultHook FromEnv();

  // Called after each optimizer step: SIGKILLs this process at the configured step.
  void AfterStep(int step) const;

 private:
  explicit FaultHook(int kill_after_step) : kill_after_step_(kill_after_step) {}
  int kill_after_step_ = 0;  // 0 = never
};

}  // namespace spar::trainer
