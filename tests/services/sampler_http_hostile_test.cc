// The sampler's OpenAI-compatible HTTP API against hostile clients (issue 24 item 9), over raw
// loopback sockets: a body announced without a token is refused before it is read; an oversized
// body is refused with 413; a dozen clients dripping a byte at a time no longer starve /health
// (their connections are cut at the whole-request deadline); a generation whose client closed
// its connection stops, and the next request is served.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/metrics/registry.h"
#include "model/policy.h"
#include "sampler/sampler.h"
#include "services/common/access.h"
#include "services/sampler/sampler_http_server.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/tiny_model.h"

namespace spar::services {
namespace {

using ::spar::testing::IsOk;
constexpr char kToken[] = "http-test-token";

// A connected raw socket with a receive timeout (a blocking read never hangs the test).
int Connect(int port, int recv_timeout_s = 20) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  timeval tv{recv_timeout_s, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

bool SendAll(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

// The status line of the answer ("" when the server closed without one or the read timed out).
std::string StatusLine(int fd) {
  std::string got;
  char buf[4096];
  while (got.find("\r\n") == std::string::npos) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  return got.substr(0, got.find("\r\n"));
}

std::string PostHead(size_t content_length, bool token) {
  return absl::StrCat("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n",
                      token ? absl::StrCat("Authorization: Bearer ", kToken, "\r\n") : "",
                      "Content-Type: application/json\r\nContent-Length: ", content_length,
                      "\r\n\r\n");
}

double Metric(metrics::Registry& registry, const std::string& name) {
  const std::string text = registry.Serialize();
  const size_t at = text.find("\n" + name + " ");
  return at == std::string::npos ? -1 : std::stod(text.substr(at + name.size() + 2));
}

class SamplerHttpHostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/spar_http_hostile_XXXXXX";
    root_ = mkdtemp(tmpl);
    auto policy = model::Policy::CreateRandom(spar::testing::TinyLlamaConfig(), 7);
    ASSERT_THAT(policy, IsOk());
    ASSERT_THAT((*policy)->Save(JoinPath(root_, "byte")), IsOk());
    auto sampler = sampler::Sampler::Create({});
    ASSERT_THAT(sampler, IsOk());
    sampler_ = *std::move(sampler);
    AccessPolicy access;
    access.api_token = kToken;
    access.path_roots = {root_};
    SamplerHttpOptions o;
    o.request_deadline = absl::Seconds(2);
    o.max_body_bytes = size_t{1} << 20;
    o.initial_policy = JoinPath(root_, "byte");
    auto server = SamplerHttpServer::Start(*sampler_, registry_, access, o);
    ASSERT_THAT(server, IsOk());
    server_ = *std::move(server);
  }
  void TearDown() override {
    server_.reset();
    RemoveAll(root_).IgnoreError();
  }

  std::string root_;
  metrics::Registry registry_;
  std::unique_ptr<sampler::Sampler> sampler_;
  std::unique_ptr<SamplerHttpServer> server_;
};

// A 768 MB body announced without a token: 401 on the headers, the body never read (it was
// buffered whole before the token was checked).
TEST_F(SamplerHttpHostileTest, AnUnauthenticatedBodyIsRefusedBeforeItIsRead) {
  const int fd = Connect(server_->port());
  ASSERT_TRUE(SendAll(fd, PostHead(size_t{768} << 20, /*token=*/false)));
  EXPECT_EQ(StatusLine(fd), "HTTP/1.1 401 Unauthorized");
  ::close(fd);
}

TEST_F(SamplerHttpHostileTest, ABodyOverTheLimitIs413) {
  const int fd = Connect(server_->port());
  ASSERT_TRUE(SendAll(fd, PostHead(size_t{2} << 20, /*token=*/true)));
  SendAll(fd, std::string(size_t{2} << 20, ' '));  // the server may stop reading early
  EXPECT_EQ(StatusLine(fd), "HTTP/1.1 413 Payload Too Large");
  ::close(fd);
}

// 12 connections (more than the 8 workers): six drip their headers, six (with the token) their
// body, a byte every 100 ms. Each is cut at the 2 s request deadline, and /health answers once the
// first drippers were cut (a /health sent while all 8 workers are held waits in the queue, where
// its own 2 s deadline may cut it: that race made this test abort at random).
TEST_F(SamplerHttpHostileTest, DrippingClientsAreCutAndHealthIsAnswered) {
  std::atomic<int> ended{0};
  std::vector<std::thread> drippers;
  for (int i = 0; i < 12; ++i) {
    drippers.emplace_back([this, i, &ended] {
      const int fd = Connect(server_->port());
      const std::string head = PostHead(1000, /*token=*/true);
      // Headers: all but the last byte dripped; body: headers whole, then the body dripped.
      std::string drip = i < 6 ? head : std::string(1000, ' ');
      if (i >= 6) SendAll(fd, head);
      const absl::Time give_up = absl::Now() + absl::Seconds(30);
      for (size_t k = 0; k + 1 < drip.size() && absl::Now() < give_up; ++k) {
        if (!SendAll(fd, drip.substr(k, 1))) break;
        absl::SleepFor(absl::Milliseconds(100));
      }
      if (absl::Now() < give_up) ended.fetch_add(1);
      ::close(fd);
    });
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (Metric(registry_, "spar_sampler_http_connections_cut_total") < 8 &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  httplib::Client health("127.0.0.1", server_->port());
  health.set_read_timeout(20, 0);
  auto res = health.Get("/health");
  for (std::thread& t : drippers) t.join();  // before any assertion: never a joinable thread left
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(ended.load(), 12);  // every dripper was cut off before it gave up
  EXPECT_GE(Metric(registry_, "spar_sampler_http_connections_cut_total"), 12);
}

// A request for 4,000 prompts whose client closes at once: the generation stops (counted as
// abandoned) and the next request is answered.
TEST_F(SamplerHttpHostileTest, AGenerationWhoseClientLeftStops) {
  std::vector<std::string> prompts;
  for (int i = 0; i < 4000; ++i) prompts.push_back(absl::StrCat("\"", i, "+", i, "=\""));
  const std::string body = absl::StrCat(R"({"model": "spar-policy", "n": 4, "max_tokens": 6, )",
                                        R"("prompt": [)", absl::StrJoin(prompts, ","), "]}");
  const int fd = Connect(server_->port());
  ASSERT_TRUE(SendAll(fd, PostHead(body.size(), /*token=*/true) + body));
  ::close(fd);
  const absl::Time deadline = absl::Now() + absl::Seconds(120);
  while (Metric(registry_, "spar_sampler_http_abandoned_total") < 1 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(Metric(registry_, "spar_sampler_http_abandoned_total"), 1);
  httplib::Client cli("127.0.0.1", server_->port());
  cli.set_bearer_token_auth(kToken);
  cli.set_read_timeout(60, 0);
  auto res =
      cli.Post("/v1/completions", R"({"prompt": ["1+1="], "max_tokens": 2})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
}

}  // namespace
}  // namespace spar::services
