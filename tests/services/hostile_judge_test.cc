// A broken judge never looks like success (#12 item 8): with a judge that answers 401 to
// everything, hangs, is unreachable, or fails most requests, the job ends FAILED with the reason
// (not SUCCEEDED on "no pairs"); once the judge is fixed, ResumeJob finishes the round without
// asking again for any judgment already answered. All four services in one process (App), a real
// HTTP judge behind a small hostile HTTP front that the test switches.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "model/policy.h"
#include "services/app/app.h"
#include "services/common/server_runner.h"
#include "services/judge/judge_server.h"
#include "spar/v1/orchestrator.grpc.pb.h"
#include "tests/testing/job_watch.h"
#include "tests/testing/service_token.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/tiny_model.h"

namespace spar::services {
namespace {

using ::spar::testing::IsOk;

// An OpenAI-compatible endpoint in front of the reference judge that forwards, answers 401 to
// everything, fails every third request with 500, or holds every request until destroyed.
class HostileJudge {
 public:
  enum class Mode { kForward, kRefuse, kFailEveryThird, kHang };

  HostileJudge(int upstream_port, Mode mode) : upstream_port_(upstream_port), mode_(mode) {
    server_.Post("/v1/chat/completions",
                 [this](const httplib::Request& req, httplib::Response& res) { Handle(req, res); });
    // Bound and listening from here on: connections wait in the backlog until the loop accepts.
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~HostileJudge() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      released_ = true;
    }
    cv_.notify_all();
    server_.stop();
    thread_.join();
  }
  std::string base_url() const { return absl::StrCat("http://127.0.0.1:", port_, "/v1"); }
  void set_mode(Mode mode) { mode_.store(mode); }
  // Blocks until a request is being held (kHang).
  void WaitHeld() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return held_ > 0; });
  }

 private:
  void Handle(const httplib::Request& req, httplib::Response& res) {
    const Mode mode = mode_.load();
    if (mode == Mode::kRefuse) {
      res.status = 401;
      res.set_content(R"({"error":{"message":"Incorrect API key provided"}})", "application/json");
      return;
    }
    if (mode == Mode::kHang) {
      std::unique_lock<std::mutex> lock(mu_);
      ++held_;
      cv_.notify_all();
      cv_.wait(lock, [this] { return released_; });
      res.status = 503;
      return;
    }
    if (mode == Mode::kFailEveryThird && ++count_ % 3 == 0) {
      res.status = 500;
      res.set_content(R"({"error":{"message":"internal error"}})", "application/json");
      return;
    }
    httplib::Client up("127.0.0.1", upstream_port_);
    auto r = up.Post(req.path.c_str(), req.body, "application/json");
    if (!r) {
      res.status = 502;
      return;
    }
    res.status = r->status;
    res.set_content(r->body, "application/json");
  }

  const int upstream_port_;
  std::atomic<Mode> mode_;
  std::atomic<int64_t> count_{0};
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;
  int held_ = 0;
};

class HostileJudgeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/spar_hostile_judge_XXXXXX";
    root_ = new std::string(mkdtemp(tmpl));
    const model::LlamaConfig c = spar::testing::TinyLlamaConfig();
    auto policy = model::Policy::CreateRandom(c, 7);
    ASSERT_THAT(policy, IsOk());
    ASSERT_TRUE((*policy)->Save(JoinPath(*root_, "base")).ok());
  }
  static void TearDownTestSuite() {
    RemoveAll(*root_).IgnoreError();
    delete root_;
  }

  // All four services judging through `judge_url`: no judgment cache (nothing could be answered
  // from it instead of asking), no retries, a short timeout.
  static std::unique_ptr<App> StartApp(const std::string& name, const std::string& judge_url,
                                       const std::function<void(AppConfig&)>& adjust = nullptr) {
    AppConfig ac;
    ac.runs_dir = JoinPath(*root_, "runs-" + name);
    ac.data_root = *root_;
    ac.oracle.base_url = judge_url;
    ac.oracle.max_retries = 0;
    ac.oracle.timeout = absl::Milliseconds(300);
    ac.api_token = ::spar::testing::kServiceToken;  // auth on, as deployed
    if (adjust) adjust(ac);
    auto app = App::Start(ac);
    EXPECT_THAT(app, IsOk());
    return app.ok() ? *std::move(app) : nullptr;
  }

  static v1::JobSpec SmallSpec(const std::string& name) {
    v1::JobSpec s;
    s.set_name(name);
    s.set_base_model("base");
    s.set_rounds(1);
    s.set_prompts_per_round(6);
    s.mutable_sampling()->set_num_samples(3);
    s.mutable_sampling()->set_max_new_tokens(4);
    s.mutable_eval()->set_num_prompts(5);
    s.mutable_training()->set_batch_size(4);
    s.mutable_pairs()->set_unfinished_negative(false);  // tiny random policies rarely stop
    return s;
  }

  static std::string* root_;
};

std::string* HostileJudgeTest::root_ = nullptr;

using ::spar::testing::WatchToEnd;

// Creates a job and follows it until it ends (job_finished); the last job snapshot.
v1::Job RunToEnd(v1::Orchestrator::Stub& stub, const v1::JobSpec& spec, std::string* job_id) {
  v1::CreateJobRequest req;
  *req.mutable_spec() = spec;
  v1::Job job;
  {
    grpc::ClientContext ctx;
    grpc::Status st = stub.CreateJob(&ctx, req, &job);
    EXPECT_TRUE(st.ok()) << st.error_message();
    if (!st.ok()) return job;
  }
  *job_id = job.job_id();
  return WatchToEnd(stub, job.job_id());
}

// A loopback port nothing listens on (connections are refused): bound without listening, then
// closed.
int ClosedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ::close(fd);
  return ntohs(addr.sin_port);
}

struct BrokenJudge {
  const char* name;
  std::optional<HostileJudge::Mode> mode;  // nullopt: unreachable
  const char* reason;                      // in Job.error
};

TEST_F(HostileJudgeTest, BrokenJudgeFailsTheJobWithTheReason) {
  auto judge = judge::JudgeServer::Start({});
  ASSERT_THAT(judge, IsOk());
  const BrokenJudge cases[] = {
      {"refuses", HostileJudge::Mode::kRefuse, "refused the API key"},
      {"hangs", HostileJudge::Mode::kHang, "above judge.max_failure_rate"},
      {"unreachable", std::nullopt, "above judge.max_failure_rate"},
  };
  for (const BrokenJudge& c : cases) {
    SCOPED_TRACE(c.name);
    std::unique_ptr<HostileJudge> front;
    std::string url = absl::StrCat("http://127.0.0.1:", ClosedPort(), "/v1");
    if (c.mode.has_value()) {
      front = std::make_unique<HostileJudge>((*judge)->port(), *c.mode);
      url = front->base_url();
    }
    std::unique_ptr<App> app = StartApp(c.name, url);
    ASSERT_NE(app, nullptr);
    auto stub = v1::Orchestrator::NewStub(::spar::testing::TokenChannel(app->address()));
    std::string job_id;
    v1::Job job = RunToEnd(*stub, SmallSpec(c.name), &job_id);
    EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED)
        << v1::JobState_Name(job.state()) << " " << job.error();
    EXPECT_TRUE(absl::StrContains(job.error(), c.reason)) << job.error();
    EXPECT_TRUE(absl::StrContains(job.error(), "round 1 stage judge")) << job.error();
    // The round is not done: sampled, not judged, no pairs file, nothing trained.
    ASSERT_EQ(job.rounds_size(), 1);
    EXPECT_EQ(job.rounds(0).stage(), "sample");
    const std::string round_dir =
        JoinPath(JoinPath(JoinPath(*root_, absl::StrCat("runs-", c.name)), job_id), "iter_001");
    EXPECT_FALSE(PathExists(JoinPath(round_dir, "pairs.jsonl")));
    EXPECT_FALSE(PathExists(JoinPath(round_dir, "checkpoint")));
    app->Shutdown();
  }
  EXPECT_EQ((*judge)->requests_served(), 0);
}

// Canonical (prompt, lower, higher) of a judged pair, whichever order it was shown in.
using PairKey = std::tuple<std::string, std::string, std::string>;
PairKey KeyOf(const std::string& prompt, const std::string& a, const std::string& b) {
  return a <= b ? PairKey{prompt, a, b} : PairKey{prompt, b, a};
}

TEST_F(HostileJudgeTest, FailureRateAboveTheLimitFailsAndResumeAsksOnlyTheFailedJudgments) {
  auto judge = judge::JudgeServer::Start({});
  ASSERT_THAT(judge, IsOk());
  HostileJudge front((*judge)->port(), HostileJudge::Mode::kFailEveryThird);
  // Nothing here hangs: a timeout a loaded machine cannot hit, so only the 500s fail.
  std::unique_ptr<App> app = StartApp("rate", front.base_url(),
                                      [](AppConfig& ac) { ac.oracle.timeout = absl::Seconds(60); });
  ASSERT_NE(app, nullptr);
  auto stub = v1::Orchestrator::NewStub(::spar::testing::TokenChannel(app->address()));
  std::string job_id;
  v1::Job failed = RunToEnd(*stub, SmallSpec("rate"), &job_id);
  ASSERT_EQ(failed.state(), v1::JOB_STATE_FAILED) << failed.error();
  EXPECT_TRUE(absl::StrContains(failed.error(), "above judge.max_failure_rate 20.0%"))
      << failed.error();
  EXPECT_TRUE(absl::StrContains(failed.error(), "first error: ")) << failed.error();
  EXPECT_TRUE(absl::StrContains(failed.error(), "500")) << failed.error();
  const std::string round_dir =
      JoinPath(JoinPath(JoinPath(*root_, "runs-rate"), job_id), "iter_001");
  auto answered = ReadJsonl(JoinPath(round_dir, "judgments.partial.jsonl"));
  ASSERT_THAT(answered, IsOk());
  ASSERT_FALSE(answered->empty());  // some judgments had both orders answered

  front.set_mode(HostileJudge::Mode::kForward);  // the judge is fixed
  {
    v1::ResumeJobRequest req;
    req.set_job_id(job_id);
    v1::Job out;
    grpc::ClientContext ctx;
    grpc::Status st = stub->ResumeJob(&ctx, req, &out);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  v1::Job done = WatchToEnd(*stub, job_id);
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  EXPECT_FALSE(PathExists(JoinPath(round_dir, "judgments.partial.jsonl")));
  // A judgment answered before the failure was asked once per order, never again.
  std::map<PairKey, int> asked;
  for (const nlohmann::json& r : (*judge)->seen_requests()) {
    if (!r.contains("output_a")) continue;
    ++asked[KeyOf(r["instruction"], r["output_a"], r["output_b"])];
  }
  for (const nlohmann::json& a : *answered) {
    const PairKey key = KeyOf(a["prompt"], a["response_a"], a["response_b"]);
    EXPECT_EQ(asked[key], 2) << a.dump();
  }
  auto judgments = ReadJsonl(JoinPath(round_dir, "judgments.jsonl"));
  ASSERT_TRUE(judgments.ok());
  for (const nlohmann::json& j : *judgments) EXPECT_TRUE(j["ok"].get<bool>()) << j.dump();
  app->Shutdown();
}

// Item 9: SIGTERM (App::Shutdown) while the judge holds a request for its whole 10-minute
// deadline: the job's cancel ends the orchestrator's Compare stream and the oracle's HTTP
// request, the server stops at once, and the job, left RUNNING, resumes on the next start and
// succeeds once the judge answers. (Before: Shutdown waited for the judge.)
TEST_F(HostileJudgeTest, ShutdownWhileTheJudgeHoldsARequestStopsAndTheJobResumes) {
  auto judge = judge::JudgeServer::Start({});
  ASSERT_THAT(judge, IsOk());
  HostileJudge front((*judge)->port(), HostileJudge::Mode::kHang);
  auto patient = [](AppConfig& ac) {
    ac.oracle.timeout = absl::Minutes(10);
    ac.oracle.max_concurrency = 1;  // one held request: the judge's other threads stay free
  };
  std::unique_ptr<App> app = StartApp("sigterm", front.base_url(), patient);
  ASSERT_NE(app, nullptr);
  std::string job_id;
  {
    auto stub = v1::Orchestrator::NewStub(::spar::testing::TokenChannel(app->address()));
    v1::CreateJobRequest req;
    *req.mutable_spec() = SmallSpec("sigterm");
    v1::Job job;
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub->CreateJob(&ctx, req, &job).ok());
    job_id = job.job_id();
  }
  front.WaitHeld();
  app->Shutdown();  // hangs here (ctest's timeout) when a stream or request ignores the cancel
  app.reset();

  front.set_mode(HostileJudge::Mode::kForward);
  app = StartApp("sigterm", front.base_url(), patient);  // resumes the RUNNING job
  ASSERT_NE(app, nullptr);
  auto stub = v1::Orchestrator::NewStub(::spar::testing::TokenChannel(app->address()));
  v1::Job done = WatchToEnd(*stub, job_id);
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  app->Shutdown();
}

}  // namespace
}  // namespace spar::services
