// `spar judge` (RunJudgeCommand) against a real JudgeServer: output rows in input order, both
// input shapes, resume through the cache (a re-run makes no HTTP call), exit 1 when judgments
// fail, exit 2 naming the line and field of bad input.
#include "services/cli/judge_command.h"

#include <stdlib.h>

#include <string>
#include <vector>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "services/judge/judge_server.h"

namespace spar::cli {
namespace {

class JudgeCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/spar_judge_cmd_XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { RemoveAll(dir_).IgnoreError(); }

  void StartJudge(judge::JudgeServerOptions o = {}) {
    auto s = judge::JudgeServer::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
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
    EXPECT_TRUE(args.ok()) << args.status();
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
  ASSERT_TRUE(rows.ok()) << rows.status();
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
  ASSERT_TRUE(
      WriteFileAtomic(Path("pairs.jsonl"), "{\"prompt\":\"1+1=\",\"response_a\":\"2\",\"response_b\":\"3\"}\n")
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
  ASSERT_TRUE(WriteJsonFileAtomic(Path("bad.json"), {{"base_url", judge_->base_url()},
                                                     {"max_retrys", 1}})
                  .ok());
  EXPECT_EQ(Run({"--config", Path("bad.json"), "--in", Path("pairs.jsonl"), "--out",
                 Path("o.jsonl")}),
            2);
}

}  // namespace
}  // namespace spar::cli
