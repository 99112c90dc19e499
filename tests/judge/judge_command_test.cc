// `spar judge` (RunJudgeCommand) against a real JudgeServer: output rows in input order, both
// input shapes, resume through the cache (a re-run makes no HTTP call), exit 1 when judgments
// fail, exit 2 naming the line and field of bad input.
#include "services/cli/judge_command.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/utf8.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/judge/judge_server.h"
#include "tests/judge/hostile_judge.h"
#include "tests/testing/status_matchers.h"

namespace spar::cli {
namespace {

using ::spar::testing::IsOk;

class JudgeCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/spar_judge_cmd_XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { RemoveAll(dir_).IgnoreError(); }

  void StartJudge(judge::JudgeServerOptions o = {}) {
    auto s = judge::JudgeServer::Start(o);
    ASSERT_THAT(s, IsOk());
    judge_ = *std::move(s);
    ASSERT_TRUE(WriteJsonFileAtomic(Path("oracle.json"),
                                    {{"base_url", judge_->base_url()}, {"max_retries", 0}})
                    .ok());
  }

  std::string Path(const std::string& name) const { return JoinPath(dir_, name); }

  int Run(std::vector<std::string> argv) {
    argv.insert(argv.begin(), {"spar", "judge"});
    std::vector<char*> ptrs;
    for (std::string& a : argv) ptrs.push_back(a.data());
    absl::StatusOr<Args> args = Args::Parse(static_cast<int>(ptrs.size()), ptrs.data(), {});
    EXPECT_THAT(args, IsOk());
    return RunJudgeCommand(*args);
  }

  int RunDefault() {
    return Run({"--config", Path("oracle.json"), "--in", Path("pairs.jsonl"), "--out",
                Path("judgments.jsonl")});
  }

  std::string dir_;
  std::unique_ptr<judge::JudgeServer> judge_;
};

TEST_F(JudgeCommandTest, JudgesBothShapesInOrderAndResumesFromTheCache) {
  StartJudge();
  ASSERT_TRUE(WriteFileAtomic(Path("pairs.jsonl"),
                              "{\"prompt\":\"2+2=\",\"response_a\":\"4\",\"response_b\":\"5\","
                              "\"id\":\"p1\"}\n\n"
                              "{\"prompt\":\"3+3=\",\"chosen\":\"7\",\"rejected\":\"6\"}\n")
                  .ok());
  EXPECT_EQ(RunDefault(), 0);
  absl::StatusOr<std::vector<nlohmann::json>> rows = ReadJsonl(Path("judgments.jsonl"));
  ASSERT_THAT(rows, IsOk());
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0]["line"], 1);
  EXPECT_EQ((*rows)[0]["id"], "p1");
  EXPECT_EQ((*rows)[0]["ok"], true);
  EXPECT_NEAR((*rows)[0]["p_a_wins"].get<double>(), 0.99, 1e-9);
  EXPECT_EQ((*rows)[1]["line"], 3);
  EXPECT_NEAR((*rows)[1]["p_a_wins"].get<double>(), 0.01, 1e-9);  // "chosen" was wrong
  EXPECT_EQ(judge_->requests_served(), 4);
  EXPECT_TRUE(PathExists(Path("judgments.jsonl.cache.sqlite")));
  // Re-run: everything from the cache.
  EXPECT_EQ(RunDefault(), 0);
  EXPECT_EQ(judge_->requests_served(), 4);
  rows = ReadJsonl(Path("judgments.jsonl"));
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ((*rows)[1]["cached_orders"], 2);
}

TEST_F(JudgeCommandTest, FailedJudgmentsExitOneAndAreRecorded) {
  judge::JudgeServerOptions o;
  o.fault = "500";
  StartJudge(o);
  ASSERT_TRUE(WriteFileAtomic(Path("pairs.jsonl"),
                              "{\"prompt\":\"1+1=\",\"response_a\":\"2\",\"response_b\":\"3\"}\n")
                  .ok());
  EXPECT_EQ(RunDefault(), 1);
  absl::StatusOr<std::vector<nlohmann::json>> rows = ReadJsonl(Path("judgments.jsonl"));
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0]["ok"], false);
  EXPECT_NE((*rows)[0]["error"].get<std::string>().find("HTTP 500"), std::string::npos);
}

TEST_F(JudgeCommandTest, BadInputExitsTwo) {
  StartJudge();
  ASSERT_TRUE(WriteFileAtomic(Path("pairs.jsonl"),
                              "{\"prompt\":\"1+1=\",\"response_a\":\"2\",\"response_b\":\"3\"}\n"
                              "{\"prompt\":\"1+2=\",\"response_a\":\"3\"}\n")
                  .ok());
  EXPECT_EQ(RunDefault(), 2);
  EXPECT_FALSE(PathExists(Path("judgments.jsonl")));
  EXPECT_EQ(judge_->requests_served(), 0);  // nothing judged before the input is valid
  ASSERT_TRUE(WriteFileAtomic(Path("pairs.jsonl"), "not json\n").ok());
  EXPECT_EQ(RunDefault(), 2);
  ASSERT_TRUE(WriteFileAtomic(Path("pairs.jsonl"), "{\"prompt\":1}\n").ok());
  EXPECT_EQ(RunDefault(), 2);
  EXPECT_EQ(Run({"--config", Path("oracle.json"), "--in", Path("pairs.jsonl")}), 2);  // no --out
  EXPECT_EQ(Run({"--config", Path("missing.json"), "--in", Path("pairs.jsonl"), "--out",
                 Path("o.jsonl")}),
            2);
  EXPECT_EQ(Run({"--config", Path("oracle.json"), "--in", Path("pairs.jsonl"), "--out",
                 Path("o.jsonl"), "--bogus", "1"}),
            2);
  ASSERT_TRUE(
      WriteJsonFileAtomic(Path("bad.json"), {{"base_url", judge_->base_url()}, {"max_retrys", 1}})
          .ok());
  EXPECT_EQ(
      Run({"--config", Path("bad.json"), "--in", Path("pairs.jsonl"), "--out", Path("o.jsonl")}),
      2);
}

// Issue #12 item 13: plain http to a non-loopback judge host is refused (exit 2, nothing judged)
// unless that host is named with --judge_allow_http_host. 0.0.0.0 is not a loopback name to
// ParseBaseUrl, yet on Linux a connection to it reaches the judge listening on 127.0.0.1.
TEST_F(JudgeCommandTest, PlainHttpToANamedHostNeedsTheOptIn) {
  StartJudge();
  std::string url = judge_->base_url();
  ASSERT_EQ(url.rfind("http://127.0.0.1:", 0), 0u) << url;
  url.replace(7, 9, "0.0.0.0");
  ASSERT_TRUE(WriteFileAtomic(Path("pairs.jsonl"),
                              "{\"prompt\":\"2+2=\",\"response_a\":\"4\",\"response_b\":\"5\"}\n")
                  .ok());
  EXPECT_EQ(Run({"--config", Path("oracle.json"), "--in", Path("pairs.jsonl"), "--out",
                 Path("judgments.jsonl"), "--judge_url", url}),
            2);
  EXPECT_FALSE(PathExists(Path("judgments.jsonl")));
  EXPECT_EQ(judge_->requests_served(), 0);
  // Naming another host does not help; naming this one does.
  EXPECT_EQ(Run({"--config", Path("oracle.json"), "--in", Path("pairs.jsonl"), "--out",
                 Path("judgments.jsonl"), "--judge_url", url, "--judge_allow_http_host=judge"}),
            2);
  EXPECT_EQ(Run({"--config", Path("oracle.json"), "--in", Path("pairs.jsonl"), "--out",
                 Path("judgments.jsonl"), "--judge_url", url,
                 "--judge_allow_http_host=spar-judge,0.0.0.0"}),
            0);
  EXPECT_EQ(judge_->requests_served(), 2);
  // A malformed name is a usage error.
  EXPECT_EQ(Run({"--config", Path("oracle.json"), "--in", Path("pairs.jsonl"), "--out",
                 Path("judgments.jsonl"), "--judge_url", url, "--judge_allow_http_host=0.0.0.0:1"}),
            2);
}

// Issue #12 items 3 and 9: a judge whose error bodies echo the Authorization header and are
// long non-ASCII text. `spar judge` used to write the key into judgments.jsonl, and cut the text
// mid-character so that WriteJsonlAtomic aborted the process after every judgment was paid for.
TEST_F(JudgeCommandTest, HostileErrorBodiesAreWrittenRedactedAndValidUtf8) {
  std::string euros;
  for (int i = 0; i < 150; ++i) euros += "\xE2\x82\xAC";
  judge::HostileJudge hostile(
      [&euros](int64_t n, const std::string& headers) {
        judge::HostileJudge::Reply r;
        r.fault = judge::HostileJudge::Fault::kStatus;
        r.status = 400;
        size_t at = headers.find("Authorization: ");
        std::string echo = headers.substr(at, headers.find("\r\n", at) - at);
        // 0, 1 or 2 more ASCII bytes: one of three requests is cut inside a character.
        const std::string pad(static_cast<size_t>(n % 3), '!');
        r.body =
            nlohmann::json{
                {"error",
                 {{"message", absl::StrCat("bad request", pad, "; you sent ", echo, " ", euros)}}}}
                .dump();
        return r;
      },
      "");
  ASSERT_TRUE(hostile.ok());
  ASSERT_TRUE(WriteJsonFileAtomic(Path("oracle.json"), {{"base_url", hostile.base_url()}}).ok());
  std::string pairs;
  for (int i = 1; i <= 3; ++i) {
    absl::StrAppend(&pairs, "{\"prompt\":\"", i, "+1=\",\"response_a\":\"", i + 1,
                    "\",\"response_b\":\"", i + 2, "\"}\n");
  }
  ASSERT_TRUE(WriteFileAtomic(Path("pairs.jsonl"), pairs).ok());
  setenv("SPAR_JUDGE_API_KEY", "sk-live-CMDKEY-42", 1);
  const int rc = RunDefault();
  unsetenv("SPAR_JUDGE_API_KEY");
  EXPECT_EQ(rc, 1);
  absl::StatusOr<std::string> text = ReadFile(Path("judgments.jsonl"));
  ASSERT_THAT(text, IsOk());
  EXPECT_EQ(SanitizeUtf8(*text), *text);
  EXPECT_THAT(*text, ::testing::Not(::testing::HasSubstr("CMDKEY")));
  absl::StatusOr<std::vector<nlohmann::json>> rows = ReadJsonl(Path("judgments.jsonl"));
  ASSERT_THAT(rows, IsOk());
  ASSERT_EQ(rows->size(), 3u);
  for (const nlohmann::json& r : *rows) {
    EXPECT_EQ(r["ok"], false);
    EXPECT_THAT(r["error"].get<std::string>(), ::testing::HasSubstr("Bearer <redacted>"));
  }
  EXPECT_EQ(hostile.requests(), 3);  // 400 is not retried
}

// Issue #12 item 11: two `spar judge` runs at once over the same pairs, sharing one --cache file:
// every distinct question reaches the (counting) judge once; both outputs are complete.
TEST_F(JudgeCommandTest, TwoRunsSharingOneCachePayEachQuestionOnce) {
  judge::JudgeServerOptions o;
  o.latency = absl::Milliseconds(20);
  StartJudge(o);
  std::string pairs;
  for (int i = 0; i < 30; ++i) {
    absl::StrAppend(&pairs, "{\"prompt\":\"", i, "+1=\",\"response_a\":\"", i + 1,
                    "\",\"response_b\":\"", i + 2, "\"}\n");
  }
  ASSERT_TRUE(WriteFileAtomic(Path("pairs.jsonl"), pairs).ok());
  auto run = [&](const std::string& out) {
    return Run({"--config", Path("oracle.json"), "--in", Path("pairs.jsonl"), "--out", Path(out),
                "--cache", Path("shared.sqlite")});
  };
  int rc1 = -1;
  std::thread other([&] { rc1 = run("one.jsonl"); });
  const int rc2 = run("two.jsonl");
  other.join();
  EXPECT_EQ(rc1, 0);
  EXPECT_EQ(rc2, 0);
  EXPECT_EQ(judge_->requests_served(), 60);  // 30 pairs x 2 orders
  std::set<std::string> seen;
  for (const nlohmann::json& r : judge_->seen_requests()) {
    EXPECT_TRUE(seen.insert(r.dump()).second) << "paid twice: " << r.dump();
  }
  for (const char* out : {"one.jsonl", "two.jsonl"}) {
    absl::StatusOr<std::vector<nlohmann::json>> rows = ReadJsonl(Path(out));
    ASSERT_THAT(rows, IsOk());
    ASSERT_EQ(rows->size(), 30u);
    for (const nlohmann::json& r : *rows) EXPECT_EQ(r["ok"], true) << r.dump();
  }
}

// The same with two real processes (fork before any thread exists, so each child is a plain
// single-threaded `spar judge`): each distinct question is paid once across processes.
TEST_F(JudgeCommandTest, TwoProcessesSharingOneCachePayEachQuestionOnce) {
  std::string pairs;
  for (int i = 0; i < 30; ++i) {
    absl::StrAppend(&pairs, "{\"prompt\":\"", i, "+2=\",\"response_a\":\"", i + 2,
                    "\",\"response_b\":\"", i + 3, "\"}\n");
  }
  ASSERT_TRUE(WriteFileAtomic(Path("pairs.jsonl"), pairs).ok());
  pid_t children[2];
  int go[2][2];
  for (int c = 0; c < 2; ++c) {
    ASSERT_EQ(pipe(go[c]), 0);
    children[c] = fork();
    ASSERT_GE(children[c], 0);
    if (children[c] == 0) {  // child: wait until the judge and its config exist, then judge
      char byte = 0;
      if (read(go[c][0], &byte, 1) != 1) _exit(100);
      _exit(Run({"--config", Path("oracle.json"), "--in", Path("pairs.jsonl"), "--out",
                 Path(absl::StrCat("out", c, ".jsonl")), "--cache", Path("shared.sqlite")}));
    }
    close(go[c][0]);
  }
  judge::JudgeServerOptions o;
  o.latency = absl::Milliseconds(20);
  StartJudge(o);
  for (int c = 0; c < 2; ++c) {
    ASSERT_EQ(write(go[c][1], "x", 1), 1);
    close(go[c][1]);
  }
  for (int c = 0; c < 2; ++c) {
    int status = 0;
    ASSERT_EQ(waitpid(children[c], &status, 0), children[c]);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "child " << c;
  }
  EXPECT_EQ(judge_->requests_served(), 60);  // 30 pairs x 2 orders, across both processes
  for (int c = 0; c < 2; ++c) {
    absl::StatusOr<std::vector<nlohmann::json>> rows =
        ReadJsonl(Path(absl::StrCat("out", c, ".jsonl")));
    ASSERT_THAT(rows, IsOk());
    ASSERT_EQ(rows->size(), 30u);
    for (const nlohmann::json& r : *rows) EXPECT_EQ(r["ok"], true) << r.dump();
  }
}

}  // namespace
}  // namespace spar::cli
