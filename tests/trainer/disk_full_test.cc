// A full disk while training (issue 12, item 12): writing train_state or the checkpoint fails
// with ResourceExhausted "No space left on device" (before: LibTorch threw from a destructor and
// the process terminated), leaves no temporary file or tmp-* directory, keeps the last good
// train_state, and the same request resumes from it once there is space again. Once with a
// fault-injected writer (always runs) and once on a real, small tmpfs (skips where mount(2) is
// not permitted).
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/internal/file_sys_calls.h"
#include "gtest/gtest.h"
#include "model/policy.h"
#include "tests/common/fault_sys_calls.h"
#include "tests/testing/status_matchers.h"
#include "tests/trainer/toy_data.h"
#include "trainer/trainer.h"

namespace spar::trainer {
namespace {

using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;

std::string TempDir(const std::string& name) {
  std::string dir =
      JoinPath(::testing::TempDir(), absl::StrCat("spar_disk_full_test_", ::getpid(), "_", name));
  EXPECT_TRUE(RemoveAll(dir).ok());
  return dir;
}

std::string SaveInit(uint64_t seed, const std::string& dir) {
  auto p = model::Policy::CreateRandom(testing::TinyConfig(), seed);
  EXPECT_THAT(p, IsOk());
  EXPECT_TRUE((*p)->Save(dir).ok());
  return dir;
}

// Entries under `dir` (recursively) that look like a temporary: "*.tmp*" files, "tmp-*" dirs.
std::vector<std::string> Temporaries(const std::string& dir) {
  std::vector<std::string> out;
  auto names = ListDir(dir);
  if (!names.ok()) return out;
  for (const std::string& n : *names) {
    const std::string path = JoinPath(dir, n);
    if (absl::StrContains(n, ".tmp") || absl::StartsWith(n, "tmp-")) out.push_back(path);
    if (IsDirectory(path)) {
      for (const std::string& t : Temporaries(path)) out.push_back(t);
    }
  }
  return out;
}

// The size of a train_state written after step 2 of testing::ResumableConfig().
size_t StateSize(const std::string& init) {
  TrainConfig config = testing::ResumableConfig();
  config.train_state_dir = TempDir("measure_state");
  auto r = TrainDpo(init, testing::ToyPairs(), config, TempDir("measure"),
                    [](const TrainProgress& p) { return p.step < 2; });
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kCancelled));
  auto bytes = ReadFile(JoinPath(config.train_state_dir, "state.pt"));
  EXPECT_THAT(bytes, IsOk());
  EXPECT_TRUE(RemoveAll(config.train_state_dir).ok());
  return bytes.ok() ? bytes->size() : 0;
}

// Trains the resumable request; returns the status and the steps it reported.
absl::Status Train(const std::string& init, const std::string& out, const std::string& state,
                   std::vector<int>* steps) {
  TrainConfig config = testing::ResumableConfig();
  config.train_state_dir = state;
  steps->clear();
  return TrainDpo(init, testing::ToyPairs(), config, out,
                  [&](const TrainProgress& p) {
                    steps->push_back(p.step);
                    return true;
                  })
      .status();
}

void ExpectNoSpace(const absl::Status& st) {
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_TRUE(absl::StrContains(st.message(), "No space left on device")) << st;
}

// The step-4 train_state does not fit beside the step-2 one: the run fails cleanly, the step-2
// state stays, and the resumed run trains steps 3..6 only.
TEST(DiskFullTest, TrainStateWriteFailsCleanlyAndTheRunResumes) {
  const std::string init = SaveInit(21, TempDir("init"));
  const size_t state_size = StateSize(init);
  ASSERT_GT(state_size, 1000u);
  const std::string dir = TempDir("run");
  const std::string out = JoinPath(dir, "out"), state = JoinPath(dir, "state");
  std::vector<int> steps;
  {
    spar::testing::FaultSysCalls disk("state.pt", state_size + state_size / 2);
    spar::internal::ScopedFileSysCallsForTesting scoped(&disk);
    ExpectNoSpace(Train(init, out, state, &steps));
    EXPECT_EQ(disk.failures(), 1);
  }
  EXPECT_EQ(steps, std::vector<int>({1, 2, 3})) << "step 4 failed saving, before reporting";
  EXPECT_EQ(Temporaries(dir), std::vector<std::string>());
  EXPECT_FALSE(PathExists(out));
  ASSERT_TRUE(PathExists(JoinPath(state, "state.pt")));

  ASSERT_TRUE(Train(init, out, state, &steps).ok());
  EXPECT_EQ(steps, std::vector<int>({3, 4, 5, 6}));
  EXPECT_TRUE(PathExists(JoinPath(out, "model.safetensors")));
  EXPECT_FALSE(PathExists(state));
  EXPECT_EQ(Temporaries(dir), std::vector<std::string>());
}

// The final checkpoint does not fit: no tmp-* directory is left, train_state (step 4) is kept,
// and the resumed run only trains the last two steps.
TEST(DiskFullTest, CheckpointWriteFailsCleanlyAndKeepsTheTrainState) {
  const std::string init = SaveInit(22, TempDir("init2"));
  const std::string dir = TempDir("run2");
  const std::string out = JoinPath(dir, "out"), state = JoinPath(dir, "state");
  std::vector<int> steps;
  {
    spar::testing::FaultSysCalls disk("model.safetensors", 1000);
    spar::internal::ScopedFileSysCallsForTesting scoped(&disk);
    ExpectNoSpace(Train(init, out, state, &steps));
  }
  EXPECT_EQ(steps, std::vector<int>({1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(*ListDir(dir), std::vector<std::string>{"state"}) << "no tmp-* checkpoint dir";
  ASSERT_TRUE(PathExists(JoinPath(state, "state.pt")));

  ASSERT_TRUE(Train(init, out, state, &steps).ok());
  EXPECT_EQ(steps, std::vector<int>({5, 6}));
  EXPECT_EQ(*ListDir(dir), std::vector<std::string>{"out"});
}

// Mounts a tmpfs of `bytes` at `dir` (or resizes the one there); false where not permitted.
bool MountTmpfs(const std::string& dir, size_t bytes, bool remount, std::string* error) {
  const std::string options = absl::StrCat("size=", bytes);
  if (::mount("tmpfs", dir.c_str(), "tmpfs", remount ? MS_REMOUNT : 0, options.c_str()) == 0) {
    return true;
  }
  *error = std::strerror(errno);
  return false;
}

// The same on a real full disk: a tmpfs with room for one train_state and a half.
TEST(DiskFullTest, SmallTmpfsFailsCleanlyAndResumesAfterGrowing) {
  const std::string init = SaveInit(23, TempDir("init3"));
  const size_t state_size = StateSize(init);
  ASSERT_GT(state_size, 1000u);
  const std::string dir = TempDir("tmpfs");
  ASSERT_TRUE(MakeDirs(dir).ok());
  std::string error;
  if (!MountTmpfs(dir, state_size + state_size / 2, /*remount=*/false, &error)) {
    RemoveAll(dir).IgnoreError();
    GTEST_SKIP() << "cannot mount a tmpfs here: " << error;
  }
  auto unmount = absl::MakeCleanup([&dir] {
    EXPECT_EQ(::umount2(dir.c_str(), MNT_DETACH), 0) << std::strerror(errno);
    EXPECT_TRUE(RemoveAll(dir).ok());
  });
  const std::string out = JoinPath(dir, "out"), state = JoinPath(dir, "state");
  std::vector<int> steps;
  ExpectNoSpace(Train(init, out, state, &steps));
  EXPECT_EQ(steps, std::vector<int>({1, 2, 3})) << "step 4 failed saving, before reporting";
  EXPECT_EQ(Temporaries(dir), std::vector<std::string>());
  EXPECT_TRUE(PathExists(JoinPath(state, "state.pt")));

  // Space is back: room for the state, its successor and the checkpoint.
  ASSERT_TRUE(MountTmpfs(dir, 8 * state_size, /*remount=*/true, &error)) << error;
  const absl::Status resumed = Train(init, out, state, &steps);
  EXPECT_THAT(resumed, IsOk());
  EXPECT_EQ(steps, std::vector<int>({3, 4, 5, 6}));
  EXPECT_TRUE(PathExists(JoinPath(out, "model.safetensors")));
  EXPECT_EQ(Temporaries(dir), std::vector<std::string>());
}

}  // namespace
}  // namespace spar::trainer
