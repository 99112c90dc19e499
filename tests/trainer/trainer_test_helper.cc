// Runs one TrainDpo request in its own process, for trainer tests that need two processes:
//   spar_trainer_test_helper <init> <out> <state_dir> <kill_at_step> [batch_size] [loss]
// Uses testing::ResumableConfig() and ToyPairs() (a listwise loss: TrainListwise on ToyGroups());
// torchrun-style env (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) joins a Gloo group. kill_at_step
// > 0 makes the progress callback raise(SIGKILL) after that step (a crash at a deterministic
// point); 0 = run to the end. Exit 0 on success, 1 with the status on stderr otherwise.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "tests/trainer/toy_data.h"
#include "trainer/trainer.h"

int main(int argc, char** argv) {
  using namespace spar::trainer;
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s <init> <out> <state_dir> <kill_at_step> [batch_size]\n",
                 argv[0]);
    return 2;
  }
  const int kill_at = std::atoi(argv[4]);
  TrainConfig config = testing::ResumableConfig();
  config.train_state_dir = argv[3];
  if (argc > 5) config.batch_size = std::atoi(argv[5]);
  if (argc > 6) config.loss = argv[6];
  absl::StatusOr<DistributedConfig> dist = DistributedFromEnv();
  if (!dist.ok()) {
    std::fprintf(stderr, "%s\n", dist.status().ToString().c_str());
    return 1;
  }
  config.distributed = *dist;
  auto on_progress = [&](const TrainProgress& p) {
    if (kill_at > 0 && p.step == kill_at) raise(SIGKILL);
    return true;
  };
  absl::StatusOr<TrainResult> r =
      IsListwiseLoss(config.loss)
          ? TrainListwise(argv[1], testing::ToyGroups(), config, argv[2], on_progress)
          : TrainDpo(argv[1], testing::ToyPairs(), config, argv[2], on_progress);
  if (!r.ok()) {
    std::fprintf(stderr, "%s\n", r.status().ToString().c_str());
    return 1;
  }
  return 0;
}
