// Hostile requests against all four services in one process over real gRPC on loopback (port 0),
// with the shared service token on (issue 12, items 1, 2, 6, 7): every RPC of every service is
// refused without the token or with a wrong one, every path a service accepts is confined to the
// data root, a foreign directory is never replaced, the server refuses to serve off loopback
// unauthenticated, and hostile job specs are refused naming the field.
#include <google/protobuf/descriptor.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "model/policy.h"
#include "services/app/app.h"
#include "services/cli/spec_file.h"
#include "services/common/server_runner.h"
#include "services/judge/judge_server.h"
#include "spar/v1/oracle.grpc.pb.h"
#include "spar/v1/orchestrator.grpc.pb.h"
#include "spar/v1/sampler.grpc.pb.h"
#include "spar/v1/trainer.grpc.pb.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/tiny_model.h"

namespace spar::services {
namespace {

using ::spar::testing::IsOk;

constexpr char kToken[] = "t0ken-for-tests";

std::string TempRoot() {
  char tmpl[] = "/tmp/spar_hostile_XXXXXX";
  char* dir = mkdtemp(tmpl);
  EXPECT_NE(dir, nullptr);
  char real[PATH_MAX];
  EXPECT_NE(::realpath(dir, real), nullptr);
  return real;
}

// One call of `method` ("/spar.v1.Sampler/Generate") with `payload` as the serialized request;
// `token` "" sends no authorization metadata. Works for unary and server-streaming methods: the
// status is what the server finished the call with.
grpc::Status CallRaw(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                     const std::string& payload, const std::string& token) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  grpc::Slice slice(payload);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  grpc::CompletionQueue cq;
  auto call = stub.PrepareUnaryCall(&ctx, method, request, &cq);
  call->StartCall();
  grpc::Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  EXPECT_TRUE(cq.Next(&tag, &ok));
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return status;
}

class HostileRequestsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new std::string(TempRoot());
    outside_ = new std::string(TempRoot());
    const model::LlamaConfig c = spar::testing::TinyLlamaConfig();
    auto policy = model::Policy::CreateRandom(c, 7);
    ASSERT_THAT(policy, IsOk());
    ASSERT_TRUE((*policy)->Save(JoinPath(*root_, "base")).ok());
    ASSERT_TRUE((*policy)->Save(JoinPath(*outside_, "model")).ok());
    auto judge = judge::JudgeServer::Start({});
    ASSERT_THAT(judge, IsOk());
    judge_ = judge->release();
    AppConfig ac;
    ac.runs_dir = JoinPath(*root_, "runs");
    ac.data_root = *root_;
    ac.api_token = kToken;
    ac.oracle.base_url = judge_->base_url();
    auto app = App::Start(ac);
    ASSERT_THAT(app, IsOk());
    app_ = app->release();
  }
  static void TearDownTestSuite() {
    delete app_;
    delete judge_;
    RemoveAll(*root_).IgnoreError();
    RemoveAll(*outside_).IgnoreError();
    delete root_;
    delete outside_;
  }

  static std::shared_ptr<grpc::Channel> Channel() { return MakeChannel(app_->address()); }

  static std::string* root_;
  static std::string* outside_;
  static judge::JudgeServer* judge_;
  static App* app_;
};

std::string* HostileRequestsTest::root_ = nullptr;
std::string* HostileRequestsTest::outside_ = nullptr;
judge::JudgeServer* HostileRequestsTest::judge_ = nullptr;
App* HostileRequestsTest::app_ = nullptr;

// Every method of every Spar service, read from the proto descriptors: a new RPC is covered
// without editing this test.
std::vector<std::string> EveryMethod() {
  std::vector<std::string> out;
  for (const char* service :
       {"spar.v1.Sampler", "spar.v1.Oracle", "spar.v1.Trainer", "spar.v1.Orchestrator"}) {
    const google::protobuf::ServiceDescriptor* d =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service);
    EXPECT_NE(d, nullptr) << service;
    if (d == nullptr) continue;
    for (int i = 0; i < d->method_count(); ++i) {
      out.push_back(absl::StrCat("/", service, "/", d->method(i)->name()));
    }
  }
  return out;
}

TEST_F(HostileRequestsTest, EveryRpcOfEveryServiceNeedsTheToken) {
  std::vector<std::string> methods = EveryMethod();
  ASSERT_GE(methods.size(), 16u);
  for (const std::string& method : methods) {
    SCOPED_TRACE(method);
    EXPECT_EQ(CallRaw(Channel(), method, "", "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(CallRaw(Channel(), method, "", "wrong").error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  // With the token the calls get past auth (whatever the empty request then earns).
  for (const std::string& method : methods) {
    SCOPED_TRACE(method);
    grpc::StatusCode code = CallRaw(Channel(), method, "", kToken).error_code();
    EXPECT_NE(code, grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_NE(code, grpc::StatusCode::PERMISSION_DENIED);
  }
}

v1::JobSpec SmallSpec() {
  v1::JobSpec s;
  s.set_name("hostile");
  s.set_base_model("base");
  s.set_rounds(1);
  s.set_prompts_per_round(4);
  s.mutable_sampling()->set_num_samples(2);
  s.mutable_sampling()->set_max_new_tokens(4);
  s.mutable_eval()->set_num_prompts(2);
  s.mutable_training()->set_batch_size(2);
  s.mutable_pairs()->set_unfinished_negative(false);
  return s;
}

// The orchestrator sends the token to the sampler, oracle and trainer: a job runs to the end.
TEST_F(HostileRequestsTest, JobSucceedsWithTheTokenOn) {
  auto stub = v1::Orchestrator::NewStub(Channel());
  v1::CreateJobRequest req;
  *req.mutable_spec() = SmallSpec();
  req.set_request_id("hostile-token-job");
  v1::Job job;
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", absl::StrCat("Bearer ", kToken));
    grpc::Status st = stub->CreateJob(&ctx, req, &job);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  grpc::ClientContext wctx;
  wctx.AddMetadata("authorization", absl::StrCat("Bearer ", kToken));
  v1::WatchJobRequest wreq;
  wreq.set_job_id(job.job_id());
  auto reader = stub->WatchJob(&wctx, wreq);
  v1::JobEvent ev;
  v1::Job final_job;
  while (reader->Read(&ev)) {
    if (ev.kind() == "job_finished") final_job = ev.job();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(final_job.state(), v1::JOB_STATE_SUCCEEDED) << final_job.error();
}

std::unique_ptr<grpc::ClientContext> Authed() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->AddMetadata("authorization", absl::StrCat("Bearer ", kToken));
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  return ctx;
}

// Items 6 and 7: every string of the spec is bounded and NUL-free; the error names the field.
TEST_F(HostileRequestsTest, HostileSpecsAreRefusedNamingTheField) {
  struct Case {
    std::string field;
    std::function<void(v1::CreateJobRequest&)> mutate;
  };
  const std::string nul("base\0/../../etc", 16);
  const std::vector<Case> cases = {
      {"name", [](auto& r) { r.mutable_spec()->set_name(std::string(1 << 20, 'n')); }},
      {"name", [](auto& r) { r.mutable_spec()->set_name(std::string(257, 'n')); }},
      {"base_model", [&](auto& r) { r.mutable_spec()->set_base_model(nul); }},
      {"base_model", [](auto& r) { r.mutable_spec()->set_base_model(std::string(5000, 'b')); }},
      {"prompts.path", [&](auto& r) { r.mutable_spec()->mutable_prompts()->set_path(nul); }},
      {"chat_template",
       [](auto& r) { r.mutable_spec()->set_chat_template(std::string(10000, 'c')); }},
      {"training.optimizer",
       [](auto& r) {
         r.mutable_spec()->mutable_training()->set_optimizer(std::string("adamw\0x", 7));
       }},
      {"round_training[0].training.lr_scheduler",
       [](auto& r) {
         auto* rt = r.mutable_spec()->add_round_training();
         rt->set_round(1);
         rt->mutable_training()->set_lr_scheduler(std::string(300, 'l'));
       }},
      {"request_id", [](auto& r) { r.set_request_id(std::string(300, 'r')); }},
      {"request_id", [](auto& r) { r.set_request_id(std::string("id\0x", 4)); }},
  };
  auto stub = v1::Orchestrator::NewStub(Channel());
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field);
    v1::CreateJobRequest req;
    *req.mutable_spec() = SmallSpec();
    c.mutate(req);
    v1::Job job;
    grpc::Status st = stub->CreateJob(Authed().get(), req, &job);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
    EXPECT_EQ(st.error_message().rfind(c.field, 0), 0u) << st.error_message();
    EXPECT_LT(st.error_message().size(), 512u) << "the message must not echo the value";
  }
}

// Item 7: a request_id names one spec; reusing it for another is a conflict, not the old job.
TEST_F(HostileRequestsTest, SameRequestIdWithADifferentSpecConflicts) {
  auto stub = v1::Orchestrator::NewStub(Channel());
  v1::CreateJobRequest req;
  *req.mutable_spec() = SmallSpec();
  req.set_request_id("conflict-1");
  v1::Job first, again, other;
  ASSERT_TRUE(stub->CreateJob(Authed().get(), req, &first).ok());
  grpc::Status st = stub->CreateJob(Authed().get(), req, &again);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(again.job_id(), first.job_id());
  EXPECT_EQ(again.request_id(), "conflict-1");
  v1::CreateJobRequest changed = req;
  changed.mutable_spec()->mutable_sampling()->set_max_new_tokens(3);
  v1::CreateJobRequest renamed = req;
  renamed.mutable_spec()->set_name("another-name");
  for (const v1::CreateJobRequest* r : {&changed, &renamed}) {
    st = stub->CreateJob(Authed().get(), *r, &other);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::ALREADY_EXISTS) << st.error_message();
    EXPECT_EQ(st.error_message().rfind("request_id", 0), 0u) << st.error_message();
  }
}

// Item 7: bytes that are not a CreateJobRequest are a bad argument, not an unknown method.
TEST_F(HostileRequestsTest, MalformedCreateJobIsInvalidArgument) {
  const std::vector<std::string> payloads = {
      std::string("\xff\xff\xff\xff", 4),      // not a tag
      std::string("\x0a\x10\x0a\x02", 4),      // truncated length-delimited field
      std::string("\x0a\x03\x0a\x01\xff", 5),  // spec.name is not UTF-8
  };
  for (const std::string& p : payloads) {
    grpc::Status st = CallRaw(Channel(), "/spar.v1.Orchestrator/CreateJob", p, kToken);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
    EXPECT_NE(st.error_message().find("CreateJobRequest"), std::string::npos);
  }
}

// Item 6: ListJobs pages (token round trip, bounds); DeleteJob refuses a running job, removes an
// ended one's run directory, and the job leaves ListJobs.
TEST_F(HostileRequestsTest, ListJobsPagesAndDeleteJobRemovesEndedJobs) {
  auto stub = v1::Orchestrator::NewStub(Channel());
  for (int i = 0; i < 3; ++i) {
    v1::CreateJobRequest req;
    *req.mutable_spec() = SmallSpec();
    req.set_request_id(absl::StrCat("page-", i));
    v1::Job job;
    ASSERT_TRUE(stub->CreateJob(Authed().get(), req, &job).ok());
  }
  v1::ListJobsRequest all_req;
  all_req.set_page_size(500);
  v1::ListJobsResponse all;
  ASSERT_TRUE(stub->ListJobs(Authed().get(), all_req, &all).ok());
  EXPECT_TRUE(all.next_page_token().empty());
  ASSERT_GE(all.jobs_size(), 3);
  std::vector<std::string> paged;
  v1::ListJobsRequest page_req;
  page_req.set_page_size(1);
  do {
    v1::ListJobsResponse page;
    ASSERT_TRUE(stub->ListJobs(Authed().get(), page_req, &page).ok());
    ASSERT_LE(page.jobs_size(), 1);
    for (const v1::Job& j : page.jobs()) paged.push_back(j.job_id());
    page_req.set_page_token(page.next_page_token());
  } while (!page_req.page_token().empty() && paged.size() < 1000);
  std::vector<std::string> expected;
  for (const v1::Job& j : all.jobs()) expected.push_back(j.job_id());
  EXPECT_EQ(paged, expected);
  for (auto bad : {std::make_pair(-1, std::string()), std::make_pair(1, std::string("garbage"))}) {
    v1::ListJobsRequest r;
    r.set_page_size(bad.first);
    r.set_page_token(bad.second);
    v1::ListJobsResponse resp;
    grpc::Status st = stub->ListJobs(Authed().get(), r, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  }

  // A long job: DeleteJob refuses it while it runs, takes it once cancelled.
  v1::CreateJobRequest long_req;
  *long_req.mutable_spec() = SmallSpec();
  long_req.mutable_spec()->set_rounds(50);
  long_req.set_request_id("delete-me");
  v1::Job job;
  ASSERT_TRUE(stub->CreateJob(Authed().get(), long_req, &job).ok());
  v1::DeleteJobRequest del;
  del.set_job_id(job.job_id());
  v1::DeleteJobResponse deleted;
  grpc::Status st = stub->DeleteJob(Authed().get(), del, &deleted);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << st.error_message();
  v1::CancelJobRequest cancel;
  cancel.set_job_id(job.job_id());
  v1::Job cancelled;
  ASSERT_TRUE(stub->CancelJob(Authed().get(), cancel, &cancelled).ok());
  v1::WatchJobRequest watch;
  watch.set_job_id(job.job_id());
  auto wctx = Authed();
  auto reader = stub->WatchJob(wctx.get(), watch);
  v1::JobEvent ev;
  while (reader->Read(&ev)) {
  }
  ASSERT_TRUE(reader->Finish().ok());
  const std::string dir = JoinPath(JoinPath(*root_, "runs"), job.job_id());
  ASSERT_TRUE(PathExists(dir));
  st = stub->DeleteJob(Authed().get(), del, &deleted);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_FALSE(PathExists(dir));
  v1::ListJobsResponse after;
  ASSERT_TRUE(stub->ListJobs(Authed().get(), all_req, &after).ok());
  for (const v1::Job& j : after.jobs()) EXPECT_NE(j.job_id(), job.job_id());
  EXPECT_EQ(stub->DeleteJob(Authed().get(), del, &deleted).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(HostileRequestsTest, HealthStaysOpen) {
  auto stub = grpc::health::v1::Health::NewStub(Channel());
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(stub->Check(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

struct PathCase {
  std::string method;
  std::string payload;
  std::string field;  // the error message must name it
};

v1::StartTrainingRequest InsideTraining(const std::string& root) {
  v1::StartTrainingRequest r;
  r.set_idempotency_key("hostile/train");
  r.set_init_checkpoint(JoinPath(root, "base"));
  r.set_pairs_path(JoinPath(root, "pairs.jsonl"));
  r.set_output_checkpoint(JoinPath(root, "runs/out"));
  return r;
}

TEST_F(HostileRequestsTest, PathsOutsideTheDataRootAreRefusedNamingTheField) {
  ASSERT_EQ(::symlink(outside_->c_str(), JoinPath(*root_, "escape").c_str()), 0);
  const std::string outside_model = JoinPath(*outside_, "model");
  std::vector<PathCase> cases;
  auto training = [&](const char* field, auto mutate) {
    v1::StartTrainingRequest r = InsideTraining(*root_);
    mutate(r);
    cases.push_back({"/spar.v1.Trainer/StartTraining", r.SerializeAsString(), field});
  };
  training("init_checkpoint", [&](auto& r) { r.set_init_checkpoint(outside_model); });
  training("init_checkpoint", [&](auto& r) { r.set_init_checkpoint("escape/model"); });
  training("pairs_path", [&](auto& r) { r.set_pairs_path("/etc/passwd"); });
  training("pairs_path", [&](auto& r) { r.set_pairs_path("../../../../etc/passwd"); });
  training("output_checkpoint",
           [&](auto& r) { r.set_output_checkpoint(JoinPath(*outside_, "x")); });
  training("output_checkpoint", [&](auto& r) { r.set_output_checkpoint("escape/new/ckpt"); });
  training("config.magnet_checkpoint",
           [&](auto& r) { r.mutable_config()->set_magnet_checkpoint(outside_model); });
  auto listwise = [](v1::StartTrainingRequest& r) {
    r.mutable_config()->set_loss("brain");
    r.clear_pairs_path();
  };
  training("groups_path", [&](auto& r) {
    listwise(r);
    r.set_groups_path("../../../../etc/passwd");
  });
  training("config.prior_checkpoint", [&](auto& r) {
    listwise(r);
    r.set_groups_path(JoinPath(*root_, "groups.jsonl"));
    r.mutable_config()->set_prior_checkpoint(outside_model);
  });
  v1::LoadPolicyRequest load;
  load.set_policy(outside_model);
  cases.push_back({"/spar.v1.Sampler/LoadPolicy", load.SerializeAsString(), "policy"});
  v1::GenerateRequest gen;
  gen.set_policy("escape/model");
  gen.add_prompts("1+1=");
  cases.push_back({"/spar.v1.Sampler/Generate", gen.SerializeAsString(), "policy"});
  for (const PathCase& c : cases) {
    SCOPED_TRACE(c.method + " " + c.field);
    grpc::Status st = CallRaw(Channel(), c.method, c.payload, kToken);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
    EXPECT_NE(st.error_message().find(c.field), std::string::npos) << st.error_message();
    EXPECT_NE(st.error_message().find("outside"), std::string::npos) << st.error_message();
  }
  EXPECT_FALSE(PathExists(JoinPath(*outside_, "x")));
  EXPECT_FALSE(PathExists(JoinPath(*outside_, "new")));
}

TEST_F(HostileRequestsTest, ForeignDirectorySurvivesStartTraining) {
  const std::string foreign = JoinPath(*root_, "precious");
  ASSERT_TRUE(MakeDirs(foreign).ok());
  ASSERT_TRUE(WriteFileAtomic(JoinPath(foreign, "keep.txt"), "mine").ok());
  ASSERT_TRUE(WriteFileAtomic(JoinPath(*root_, "pairs.jsonl"),
                              "{\"prompt\":\"1+1=\",\"chosen\":\"2\",\"rejected\":\"3\"}\n")
                  .ok());
  v1::StartTrainingRequest r = InsideTraining(*root_);
  r.set_output_checkpoint(foreign);
  grpc::Status st =
      CallRaw(Channel(), "/spar.v1.Trainer/StartTraining", r.SerializeAsString(), kToken);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << st.error_message();
  EXPECT_NE(st.error_message().find("output_checkpoint"), std::string::npos) << st.error_message();
  auto kept = ReadFile(JoinPath(foreign, "keep.txt"));
  ASSERT_THAT(kept, IsOk());
  EXPECT_EQ(*kept, "mine");
}

TEST(PolicySaveTest, NeverReplacesADirectoryItDidNotWrite) {
  const std::string root = TempRoot();
  const model::LlamaConfig c = spar::testing::TinyLlamaConfig();
  auto policy = model::Policy::CreateRandom(c, 3);
  ASSERT_THAT(policy, IsOk());
  const std::string foreign = JoinPath(root, "foreign");
  ASSERT_TRUE(MakeDirs(foreign).ok());
  ASSERT_TRUE(WriteFileAtomic(JoinPath(foreign, "keep.txt"), "mine").ok());
  absl::Status st = (*policy)->Save(foreign);
  EXPECT_TRUE(absl::IsFailedPrecondition(st)) << st;
  EXPECT_TRUE(PathExists(JoinPath(foreign, "keep.txt")));
  EXPECT_FALSE(PathExists(JoinPath(foreign, "config.json")));
  // A checkpoint Spar wrote is replaced (atomically), and no temp directory is left behind.
  const std::string ours = JoinPath(root, "ours");
  ASSERT_TRUE((*policy)->Save(ours).ok());
  EXPECT_TRUE(model::IsSparCheckpoint(ours));
  EXPECT_TRUE((*policy)->Save(ours).ok());
  auto names = ListDir(root);
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(names->size(), 2u) << "temp directories left behind";
  RemoveAll(root).IgnoreError();
}

// Item 2: an unauthenticated server is refused off loopback unless asked for by name.
TEST(AppExposureTest, RefusesNonLoopbackWithoutTokenUnlessInsecure) {
  const std::string root = TempRoot();
  AppConfig ac;
  ac.roles = {"orchestrator"};
  ac.sampler_address = ac.oracle_address = ac.trainer_address = "127.0.0.1:1";  // never called
  ac.runs_dir = JoinPath(root, "runs");
  ac.data_root = root;
  ac.host = "0.0.0.0";
  ac.metrics_port = -1;
  auto refused = App::Start(ac);
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << refused.status();
  EXPECT_NE(refused.status().message().find("--insecure"), std::string::npos);
  ac.api_token = kToken;
  {
    auto app = App::Start(ac);
    ASSERT_THAT(app, IsOk());
    EXPECT_EQ((*app)->listen_address(), absl::StrCat("0.0.0.0:", (*app)->port()));
  }
  ac.api_token.clear();
  ac.insecure = true;
  auto app = App::Start(ac);
  ASSERT_THAT(app, IsOk());
  app->reset();
  RemoveAll(root).IgnoreError();
}

// Item 2: with no data_root, paths are confined to the working directory.
TEST(AppExposureTest, DataRootDefaultsToTheWorkingDirectory) {
  const std::string root = TempRoot();
  char cwd[PATH_MAX];
  ASSERT_NE(::getcwd(cwd, sizeof(cwd)), nullptr);
  ASSERT_EQ(::chdir(root.c_str()), 0);
  AppConfig ac;
  ac.roles = {"sampler"};
  ac.metrics_port = -1;
  auto app = App::Start(ac);
  ASSERT_EQ(::chdir(cwd), 0);
  ASSERT_THAT(app, IsOk());
  v1::LoadPolicyRequest load;
  load.set_policy("/etc");
  grpc::Status st = CallRaw(MakeChannel((*app)->address()), "/spar.v1.Sampler/LoadPolicy",
                            load.SerializeAsString(), "");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  EXPECT_NE(st.error_message().find(root), std::string::npos) << st.error_message();
  app->reset();
  RemoveAll(root).IgnoreError();
}

}  // namespace
}  // namespace spar::services

namespace spar::cli {
namespace {

using ::spar::testing::IsOk;

// Item 3: `spar submit FILE` errors name the file and the position, never its contents.
TEST(SpecFileTest, ErrorsNameFileAndPositionNeverTheContents) {
  const std::string secret = "sk-live-SECRET-4242";
  struct Case {
    std::string text;
    std::string expect;  // in the message
  };
  const std::vector<Case> cases = {
      {secret + "\n{}", "line 1, column 1"},
      {"{\n  \"name\": \"ok\",\n  " + secret + "\n}", "line 3, column 3"},
      {"{\"rounds\": \"" + secret + "\"}", "field rounds"},
      {"{\"" + secret + "\": 1}", "unknown field (top level, key #1)"},
      {"{\"name\": \"a\", \"training\": {\"beta\": 1, \"" + secret + "\": 2}}",
       "unknown field (training, key #2)"},
      // Issue 24 item 11: a number beyond a double threw out_of_range and aborted `spar submit`.
      {"{\"rounds\": 1e400}", "a number is out of range"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.expect);
    absl::StatusOr<v1::JobSpec> spec = ParseJobSpecFile("/jobs/job.json", c.text);
    ASSERT_FALSE(spec.ok());
    const std::string message(spec.status().message());
    EXPECT_TRUE(absl::IsInvalidArgument(spec.status()));
    EXPECT_EQ(message.find("SECRET"), std::string::npos) << message;
    EXPECT_NE(message.find("/jobs/job.json"), std::string::npos) << message;
    EXPECT_NE(message.find(c.expect), std::string::npos) << message;
  }
  absl::StatusOr<v1::JobSpec> ok =
      ParseJobSpecFile("j.json", "{\"name\": \"fine\", \"rounds\": 2}");
  ASSERT_THAT(ok, IsOk());
  EXPECT_EQ(ok->rounds(), 2);
}

}  // namespace
}  // namespace spar::cli
