// ApiTokenFromEnv (services/common/api_token.h): SPAR_API_TOKEN, else the file named by
// SPAR_API_TOKEN_FILE (the Compose secret), else auth off; errors name the variable, never the
// token.
#include "services/common/api_token.h"

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
using ::testing::Not;

class ApiTokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/spar_api_token_XXXXXX";
    dir_ = mkdtemp(tmpl);
    unsetenv("SPAR_API_TOKEN");
    unsetenv("SPAR_API_TOKEN_FILE");
  }
  void TearDown() override {
    unsetenv("SPAR_API_TOKEN");
    unsetenv("SPAR_API_TOKEN_FILE");
    RemoveAll(dir_).IgnoreError();
  }
  std::string WriteToken(const std::string& text) {
    std::string path = JoinPath(dir_, "api_token");
    EXPECT_TRUE(WriteFileAtomic(path, text).ok());
    return path;
  }
  std::string dir_;
};

TEST_F(ApiTokenTest, NothingSetMeansAuthOff) {
  absl::StatusOr<std::string> t = ApiTokenFromEnv();
  ASSERT_THAT(t, IsOk());
  EXPECT_EQ(*t, "");
}

TEST_F(ApiTokenTest, ReadsTheSecretFileWithoutTrailingWhitespace) {
  setenv("SPAR_API_TOKEN_FILE", WriteToken("s3cret-token\r\n").c_str(), 1);
  absl::StatusOr<std::string> t = ApiTokenFromEnv();
  ASSERT_THAT(t, IsOk());
  EXPECT_EQ(*t, "s3cret-token");
  // An empty SPAR_API_TOKEN (as `SPAR_API_TOKEN=` in an env file) does not hide the file.
  setenv("SPAR_API_TOKEN", "", 1);
  t = ApiTokenFromEnv();
  ASSERT_THAT(t, IsOk());
  EXPECT_EQ(*t, "s3cret-token");
}

TEST_F(ApiTokenTest, TheVariableWinsOverTheFile) {
  setenv("SPAR_API_TOKEN_FILE", WriteToken("from-file").c_str(), 1);
  setenv("SPAR_API_TOKEN", "from-env", 1);
  absl::StatusOr<std::string> t = ApiTokenFromEnv();
  ASSERT_THAT(t, IsOk());
  EXPECT_EQ(*t, "from-env");
}

TEST_F(ApiTokenTest, AnUnreadableOrEmptyFileIsAnErrorNamingTheVariable) {
  setenv("SPAR_API_TOKEN_FILE", JoinPath(dir_, "missing").c_str(), 1);
  absl::StatusOr<std::string> t = ApiTokenFromEnv();
  EXPECT_THAT(t, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("SPAR_API_TOKEN_FILE")));

  setenv("SPAR_API_TOKEN_FILE", WriteToken(" \n").c_str(), 1);
  t = ApiTokenFromEnv();
  EXPECT_THAT(t, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("holds no token")));
}

}  // namespace
}  // namespace spar::services
