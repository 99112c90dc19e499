// Tests that need a second process: kill-and-resume (SIGKILL at a deterministic step, resume
// in-process) and 2-rank Gloo data parallel on loopback. Both run spar_trainer_test_helper.
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "model/internal/policy_internal.h"
#include "model/policy.h"
#include "tests/common/child_env.h"
#include "tests/testing/status_matchers.h"
#include "tests/trainer/toy_data.h"
#include "trainer/trainer.h"

namespace spar::trainer {
namespace {

using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;

std::string TempDir(const std::string& name) {
  std::string dir = JoinPath(::testing::TempDir(),
                             absl::StrCat("spar_trainer_process_test_", ::getpid(), "_", name));
  EXPECT_TRUE(RemoveAll(dir).ok());
  return dir;
}

std::string SaveInit(uint64_t seed, const std::string& name) {
  auto p = model::Policy::CreateRandom(testing::TinyConfig(), seed);
  EXPECT_THAT(p, IsOk());
  const std::string dir = TempDir(name);
  EXPECT_TRUE((*p)->Save(dir).ok());
  return dir;
}

// Starts the helper with extra environment entries; returns its pid.
pid_t Spawn(const std::vector<std::string>& args, const std::vector<std::string>& extra_env) {
  std::vector<std::string> env_strings = spar::testing::ChildEnvironment(extra_env);
  std::vector<char*> argv, envp;
  std::string helper = SPAR_TRAINER_TEST_HELPER;
  argv.push_back(helper.data());
  std::vector<std::string> args_copy = args;
  for (std::string& a : args_copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (std::string& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = -1;
  EXPECT_EQ(posix_spawn(&pid, helper.c_str(), nullptr, nullptr, argv.data(), envp.data()), 0);
  return pid;
}

int WaitStatus(pid_t pid) {
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  return status;
}

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// Largest absolute difference between the parameters of two checkpoints.
double MaxWeightDiff(const std::string& a, const std::string& b) {
  auto pa = model::Policy::Load(a);
  auto pb = model::Policy::Load(b);
  EXPECT_TRUE(pa.ok() && pb.ok());
  auto na = (*pa)->impl().module->named_parameters();
  auto nb = (*pb)->impl().module->named_parameters();
  double diff = 0;
  for (const auto& item : na) {
    const torch::Tensor* other = nb.find(item.key());
    EXPECT_NE(other, nullptr) << item.key();
    if (other == nullptr) return INFINITY;
    diff = std::max(diff, (item.value() - *other).abs().max().item<double>());
  }
  return diff;
}

TEST(TrainResumeTest, SigkilledRunResumesToTheSameWeights) {
  const std::string init = SaveInit(11, "init");
  const std::vector<PreferencePair> pairs = testing::ToyPairs();

  // Uninterrupted, in-process.
  const std::string full = TempDir("full");
  TrainConfig config = testing::ResumableConfig();
  config.train_state_dir = TempDir("full_state");
  absl::StatusOr<TrainResult> r = TrainDpo(init, pairs, config, full);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->steps, 6);
  EXPECT_FALSE(PathExists(config.train_state_dir)) << "state is removed after success";

  // A child process trains the same request and is SIGKILLed after step 5 (state saved at 4).
  const std::string out = TempDir("resumed");
  const std::string state = TempDir("state");
  const int status = WaitStatus(Spawn({init, out, state, "5"}, {}));
  ASSERT_TRUE(WIFSIGNALED(status)) << "exit status " << status;
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  ASSERT_TRUE(PathExists(JoinPath(state, "state.pt")));
  EXPECT_FALSE(PathExists(out));

  // Restarted with the same request: continues at step 5, ends with the same weights.
  config.train_state_dir = state;
  std::vector<int> steps;
  r = TrainDpo(init, pairs, config, out, [&](const TrainProgress& p) {
    steps.push_back(p.step);
    return true;
  });
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(steps, std::vector<int>({5, 6}));
  EXPECT_EQ(r->steps, 6);
  EXPECT_LE(MaxWeightDiff(full, out), 1e-6);
  EXPECT_FALSE(PathExists(state));
}

TEST(TrainResumeTest, StateOfADifferentRequestIsIgnored) {
  const std::string init = SaveInit(12, "init2");
  const std::string state = TempDir("state2");
  TrainConfig config = testing::ResumableConfig();
  config.train_state_dir = state;
  std::vector<PreferencePair> pairs = testing::ToyPairs();
  // Leave a state behind (cancel after step 2), then change the request.
  ASSERT_THAT(
      TrainDpo(init, pairs, config, TempDir("x"), [](const TrainProgress& p) { return p.step < 2; })
          .status(),
      StatusIs(absl::StatusCode::kCancelled));
  ASSERT_TRUE(PathExists(JoinPath(state, "state.pt")));
  config.learning_rate = 2e-3;
  std::vector<int> steps;
  ASSERT_TRUE(TrainDpo(init, pairs, config, TempDir("y"), [&](const TrainProgress& p) {
                steps.push_back(p.step);
                return true;
              }).ok());
  ASSERT_FALSE(steps.empty());
  EXPECT_EQ(steps.front(), 1);
}

TEST(TrainDistributedTest, TwoGlooRanksMatchOneProcess) {
  const std::string init = SaveInit(13, "init3");
  // One process, global batch 4.
  const std::string single = TempDir("single");
  TrainConfig config = testing::ResumableConfig();
  config.save_every_steps = 0;
  ASSERT_TRUE(TrainDpo(init, testing::ToyPairs(), config, single).ok());

  // Two ranks on loopback, same global batch (2 pairs each); rank 0 writes.
  const std::string port = std::to_string(FreePort());
  const std::string out0 = TempDir("rank0"), out1 = TempDir("rank1");
  std::vector<pid_t> pids;
  for (int rank = 0; rank < 2; ++rank) {
    pids.push_back(
        Spawn({init, rank == 0 ? out0 : out1, TempDir(absl::StrCat("dstate", rank)), "0"},
              {absl::StrCat("RANK=", rank), "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1",
               "MASTER_PORT=" + port}));
  }
  for (pid_t pid : pids) {
    const int status = WaitStatus(pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  }
  ASSERT_TRUE(PathExists(out0));
  EXPECT_FALSE(PathExists(out1)) << "only rank 0 writes";
  EXPECT_LE(MaxWeightDiff(single, out0), 1e-5);
}

// Listwise groups split over two ranks (3 groups, batch 2: the second step leaves rank 1 none).
TEST(TrainDistributedTest, TwoGlooRanksMatchOneProcessListwise) {
  const std::string init = SaveInit(14, "init4");
  for (const char* loss : {"brain", "rrhf"}) {
    TrainConfig config = testing::ResumableConfig();
    config.save_every_steps = 0;
    config.batch_size = 2;
    config.loss = loss;
    const std::string single = TempDir(absl::StrCat("single_", loss));
    ASSERT_THAT(TrainListwise(init, testing::ToyGroups(), config, single), IsOk());
    const std::string port = std::to_string(FreePort());
    const std::string out0 = TempDir(absl::StrCat("lw0_", loss));
    std::vector<pid_t> pids;
    for (int rank = 0; rank < 2; ++rank) {
      pids.push_back(Spawn({init, rank == 0 ? out0 : TempDir(absl::StrCat("lw1_", loss)),
                            TempDir(absl::StrCat("lwstate", rank, loss)), "0", "2", loss},
                           {absl::StrCat("RANK=", rank), "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1",
                            "MASTER_PORT=" + port}));
    }
    for (pid_t pid : pids) {
      const int status = WaitStatus(pid);
      ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << loss << " status " << status;
    }
    EXPECT_LE(MaxWeightDiff(single, out0), 1e-5) << loss;
  }
}

}  // namespace
}  // namespace spar::trainer
