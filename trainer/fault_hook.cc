#include "trainer/fault_hook.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "common/log.h"

namespace spar::trainer {

FaultHook FaultHook::FromEnv() {
  const char* v = std::getenv("SPAR_TRAINER_FAULT_KILL_AFTER_STEP");
  int n = 0;
  return FaultHook(v != nullptr && absl::SimpleAtoi(v, &n) ? n : 0);
}

void FaultHook::AfterStep(int step) const {
  if (kill_after_step_ > 0 && step == kill_after_step_) {
    SPAR_LOG(Warning) << "fault injection: SIGKILL after step " << step;
    ::kill(::getpid(), SIGKILL);
  }
}

}  // namespace spar::trainer
