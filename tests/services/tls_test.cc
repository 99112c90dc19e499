// Native TLS on real loopback ports (issue 27 item 4): an App serving gRPC and its metrics port
// with the test CA's server certificate (tests/data/tls), then with mutual TLS. Clients that trust
// the CA get in; plaintext clients, clients without a certificate, and clients whose certificate
// another CA signed are refused; under mutual TLS a whole job runs, the orchestrator's calls to the
// sampler, oracle and trainer presenting the client certificate.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <stdlib.h>

#include <memory>
#include <string>

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
using ::spar::testing::kServiceToken;

std::string Tls(const std::string& file) {
  return JoinPath("tests/data/tls", file);  // tests run from the source directory
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/spar_tls_XXXXXX";
    root_ = mkdtemp(tmpl);
    auto judge = judge::JudgeServer::Start({});
    ASSERT_THAT(judge, IsOk());
    judge_ = *std::move(judge);
  }
  void TearDown() override {
    app_.reset();
    judge_.reset();
    RemoveAll(root_).IgnoreError();
  }

  void StartApp(bool mutual) {
    AppConfig ac;
    ac.runs_dir = JoinPath(root_, "runs");
    ac.data_root = root_;
    ac.oracle.base_url = judge_->base_url();
    ac.api_token = kServiceToken;
    ac.tls = ServerTls{Tls("server.pem"), Tls("server.key"), mutual ? Tls("ca.pem") : ""};
    // The services call each other over the same TLS (the server certificate is also a client
    // certificate: extendedKeyUsage serverAuth, clientAuth).
    ac.client_tls =
        ClientTls{Tls("ca.pem"), mutual ? Tls("server.pem") : "", mutual ? Tls("server.key") : ""};
    auto app = App::Start(ac);
    ASSERT_THAT(app, IsOk());
    app_ = *std::move(app);
  }

  grpc::Status ListJobs(const ClientTls& tls) {
    auto stub = v1::Orchestrator::NewStub(MakeChannel(app_->address(), kServiceToken, tls));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::ListJobsResponse out;
    return stub->ListJobs(&ctx, v1::ListJobsRequest(), &out);
  }

  // GET /healthz on the metrics port over https (with the client certificate when given).
  int Healthz(const std::string& cert, const std::string& key) {
    httplib::SSLClient http("127.0.0.1", app_->metrics_port(), cert, key);
    http.set_ca_cert_path(Tls("ca.pem").c_str());
    http.enable_server_certificate_verification(true);
    auto res = http.Get("/healthz");
    return res ? res->status : -1;
  }

  std::string root_;
  std::unique_ptr<judge::JudgeServer> judge_;
  std::unique_ptr<App> app_;
};

TEST_F(TlsTest, ClientsThatTrustTheCaGetInAndPlaintextDoesNot) {
  StartApp(/*mutual=*/false);
  EXPECT_TRUE(ListJobs(ClientTls{Tls("ca.pem"), "", ""}).ok());
  grpc::Status plain = ListJobs(ClientTls());
  EXPECT_EQ(plain.error_code(), grpc::StatusCode::UNAVAILABLE) << plain.error_message();
  grpc::Status wrong_ca = ListJobs(ClientTls{Tls("other_ca.pem"), "", ""});
  EXPECT_EQ(wrong_ca.error_code(), grpc::StatusCode::UNAVAILABLE) << wrong_ca.error_message();
  EXPECT_EQ(Healthz("", ""), 200);
  httplib::Client plain_http("127.0.0.1", app_->metrics_port());
  EXPECT_FALSE(plain_http.Get("/healthz"));  // no plaintext answer on the TLS port
}

TEST_F(TlsTest, MutualTlsRefusesClientsWithoutATrustedCertificateAndRunsAJob) {
  auto policy = model::Policy::CreateRandom(spar::testing::TinyLlamaConfig(), 7);
  ASSERT_THAT(policy, IsOk());
  ASSERT_TRUE((*policy)->Save(JoinPath(root_, "base")).ok());
  StartApp(/*mutual=*/true);
  const ClientTls client{Tls("ca.pem"), Tls("client.pem"), Tls("client.key")};
  EXPECT_TRUE(ListJobs(client).ok());
  grpc::Status no_cert = ListJobs(ClientTls{Tls("ca.pem"), "", ""});
  EXPECT_EQ(no_cert.error_code(), grpc::StatusCode::UNAVAILABLE) << no_cert.error_message();
  grpc::Status stranger =
      ListJobs(ClientTls{Tls("ca.pem"), Tls("stranger.pem"), Tls("stranger.key")});
  EXPECT_EQ(stranger.error_code(), grpc::StatusCode::UNAVAILABLE) << stranger.error_message();
  EXPECT_EQ(Healthz(Tls("client.pem"), Tls("client.key")), 200);
  EXPECT_EQ(Healthz("", ""), -1);  // the handshake is refused
  EXPECT_EQ(Healthz(Tls("stranger.pem"), Tls("stranger.key")), -1);

  // A whole round: the orchestrator reaches the sampler, oracle and trainer over mutual TLS.
  auto stub = v1::Orchestrator::NewStub(MakeChannel(app_->address(), kServiceToken, client));
  v1::CreateJobRequest req;
  req.mutable_spec()->set_name("tls");
  req.mutable_spec()->set_base_model("base");
  req.mutable_spec()->set_rounds(1);
  req.mutable_spec()->set_prompts_per_round(4);
  req.mutable_spec()->mutable_sampling()->set_num_samples(2);
  req.mutable_spec()->mutable_sampling()->set_max_new_tokens(4);
  req.mutable_spec()->mutable_eval()->set_num_prompts(4);
  req.mutable_spec()->mutable_pairs()->set_unfinished_negative(false);
  v1::Job job;
  {
    grpc::ClientContext ctx;
    grpc::Status st = stub->CreateJob(&ctx, req, &job);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  v1::Job done = spar::testing::WatchToEnd(*stub, job.job_id());
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
}

}  // namespace
}  // namespace spar::services
