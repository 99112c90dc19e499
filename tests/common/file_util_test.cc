#include "common/file_util.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>

namespace spar {
namespace {

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
  EXPECT_EQ(ReadSymlink(link).status().code(), absl::StatusCode::kNotFound);
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
  EXPECT_EQ(strict.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(std::string(strict.status().message()).find(":4:"), std::string::npos);
  EXPECT_EQ(ReadJsonl(path, /*allow_torn_tail=*/true)->size(), 3u);
  RemoveAll(dir).IgnoreError();
}

TEST(FileUtilTest, MissingFileIsNotFound) {
  EXPECT_EQ(ReadFile("/nonexistent/spar/x").status().code(), absl::StatusCode::kNotFound);
}

TEST(FileUtilTest, CheckKnownKeysNamesTheField) {
  nlohmann::json j = {{"port", 1}, {"prot", 2}};
  absl::Status st = CheckKnownKeys(j, {"port"}, "config");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "config: unknown field \"prot\"");
}

}  // namespace
}  // namespace spar
