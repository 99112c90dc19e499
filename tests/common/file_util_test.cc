#include "common/file_util.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "absl/strings/match.h"
#include "common/internal/file_sys_calls.h"
#include "tests/common/fault_sys_calls.h"
#include "tests/testing/status_matchers.h"

namespace spar {
namespace {

using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;

std::string TempDir() {
  char tmpl[] = "/tmp/spar_file_util_XXXXXX";
  return mkdtemp(tmpl);
}

TEST(FileUtilTest, AtomicWriteReplacesAndLeavesNoTemp) {
  std::string dir = TempDir();
  std::string path = JoinPath(dir, "a.json");
  ASSERT_TRUE(WriteFileAtomic(path, "one").ok());
  ASSERT_TRUE(WriteFileAtomic(path, "two").ok());
  EXPECT_EQ(*ReadFile(path), "two");
  EXPECT_EQ(*ListDir(dir), std::vector<std::string>{"a.json"});
  ASSERT_TRUE(RemoveAll(dir).ok());
  EXPECT_FALSE(PathExists(dir));
}

TEST(FileUtilTest, ReplaceSymlinkSwapsTheTargetAndLeavesNoTemp) {
  std::string dir = TempDir();
  ASSERT_TRUE(MakeDirs(JoinPath(dir, "iter_001/checkpoint")).ok());
  ASSERT_TRUE(MakeDirs(JoinPath(dir, "iter_002/checkpoint")).ok());
  ASSERT_TRUE(WriteFileAtomic(JoinPath(dir, "iter_002/checkpoint/config.json"), "{}").ok());
  std::string link = JoinPath(dir, "best");
  EXPECT_THAT(ReadSymlink(link), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_TRUE(ReplaceSymlink("iter_001/checkpoint", link).ok());
  EXPECT_EQ(*ReadSymlink(link), "iter_001/checkpoint");
  ASSERT_TRUE(ReplaceSymlink("iter_001/checkpoint", link).ok());  // unchanged: nothing to do
  ASSERT_TRUE(ReplaceSymlink("iter_002/checkpoint", link).ok());
  EXPECT_EQ(*ReadSymlink(link), "iter_002/checkpoint");
  EXPECT_EQ(*ReadFile(JoinPath(link, "config.json")), "{}");  // relative to the link's directory
  EXPECT_EQ(*ListDir(dir), (std::vector<std::string>{"best", "iter_001", "iter_002"}));
  // A stale temporary link (a crash between symlink and rename) is replaced.
  ASSERT_EQ(::symlink("nowhere", (link + ".tmp-link").c_str()), 0);
  ASSERT_TRUE(ReplaceSymlink("iter_001/checkpoint", link).ok());
  EXPECT_EQ(*ReadSymlink(link), "iter_001/checkpoint");
  EXPECT_FALSE(PathExists(link + ".tmp-link"));
  ASSERT_TRUE(RemoveAll(dir).ok());  // removes the link, not what it points to first
  EXPECT_FALSE(PathExists(dir));
}

TEST(FileUtilTest, JsonlRoundTripAndTornTail) {
  std::string dir = TempDir();
  std::string path = JoinPath(dir, "x.jsonl");
  std::vector<nlohmann::json> rows = {{{"a", 1}}, {{"b", "two"}}};
  ASSERT_TRUE(WriteJsonlAtomic(path, rows).ok());
  EXPECT_EQ(*ReadJsonl(path), rows);
  ASSERT_TRUE(AppendLine(path, "{\"c\": 3}").ok());
  EXPECT_EQ(ReadJsonl(path)->size(), 3u);
  // A crash mid-append leaves a partial last line: an error unless explicitly tolerated.
  std::string text = *ReadFile(path) + "{\"d\": ";
  ASSERT_TRUE(WriteFileAtomic(path, text).ok());
  auto strict = ReadJsonl(path);
  EXPECT_THAT(strict, StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_NE(std::string(strict.status().message()).find(":4:"), std::string::npos);
  EXPECT_EQ(ReadJsonl(path, /*allow_torn_tail=*/true)->size(), 3u);
  RemoveAll(dir).IgnoreError();
}

// A disk that fills up after N bytes (a fault-injected writer): the error is ResourceExhausted
// naming the file and ENOSPC, the old contents stay, and no temporary is left behind.
TEST(FileUtilTest, AtomicWriteOnAFullDiskKeepsTheOldFileAndLeavesNoTemp) {
  const std::string dir = TempDir();
  const std::string path = JoinPath(dir, "a.json");
  ASSERT_TRUE(WriteFileAtomic(path, "old").ok());
  for (size_t budget : {0, 1, 4095, 4096}) {
    testing::FaultSysCalls full(/*match=*/dir, budget);
    spar::internal::ScopedFileSysCallsForTesting scoped(&full);
    const absl::Status st = WriteFileAtomic(path, std::string(8192, 'x'));
    EXPECT_THAT(st, StatusIs(absl::StatusCode::kResourceExhausted)) << budget << ": " << st;
    EXPECT_TRUE(absl::StrContains(st.message(), path)) << st;
    EXPECT_TRUE(absl::StrContains(st.message(), "No space left on device")) << st;
    EXPECT_EQ(full.failures(), 1) << budget;
    EXPECT_EQ(*ReadFile(path), "old");
    EXPECT_EQ(*ListDir(dir), std::vector<std::string>{"a.json"}) << budget;
  }
  ASSERT_TRUE(WriteFileAtomic(path, "new").ok()) << "space is back";
  EXPECT_EQ(*ReadFile(path), "new");
  ASSERT_TRUE(RemoveAll(dir).ok());
}

// A streaming producer (LibTorch's archive writer) must be able to finish: after the first
// failure Write still reports every byte, and the error comes from status() and Commit().
TEST(FileUtilTest, AtomicFileWriterKeepsAcceptingAfterAFailureAndReportsItOnCommit) {
  const std::string dir = TempDir();
  const std::string path = JoinPath(dir, "state.pt");
  testing::FaultSysCalls full(dir, /*budget=*/100);
  spar::internal::ScopedFileSysCallsForTesting scoped(&full);
  auto file = AtomicFileWriter::Create(path);
  ASSERT_THAT(file, IsOk());
  const std::string chunk(64, 'y');
  for (int i = 0; i < 4; ++i) EXPECT_EQ((*file)->Write(chunk.data(), chunk.size()), 64u);
  EXPECT_THAT((*file)->status(), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(full.failures(), 1) << "no write is tried after the first failure";
  const absl::Status st = (*file)->Commit();
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_TRUE(absl::StrContains(st.message(), "state.pt: No space left on device")) << st;
  EXPECT_FALSE(PathExists(path));
  EXPECT_TRUE(ListDir(dir)->empty());
  // Dropped without Commit: the temporary goes too.
  full.Heal();
  auto dropped = AtomicFileWriter::Create(path);
  ASSERT_TRUE(dropped.ok());
  (*dropped)->Write(chunk.data(), chunk.size());
  EXPECT_EQ(ListDir(dir)->size(), 1u);
  dropped->reset();
  EXPECT_TRUE(ListDir(dir)->empty());
  ASSERT_TRUE(RemoveAll(dir).ok());
}

// fsync and close results count: a file whose fsync or close failed is not published.
class FailingSync final : public internal::FileSysCalls {
 public:
  explicit FailingSync(bool close) : close_(close) {}
  int Fsync(int fd) override {
    if (close_) return FileSysCalls::Fsync(fd);
    errno = EIO;
    return -1;
  }
  int Close(int fd) override {
    const int rc = FileSysCalls::Close(fd);
    if (!close_ || rc != 0) return rc;
    errno = ENOSPC;  // NFS reports a deferred write error here
    return -1;
  }

 private:
  const bool close_;
};

TEST(FileUtilTest, AtomicWriteChecksFsyncAndClose) {
  const std::string dir = TempDir();
  const std::string path = JoinPath(dir, "job.json");
  ASSERT_TRUE(WriteFileAtomic(path, "old").ok());
  for (bool close : {false, true}) {
    FailingSync failing(close);
    spar::internal::ScopedFileSysCallsForTesting scoped(&failing);
    const absl::Status st = WriteFileAtomic(path, "new");
    EXPECT_FALSE(st.ok());
    EXPECT_TRUE(absl::StrContains(st.message(), close ? "close" : "fsync")) << st;
    EXPECT_EQ(*ReadFile(path), "old");
    EXPECT_EQ(*ListDir(dir), std::vector<std::string>{"job.json"});
  }
  ASSERT_TRUE(RemoveAll(dir).ok());
}

// An append that fails midway is cut off again: the next append starts a fresh line, so the
// log stays readable (a torn line in the middle would be DataLoss for every later read).
TEST(FileUtilTest, FailedAppendLeavesNoTornLine) {
  const std::string dir = TempDir();
  const std::string path = JoinPath(dir, "events.jsonl");
  ASSERT_TRUE(AppendLine(path, R"({"a": 1})").ok());
  {
    testing::FaultSysCalls full(dir, /*budget=*/5);
    spar::internal::ScopedFileSysCallsForTesting scoped(&full);
    const absl::Status st = AppendLine(path, R"({"b": "a longer line"})");
    EXPECT_THAT(st, StatusIs(absl::StatusCode::kResourceExhausted));
  }
  ASSERT_TRUE(AppendLine(path, R"({"c": 3})").ok());
  auto rows = ReadJsonl(path);
  ASSERT_THAT(rows, IsOk());
  EXPECT_EQ(*rows, (std::vector<nlohmann::json>{{{"a", 1}}, {{"c", 3}}}));
  ASSERT_TRUE(RemoveAll(dir).ok());
}

TEST(FileUtilTest, MissingFileIsNotFound) {
  EXPECT_THAT(ReadFile("/nonexistent/spar/x"), StatusIs(absl::StatusCode::kNotFound));
}

TEST(FileUtilTest, CheckKnownKeysNamesTheField) {
  nlohmann::json j = {{"port", 1}, {"prot", 2}};
  absl::Status st = CheckKnownKeys(j, {"port"}, "config");
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(st.message(), "config: unknown field \"prot\"");
}

TEST(FileUtilTest, AbsolutePathIsAgainstTheWorkingDirectory) {
  const std::string cwd = std::filesystem::current_path().string();
  EXPECT_EQ(*AbsolutePath("/a/b"), "/a/b");
  EXPECT_EQ(*AbsolutePath("."), cwd);
  EXPECT_EQ(*AbsolutePath(""), cwd);
  EXPECT_EQ(*AbsolutePath("x/y"), cwd + "/x/y");
  EXPECT_EQ(*AbsolutePath("./x"), cwd + "/x");
}

}  // namespace
}  // namespace spar
