// TokenTable (services/common/token_table.h): holders found by their token's SHA-256 (digests
// pinned from `printf %s TOKEN | sha256sum`), the service token as holder "service" with scope
// admin, every broken entry refused naming the file, the entry and the field; RuleOf's unknown
// methods need admin; the audit log's lines hold who, what and when, never a token.
#include "services/common/token_table.h"

#include <stdlib.h>

#include <string>

#include "absl/time/time.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "services/common/audit_log.h"
#include "services/common/rpc_scopes.h"
#include "tests/testing/status_matchers.h"

namespace spar::services {
namespace {

using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;
using ::testing::HasSubstr;

// printf %s alice-token | sha256sum
constexpr char kAliceSha[] = "9c220f200955d76c0a38d308225e0ef10c5f971acaf2f8d1d8f732affa5bd1dc";

class TokenTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/spar_token_table_XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { RemoveAll(dir_).IgnoreError(); }
  std::string Write(const std::string& text) {
    const std::string path = JoinPath(dir_, "tokens.json");
    EXPECT_TRUE(WriteFileAtomic(path, text).ok());
    return path;
  }
  std::string dir_;
};

TEST_F(TokenTableTest, HoldersAreFoundByTheirTokensDigest) {
  const std::string file =
      Write(std::string(R"({"tokens":[{"name":"alice","scope":"submit","sha256":")") + kAliceSha +
            R"("}]})");
  absl::StatusOr<TokenTable> t = TokenTable::Load("svc-token", file);
  ASSERT_THAT(t, IsOk());
  EXPECT_TRUE(t->enabled());
  EXPECT_EQ(t->size(), 2u);
  std::optional<Caller> alice = t->Find("alice-token");
  ASSERT_TRUE(alice.has_value());
  EXPECT_EQ(alice->name, "alice");
  EXPECT_EQ(alice->scope, Scope::kSubmit);
  std::optional<Caller> service = t->Find("svc-token");
  ASSERT_TRUE(service.has_value());
  EXPECT_EQ(service->name, "service");
  EXPECT_EQ(service->scope, Scope::kAdmin);
  EXPECT_FALSE(t->Find("alice-token ").has_value());
  EXPECT_FALSE(t->Find(kAliceSha).has_value());  // the digest is not the token
  EXPECT_FALSE(TokenTable().enabled());
  EXPECT_FALSE(TokenTable::Load("", "")->enabled());
}

TEST_F(TokenTableTest, BrokenEntriesAreRefusedNamingTheField) {
  const std::string sha(64, 'a');
  struct Case {
    std::string json, field;
  } cases[] = {
      {"[]", "must be JSON"},
      {R"({"tokens":[{"name":"al ice","scope":"read","sha256":")" + sha + R"("}]})",
       "tokens[0].name"},
      {R"({"tokens":[{"name":"service","scope":"read","sha256":")" + sha + R"("}]})",
       "tokens[0].name"},
      {R"({"tokens":[{"name":"a","scope":"owner","sha256":")" + sha + R"("}]})", "tokens[0].scope"},
      {R"({"tokens":[{"name":"a","scope":"read","sha256":"abc"}]})", "tokens[0].sha256"},
      {R"({"tokens":[{"name":"a","scope":"read","token":"x"}]})", "tokens[0].token"},
      {R"({"tokens":[{"name":"a","scope":"read","sha256":")" + sha +
           R"("},{"name":"a","scope":"read","sha256":")" + std::string(64, 'b') + R"("}]})",
       "tokens[1].name"},
      {R"({"tokens":[{"name":"a","scope":"read","sha256":")" + sha +
           R"("},{"name":"b","scope":"read","sha256":")" + sha + R"("}]})",
       "tokens[1].sha256"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(TokenTable::Load("svc", Write(c.json)),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.field)))
        << c.json;
  }
  EXPECT_THAT(TokenTable::Load("svc", JoinPath(dir_, "absent.json")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("absent.json")));
}

TEST(RpcScopesTest, UnknownMethodsNeedAdminAndOnlyCancelAndResumeAreOwnJobOnly) {
  EXPECT_EQ(RuleOf("Shutdown").least, Scope::kAdmin);
  int own = 0;
  for (const std::string& rpc : AllRpcs()) own += RuleOf(rpc).own_job_only ? 1 : 0;
  EXPECT_EQ(own, 2);
  EXPECT_TRUE(RuleOf("CancelJob").own_job_only);
  EXPECT_TRUE(RuleOf("ResumeJob").own_job_only);
  EXPECT_EQ(AllRpcs().size(), 16u);
}

TEST_F(TokenTableTest, AuditLogLinesSayWhoWhatWhenAndHowItEnded) {
  const std::string path = JoinPath(dir_, "audit.jsonl");
  {
    absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(path);
    ASSERT_THAT(log, IsOk());
    (*log)->Record({"alice", Scope::kSubmit}, "CreateJob", "j-1", "OK",
                   absl::FromUnixMillis(1765152000123));
    (*log)->Record({"bob", Scope::kRead}, "DeleteJob", "", "PERMISSION_DENIED",
                   absl::FromUnixMillis(1765152001000));
  }
  absl::StatusOr<std::unique_ptr<AuditLog>> again = AuditLog::Open(path);  // appends
  ASSERT_THAT(again, IsOk());
  (*again)->Record({"root", Scope::kAdmin}, "DeleteJob", "j-1", "OK", absl::UnixEpoch());
  absl::StatusOr<std::string> text = ReadFile(path);
  ASSERT_THAT(text, IsOk());
  EXPECT_EQ(*text, R"({"code":"OK","job_id":"j-1","rpc":"CreateJob","scope":"submit",)"
                   R"("time":"2025-12-08T00:00:00.123Z","who":"alice"})"
                   "\n"
                   R"({"code":"PERMISSION_DENIED","rpc":"DeleteJob","scope":"read",)"
                   R"("time":"2025-12-08T00:00:01.000Z","who":"bob"})"
                   "\n"
                   R"({"code":"OK","job_id":"j-1","rpc":"DeleteJob","scope":"admin",)"
                   R"("time":"1970-01-01T00:00:00.000Z","who":"root"})"
                   "\n");
  EXPECT_THAT(AuditLog::Open(JoinPath(dir_, "no/such/dir/audit.jsonl")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("audit log")));
}

}  // namespace
}  // namespace spar::services
