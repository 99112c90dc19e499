// ResolveJudgeApiKey (services/common/judge_api_key.h): oracle.api_key_env (which must then be
// set), else SPAR_JUDGE_API_KEY; the file named by SPAR_JUDGE_API_KEY_FILE wins; errors name the
// variable, never the key.
#include "services/common/judge_api_key.h"

#include <stdlib.h>
#include <unistd.h>

#include <string>

#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace spar::services {
namespace {

using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;
using ::testing::HasSubstr;

class JudgeApiKeyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/spar_judge_api_key_XXXXXX";
    dir_ = mkdtemp(tmpl);
    Clear();
  }
  void TearDown() override {
    Clear();
    RemoveAll(dir_).IgnoreError();
  }
  static void Clear() {
    unsetenv("SPAR_JUDGE_API_KEY");
    unsetenv("SPAR_JUDGE_API_KEY_FILE");
    unsetenv("SPAR_TEST_ORACLE_KEY");
  }
  std::string WriteKey(const std::string& text) {
    std::string path = JoinPath(dir_, "judge_api_key");
    EXPECT_TRUE(WriteFileAtomic(path, text).ok());
    return path;
  }
  std::string dir_;
};

TEST_F(JudgeApiKeyTest, NoneSetIsNoKey) {
  absl::StatusOr<std::string> key = ResolveJudgeApiKey(oracle::OracleConfig());
  ASSERT_THAT(key, IsOk());
  EXPECT_EQ(*key, "");
}

TEST_F(JudgeApiKeyTest, ReadsSparJudgeApiKeyByDefault) {
  setenv("SPAR_JUDGE_API_KEY", "sk-default", 1);
  EXPECT_EQ(*ResolveJudgeApiKey(oracle::OracleConfig()), "sk-default");
}

TEST_F(JudgeApiKeyTest, ReadsApiKeyFromNamedEnvironmentVariable) {
  oracle::OracleConfig config;
  config.api_key_env = "SPAR_TEST_ORACLE_KEY";
  setenv("SPAR_TEST_ORACLE_KEY", "sk-test", 1);
  setenv("SPAR_JUDGE_API_KEY", "sk-default", 1);  // the named variable wins
  absl::StatusOr<std::string> key = ResolveJudgeApiKey(config);
  ASSERT_THAT(key, IsOk());
  EXPECT_EQ(*key, "sk-test");
  unsetenv("SPAR_TEST_ORACLE_KEY");
  key = ResolveJudgeApiKey(config);
  ASSERT_FALSE(key.ok());
  EXPECT_THAT(key, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("SPAR_TEST_ORACLE_KEY")));
}

TEST_F(JudgeApiKeyTest, KeyFileWinsWithoutTrailingNewline) {
  setenv("SPAR_JUDGE_API_KEY", "sk-default", 1);
  setenv("SPAR_JUDGE_API_KEY_FILE", WriteKey("sk-from-file \r\n").c_str(), 1);
  EXPECT_EQ(*ResolveJudgeApiKey(oracle::OracleConfig()), "sk-from-file");
}

TEST_F(JudgeApiKeyTest, UnreadableKeyFileIsAnError) {
  const std::string missing = JoinPath(dir_, "missing");
  setenv("SPAR_JUDGE_API_KEY_FILE", missing.c_str(), 1);
  absl::StatusOr<std::string> key = ResolveJudgeApiKey(oracle::OracleConfig());
  ASSERT_FALSE(key.ok());
  EXPECT_THAT(std::string(key.status().message()), HasSubstr(missing));
}

}  // namespace
}  // namespace spar::services
