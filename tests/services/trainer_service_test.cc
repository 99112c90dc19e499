// The Trainer service as real `spar serve --role=trainer` processes over loopback gRPC:
//  - data parallel: rank 0 serves and drives a 2-rank Gloo group (torchrun env); the checkpoint
//    equals a single-process service run of the same request, and rank 1 writes nothing;
//  - a rank that cannot read a request's inputs fails that run on every rank, and the group
//    stays usable for the next one; so does a run cancelled through rank 0;
//  - resume: the service process SIGKILLed mid-run (injected fault after step 5, train_state
//    saved at step 4) and restarted continues the repeated request from step 4 and ends with the
//    weights of an uninterrupted run.
// Each rank runs in its own directory and the requests use relative paths, so "rank 1 wrote
// nothing" is a check on rank 1's own directory.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "model/internal/policy_internal.h"
#include "model/policy.h"
#include "nlohmann/json.hpp"
#include "services/app/app.h"
#include "services/common/server_runner.h"
#include "spar/v1/trainer.grpc.pb.h"
#include "tests/common/child_env.h"
#include "tests/testing/status_matchers.h"
#include "tests/trainer/toy_data.h"

namespace spar::services {
namespace {

using ::spar::testing::IsOk;

std::string TempRoot() {
  char tmpl[] = "/tmp/spar_trainer_service_XXXXXX";
  return mkdtemp(tmpl);
}

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// A child process running `spar` in `cwd` with extra environment entries; stdout is a pipe.
struct Child {
  pid_t pid = -1;
  FILE* out = nullptr;

  // Reads stdout lines until one starts with `prefix`; "" at EOF (the process ended).
  std::string ReadLineStartingWith(const std::string& prefix) {
    char buf[4096];
    while (std::fgets(buf, sizeof(buf), out) != nullptr) {
      std::string line(buf);
      if (line.rfind(prefix, 0) == 0) return line;
    }
    return "";
  }
  int Wait() {
    int status = 0;
    EXPECT_EQ(waitpid(pid, &status, 0), pid);
    if (out != nullptr) std::fclose(out);
    out = nullptr;
    return status;
  }
};

Child SpawnSpar(const std::vector<std::string>& args, const std::string& cwd,
                const std::vector<std::string>& extra_env) {
  std::vector<std::string> env_strings = spar::testing::ChildEnvironment(extra_env);
  std::string bin = SPAR_BIN;
  std::vector<std::string> argv_strings = {bin};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv, envp;
  for (std::string& a : argv_strings) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (std::string& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  int pipe_fds[2];
  EXPECT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  Child child;
  EXPECT_EQ(posix_spawn(&child.pid, bin.c_str(), &actions, nullptr, argv.data(), envp.data()), 0);
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  child.out = fdopen(pipe_fds[0], "r");
  return child;
}

// Largest absolute difference between the parameters of two checkpoints.
double MaxWeightDiff(const std::string& a, const std::string& b) {
  auto pa = model::Policy::Load(a);
  auto pb = model::Policy::Load(b);
  EXPECT_THAT(pa, IsOk());
  EXPECT_THAT(pb, IsOk());
  if (!pa.ok() || !pb.ok()) return INFINITY;
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

// A rank's directory: init/ (tiny random policy, same seed everywhere) and pairs.jsonl.
void MakeRankDir(const std::string& dir, bool with_pairs = true) {
  ASSERT_TRUE(MakeDirs(dir).ok());
  auto policy = model::Policy::CreateRandom(trainer::testing::TinyConfig(), 21);
  ASSERT_THAT(policy, IsOk());
  ASSERT_TRUE((*policy)->Save(JoinPath(dir, "init")).ok());
  if (with_pairs) {
    std::string text;
    for (const trainer::PreferencePair& p : trainer::testing::ToyPairs()) {
      nlohmann::json j = {{"prompt", p.prompt}, {"chosen", p.chosen}, {"rejected", p.rejected}};
      text += j.dump() + "\n";
    }
    ASSERT_TRUE(WriteFileAtomic(JoinPath(dir, "pairs.jsonl"), text).ok());
  }
}

// testing::ResumableConfig() as a request (12 pairs, batch 4, 2 epochs = 6 steps).
v1::StartTrainingRequest Request(const std::string& key, const std::string& base,
                                 int save_every_steps = 0) {
  v1::StartTrainingRequest r;
  r.set_idempotency_key(key);
  r.set_init_checkpoint(base.empty() ? "init" : JoinPath(base, "init"));
  r.set_pairs_path(base.empty() ? "pairs.jsonl" : JoinPath(base, "pairs.jsonl"));
  r.set_output_checkpoint(base.empty() ? "out" : JoinPath(base, "out"));
  v1::TrainingConfig* c = r.mutable_config();
  c->set_learning_rate(1e-3);
  c->set_batch_size(4);
  c->set_epochs(2);
  c->set_seed(7);
  c->set_lr_scheduler("cosine");
  c->set_warmup_steps(1);
  if (save_every_steps > 0) c->set_save_every_steps(save_every_steps);
  return r;
}

// Starts a run and watches it to the end; returns every event seen. `expect_ok`: the watch
// stream ends OK (false when the server is expected to die mid-run).
std::vector<v1::TrainingEvent> TrainThroughGrpc(const std::string& address,
                                                const v1::StartTrainingRequest& request,
                                                bool expect_ok = true) {
  auto stub = v1::Trainer::NewStub(MakeChannel(address));
  v1::StartTrainingResponse started;
  {
    grpc::ClientContext ctx;
    grpc::Status st = stub->StartTraining(&ctx, request, &started);
    EXPECT_TRUE(st.ok()) << st.error_message();
    if (!st.ok()) return {};
  }
  grpc::ClientContext ctx;
  v1::WatchTrainingRequest watch;
  watch.set_run_id(started.run_id());
  auto reader = stub->WatchTraining(&ctx, watch);
  std::vector<v1::TrainingEvent> events;
  v1::TrainingEvent ev;
  while (reader->Read(&ev)) events.push_back(ev);
  grpc::Status st = reader->Finish();
  if (expect_ok) {
    EXPECT_TRUE(st.ok()) << st.error_message();
  }
  return events;
}

std::string Metrics(int port) {
  httplib::Client http("127.0.0.1", port);
  auto res = http.Get("/metrics");
  return res ? res->body : "";
}

TEST(TrainerServiceProcessTest, TwoRankServiceMatchesSingleProcessService) {
  const std::string root = TempRoot();
  const std::string dir0 = JoinPath(root, "rank0"), dir1 = JoinPath(root, "rank1");
  MakeRankDir(dir0);
  MakeRankDir(dir1, /*with_pairs=*/false);  // written after the first request

  // Reference: the single-process service, in this process, same request.
  const std::string single = JoinPath(root, "single");
  MakeRankDir(single);
  {
    AppConfig ac;
    ac.roles = {"trainer"};
    ac.data_root = single;  // the request's paths are relative to it
    ac.metrics_port = -1;
    auto app = App::Start(ac);
    ASSERT_THAT(app, IsOk());
    std::vector<v1::TrainingEvent> events =
        TrainThroughGrpc((*app)->address(), Request("k", single));
    ASSERT_FALSE(events.empty());
    ASSERT_EQ(events.back().state(), v1::TRAINING_STATE_SUCCEEDED) << events.back().error();
    EXPECT_EQ(events.back().step(), 6);
  }

  // Two `spar serve --role=trainer` processes; rank 0 serves gRPC.
  const std::string port = std::to_string(FreePort());
  auto env = [&](int rank) {
    return std::vector<std::string>{absl::StrCat("RANK=", rank), "WORLD_SIZE=2",
                                    "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + port};
  };
  Child rank1 = SpawnSpar({"serve", "--role=trainer"}, dir1, env(1));
  Child rank0 =
      SpawnSpar({"serve", "--role=trainer", "--port=0", "--metrics_port=0"}, dir0, env(0));
  const std::string listening = rank0.ReadLineStartingWith("spar listening on ");
  ASSERT_FALSE(listening.empty()) << "rank 0 did not start";
  // "spar listening on 127.0.0.1:PORT (metrics on :N)"
  std::vector<std::string> words = absl::StrSplit(listening, ' ');
  ASSERT_GE(words.size(), 7u);
  const std::string address = words[3];
  int metrics_port = 0;
  ASSERT_TRUE(
      absl::SimpleAtoi(absl::StripSuffix(absl::StripPrefix(words[6], ":"), ")\n"), &metrics_port))
      << listening;
  ASSERT_FALSE(rank1.ReadLineStartingWith("spar trainer worker rank 1/2").empty());

  // Rank 1 has no pairs.jsonl yet: the run fails on every rank, naming the cause.
  std::vector<v1::TrainingEvent> events = TrainThroughGrpc(address, Request("k-missing", ""));
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().state(), v1::TRAINING_STATE_FAILED);
  EXPECT_NE(events.back().error().find("other rank(s) cannot read"), std::string::npos)
      << events.back().error();
  EXPECT_FALSE(PathExists(JoinPath(dir0, "out")));

  // With the inputs in place the group trains the request.
  MakeRankDir(dir1);
  events = TrainThroughGrpc(address, Request("k", ""));
  ASSERT_FALSE(events.empty());
  ASSERT_EQ(events.back().state(), v1::TRAINING_STATE_SUCCEEDED) << events.back().error();
  EXPECT_EQ(events.back().step(), 6);
  ASSERT_TRUE(PathExists(JoinPath(dir0, "out/config.json")));
  EXPECT_FALSE(PathExists(JoinPath(dir1, "out"))) << "only rank 0 writes checkpoints";
  EXPECT_FALSE(PathExists(JoinPath(dir1, "out.train_state")));
  EXPECT_LE(MaxWeightDiff(JoinPath(single, "out"), JoinPath(dir0, "out")), 1e-5);

  // CancelTraining on rank 0 stops every rank between steps (the per-step all-reduce), nothing
  // is written, and the group stays usable. 3,000 steps: far longer than the cancel takes.
  {
    v1::StartTrainingRequest long_run = Request("k-long", "");
    long_run.set_output_checkpoint("out-long");
    long_run.mutable_config()->set_epochs(1000);
    auto stub = v1::Trainer::NewStub(MakeChannel(address));
    v1::StartTrainingResponse started;
    grpc::ClientContext start_ctx;
    ASSERT_TRUE(stub->StartTraining(&start_ctx, long_run, &started).ok());
    grpc::ClientContext watch_ctx;
    v1::WatchTrainingRequest watch;
    watch.set_run_id(started.run_id());
    auto reader = stub->WatchTraining(&watch_ctx, watch);
    v1::TrainingEvent ev;
    bool cancel_sent = false;
    while (reader->Read(&ev)) {
      if (!cancel_sent && ev.step() >= 1) {
        grpc::ClientContext cancel_ctx;
        v1::CancelTrainingRequest cancel;
        cancel.set_run_id(started.run_id());
        v1::CancelTrainingResponse cancelled;
        ASSERT_TRUE(stub->CancelTraining(&cancel_ctx, cancel, &cancelled).ok());
        cancel_sent = true;
      }
    }
    EXPECT_TRUE(reader->Finish().ok());
    EXPECT_EQ(ev.state(), v1::TRAINING_STATE_CANCELLED) << ev.error();
    EXPECT_LT(ev.step(), 3000);
    EXPECT_FALSE(PathExists(JoinPath(dir0, "out-long")));
    // The group still trains: the first request again under a new key, same result.
    ASSERT_TRUE(RemoveAll(JoinPath(dir0, "out")).ok());
    events = TrainThroughGrpc(address, Request("k-again", ""));
    ASSERT_FALSE(events.empty());
    ASSERT_EQ(events.back().state(), v1::TRAINING_STATE_SUCCEEDED) << events.back().error();
    EXPECT_LE(MaxWeightDiff(JoinPath(single, "out"), JoinPath(dir0, "out")), 1e-5);
  }

  const std::string metrics = Metrics(metrics_port);
  EXPECT_NE(metrics.find("spar_trainer_world_size 2"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("spar_trainer_group_healthy 1"), std::string::npos);

  // SIGTERM to rank 0: it tells rank 1 to stop; both exit 0.
  ASSERT_EQ(kill(rank0.pid, SIGTERM), 0);
  const int s0 = rank0.Wait();
  const int s1 = rank1.Wait();
  EXPECT_TRUE(WIFEXITED(s0) && WEXITSTATUS(s0) == 0) << "rank 0 status " << s0;
  EXPECT_TRUE(WIFEXITED(s1) && WEXITSTATUS(s1) == 0) << "rank 1 status " << s1;
  RemoveAll(root).IgnoreError();
}

TEST(TrainerServiceTest, Bf16OnACpuTrainerIsInvalidArgumentNamingTheField) {
  const std::string root = TempRoot();
  AppConfig ac;
  ac.roles = {"trainer"};
  ac.data_root = root;
  ac.metrics_port = -1;
  auto app = App::Start(ac);
  ASSERT_THAT(app, IsOk());
  MakeRankDir(root);
  v1::StartTrainingRequest request = Request("bf16", root);
  request.mutable_config()->set_mixed_precision("bf16");
  auto stub = v1::Trainer::NewStub(MakeChannel((*app)->address()));
  grpc::ClientContext ctx;
  v1::StartTrainingResponse response;
  grpc::Status st = stub->StartTraining(&ctx, request, &response);
  if (st.ok()) GTEST_SKIP() << "this build has a CUDA device";
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("mixed_precision"), std::string::npos) << st.error_message();
  RemoveAll(root).IgnoreError();
}

// Starts `spar serve --role=trainer` in `dir`; returns the child and its gRPC address and
// metrics port.
Child StartTrainer(const std::string& dir, const std::vector<std::string>& env,
                   std::string* address, int* metrics_port) {
  Child c = SpawnSpar({"serve", "--role=trainer", "--port=0", "--metrics_port=0"}, dir, env);
  const std::string listening = c.ReadLineStartingWith("spar listening on ");
  EXPECT_FALSE(listening.empty()) << "the trainer did not start";
  std::vector<std::string> words = absl::StrSplit(listening, ' ');
  if (words.size() < 7) return c;
  *address = words[3];
  EXPECT_TRUE(
      absl::SimpleAtoi(absl::StripSuffix(absl::StripPrefix(words[6], ":"), ")\n"), metrics_port))
      << listening;
  return c;
}

TEST(TrainerServiceProcessTest, KilledServiceResumesTheRepeatedRequestFromTrainState) {
  const std::string root = TempRoot();
  // Uninterrupted reference (in-process service), state every 2 steps like the crash run.
  const std::string ref = JoinPath(root, "ref");
  MakeRankDir(ref);
  {
    AppConfig ac;
    ac.roles = {"trainer"};
    ac.data_root = ref;
    ac.metrics_port = -1;
    auto app = App::Start(ac);
    ASSERT_THAT(app, IsOk());
    std::vector<v1::TrainingEvent> events =
        TrainThroughGrpc((*app)->address(), Request("resume-key", ref, /*save_every_steps=*/2));
    ASSERT_FALSE(events.empty());
    ASSERT_EQ(events.back().state(), v1::TRAINING_STATE_SUCCEEDED) << events.back().error();
    EXPECT_EQ(events.back().resumed_from_step(), 0);
  }

  // The service dies (SIGKILL) right after step 5; train_state holds step 4.
  const std::string dir = JoinPath(root, "crash");
  MakeRankDir(dir);
  std::string address;
  int metrics_port = 0;
  Child first =
      StartTrainer(dir, {"SPAR_TRAINER_FAULT_KILL_AFTER_STEP=5"}, &address, &metrics_port);
  ASSERT_FALSE(address.empty());
  TrainThroughGrpc(address, Request("resume-key", "", 2), /*expect_ok=*/false);
  const int status = first.Wait();
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
  ASSERT_TRUE(PathExists(JoinPath(dir, "out.train_state/state.pt")));
  ASSERT_FALSE(PathExists(JoinPath(dir, "out")));

  // Restarted, the same request (same idempotency key) continues from step 4.
  Child second =
      StartTrainer(dir, {"SPAR_TRAINER_FAULT_KILL_AFTER_STEP="}, &address, &metrics_port);
  ASSERT_FALSE(address.empty());
  std::vector<v1::TrainingEvent> events = TrainThroughGrpc(address, Request("resume-key", "", 2));
  ASSERT_FALSE(events.empty());
  const v1::TrainingEvent& last = events.back();
  ASSERT_EQ(last.state(), v1::TRAINING_STATE_SUCCEEDED) << last.error();
  EXPECT_EQ(last.step(), 6);
  EXPECT_EQ(last.resumed_from_step(), 4);
  for (const v1::TrainingEvent& ev : events) {
    if (ev.step() == 0) continue;  // the "started" event, before any step
    EXPECT_GE(ev.step(), 5) << "a resumed run reports no step before the state's";
    EXPECT_EQ(ev.resumed_from_step(), 4);
  }
  EXPECT_LE(MaxWeightDiff(JoinPath(ref, "out"), JoinPath(dir, "out")), 1e-6);
  EXPECT_FALSE(PathExists(JoinPath(dir, "out.train_state"))) << "state removed after success";
  const std::string metrics = Metrics(metrics_port);
  EXPECT_NE(metrics.find("spar_trainer_resumed_runs_total 1"), std::string::npos) << metrics;

  ASSERT_EQ(kill(second.pid, SIGTERM), 0);
  const int s = second.Wait();
  EXPECT_TRUE(WIFEXITED(s) && WEXITSTATUS(s) == 0) << "status " << s;
  RemoveAll(root).IgnoreError();
}

}  // namespace
}  // namespace spar::services
