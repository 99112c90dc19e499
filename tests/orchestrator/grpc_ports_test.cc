// The orchestrator's gRPC ports against a real loopback Oracle whose Compare stream goes quiet
// (#12 item 9): the job's cancel (a user's, or the server's shutdown) ends the blocked stream,
// and so does stream_idle_timeout, each with its own status; a stream that keeps sending is left
// alone.
#include "orchestrator/grpc_ports.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "orchestrator/internal/stream_watch.h"
#include "spar/v1/oracle.grpc.pb.h"
#include "tests/testing/status_matchers.h"

namespace spar::orchestrator {
namespace {

using ::spar::testing::StatusIs;

// Sends `answers` judgments, then holds the stream open until the client goes away.
class QuietOracle final : public v1::Oracle::Service {
 public:
  explicit QuietOracle(int answers) : answers_(answers) {}

  grpc::Status Compare(grpc::ServerContext* ctx, const v1::CompareRequest* /*req*/,
                       grpc::ServerWriter<v1::Judgment>* writer) override {
    for (int i = 0; i < answers_; ++i) {
      v1::Judgment j;
      j.set_index(i);
      writer->Write(j);
    }
    std::unique_lock<std::mutex> lock(mu_);
    quiet_ = true;
    cv_.notify_all();
    while (!ctx->IsCancelled()) cv_.wait_for(lock, std::chrono::milliseconds(5));
    return grpc::Status::CANCELLED;
  }

  void WaitQuiet() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return quiet_; });
  }

 private:
  const int answers_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool quiet_ = false;
};

struct Server {
  explicit Server(int answers) : service(answers) {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(&service);
    server = b.BuildAndStart();
  }
  ~Server() { server->Shutdown(std::chrono::system_clock::now()); }
  std::shared_ptr<grpc::Channel> Channel() const {
    return grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                               grpc::InsecureChannelCredentials());
  }
  QuietOracle service;
  int port = 0;
  std::unique_ptr<grpc::Server> server;
};

TEST(GrpcPortsTest, CancelEndsAStreamThatStoppedSending) {
  Server s(2);
  auto port = MakeGrpcOraclePort(s.Channel());  // stream_idle_timeout: 30 min
  std::atomic<bool> cancel{false};
  int received = 0;
  auto call = std::async(std::launch::async, [&] {
    return port->Compare(
        v1::CompareRequest(),
        [&](const v1::Judgment&) {
          ++received;
          return absl::OkStatus();
        },
        [&] { return cancel.load(); });
  });
  s.service.WaitQuiet();
  cancel.store(true);  // what JobManager::Shutdown (SIGTERM) and CancelJob do
  absl::Status st = call.get();
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kCancelled));  // the job resumes on restart
  EXPECT_EQ(received, 2);
}

TEST(GrpcPortsTest, IdleTimeoutEndsAStreamThatStoppedSending) {
  Server s(1);
  GrpcPortsConfig config;
  config.stream_idle_timeout = absl::Milliseconds(300);
  auto port = MakeGrpcOraclePort(s.Channel(), config);
  absl::Status st = port->Compare(
      v1::CompareRequest(), [](const v1::Judgment&) { return absl::OkStatus(); }, nullptr);
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_NE(st.message().find("oracle.Compare"), std::string::npos) << st;
  EXPECT_NE(st.message().find("stream_idle_timeout"), std::string::npos) << st;
}

TEST(StreamWatchTest, NothingFiresWhileTheCallIsAliveAndUncancelled) {
  std::atomic<int> ended{0};
  {
    internal::StreamWatch watch([&] { ++ended; }, [] { return false; }, absl::Hours(1),
                                absl::Milliseconds(1));
    for (int i = 0; i < 50; ++i) watch.Touch();
    EXPECT_EQ(watch.fired(), internal::StreamWatch::Reason::kNone);
    EXPECT_THAT(watch.Explain(absl::UnavailableError("x"), "w"),
                StatusIs(absl::StatusCode::kUnavailable));
  }
  EXPECT_EQ(ended.load(), 0);
}

TEST(StreamWatchTest, CancelFiresOnceAndExplainsAsCancelled) {
  std::promise<void> ended;
  std::atomic<int> calls{0};
  std::atomic<bool> cancel{false};
  internal::StreamWatch watch(
      [&] {
        if (calls++ == 0) ended.set_value();
      },
      [&] { return cancel.load(); }, absl::Hours(1), absl::Milliseconds(1));
  cancel.store(true);
  ended.get_future().wait();
  EXPECT_EQ(watch.fired(), internal::StreamWatch::Reason::kCancelled);
  EXPECT_EQ(watch.Explain(absl::CancelledError("CANCELLED by the peer"), "w").message(),
            "job cancelled");
  EXPECT_EQ(calls.load(), 1);
}

}  // namespace
}  // namespace spar::orchestrator
