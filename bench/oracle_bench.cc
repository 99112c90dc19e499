// Judge-client throughput against an in-process spar-judge with a fixed latency L at concurrency
// C: judgments/s beside the bound min(C / L, RPM / 60 s), as a ratio; and the client's own
// overhead per call (OracleClient::Compare vs a bare httplib POST of the same body, latency 0).
//
//   spar_oracle_bench [--latency_ms=20] [--concurrency=8] [--judgments=2000] [--rpm=0]
//                     [--overhead_calls=500]
//
// One HTTP call per judgment (both_orders off) so that a judgment is a call. With --rpm the bound
// is the sustained rate RPM/60; the limiter admits a full burst of RPM in the first minute, so
// choose --judgments well above RPM for a meaningful RPM-bound ratio.
#include <httplib.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "oracle_client/judge_template.h"
#include "oracle_client/oracle_client.h"
#include "services/judge/judge_server.h"

namespace {

int Flag(int argc, char** argv, const std::string& name, int fallback) {
  const std::string prefix = "--" + name + "=";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    int v = 0;
    if (a.rfind(prefix, 0) == 0 && absl::SimpleAtoi(a.substr(prefix.size()), &v)) return v;
  }
  return fallback;
}

std::vector<spar::oracle::Comparison> Items(int n, int salt) {
  std::vector<spar::oracle::Comparison> items;
  for (int i = 0; i < n; ++i) {
    int a = i % 100, b = i / 100 + salt;
    items.push_back(
        {absl::StrCat(a, "+", b, "="), std::to_string(a + b), std::to_string(a + b + 1)});
  }
  return items;
}

std::unique_ptr<spar::oracle::OracleClient> Client(const std::string& url, int concurrency,
                                                   int rpm) {
  spar::oracle::OracleConfig c;
  c.base_url = url;
  c.max_concurrency = concurrency;
  c.both_orders = false;
  c.requests_per_minute = rpm;
  c.timeout = absl::Seconds(30);
  auto client = spar::oracle::OracleClient::Create(c, nullptr, spar::Clock::Real());
  if (!client.ok()) {
    std::fprintf(stderr, "client: %s\n", client.status().ToString().c_str());
    std::exit(2);
  }
  return *std::move(client);
}

}  // namespace

int main(int argc, char** argv) {
  const int latency_ms = Flag(argc, argv, "latency_ms", 20);
  const int concurrency = Flag(argc, argv, "concurrency", 8);
  const int judgments = Flag(argc, argv, "judgments", 2000);
  const int rpm = Flag(argc, argv, "rpm", 0);
  const int overhead_calls = Flag(argc, argv, "overhead_calls", 500);

  // --- Throughput at concurrency C against latency L.
  spar::judge::JudgeServerOptions o;
  o.latency = absl::Milliseconds(latency_ms);
  o.threads = concurrency + 4;
  auto server = spar::judge::JudgeServer::Start(o);
  if (!server.ok()) {
    std::fprintf(stderr, "judge: %s\n", server.status().ToString().c_str());
    return 2;
  }
  auto client = Client((*server)->base_url(), concurrency, rpm);
  int failed = 0;
  auto count = [&](size_t, absl::StatusOr<spar::oracle::Judgment> j) { failed += j.ok() ? 0 : 1; };
  client->CompareAll(Items(2 * concurrency, 1000), count);  // warm up connections
  absl::Time start = absl::Now();
  client->CompareAll(Items(judgments, 0), count);
  double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  double rate = judgments / seconds;
  double bound_cl = latency_ms > 0 ? concurrency * 1000.0 / latency_ms : 1e18;
  double bound = rpm > 0 ? std::min(bound_cl, rpm / 60.0) : bound_cl;
  std::printf("throughput: L=%d ms C=%d rpm=%s judgments=%d failed=%d time=%.3f s\n", latency_ms,
              concurrency, rpm > 0 ? std::to_string(rpm).c_str() : "unlimited", judgments, failed,
              seconds);
  std::printf("  judgments/s=%.1f  bound C/L=%.1f/s  RPM/60=%s  ratio=%.3f\n", rate, bound_cl,
              rpm > 0 ? absl::StrCat(rpm / 60.0, "/s").c_str() : "n/a", rate / bound);
  client.reset();
  server->reset();

  // --- Client overhead per call at latency 0, concurrency 1.
  auto fast = spar::judge::JudgeServer::Start({});
  if (!fast.ok()) return 2;
  auto one = Client((*fast)->base_url(), 1, 0);
  std::vector<spar::oracle::Comparison> items = Items(overhead_calls, 5000);
  httplib::Client raw(absl::StrCat("http://127.0.0.1:", (*fast)->port()));
  raw.set_keep_alive(true);
  raw.set_tcp_nodelay(true);
  std::vector<std::string> bodies;
  for (const auto& c : items) {
    nlohmann::json msgs = nlohmann::json::array();
    for (const auto& m : spar::oracle::RenderJudgePrompt(c.prompt, c.response_a, c.response_b)) {
      msgs.push_back({{"role", m.role}, {"content", m.content}});
    }
    bodies.push_back(nlohmann::json{
        {"model", "spar-rule-judge"},
        {"messages", msgs},
        {"max_tokens", 1},
        {"temperature", 0},
        {"logprobs", true},
        {"top_logprobs",
         5}}.dump());
  }
  // Alternate rounds of the two and keep each one's best round: on a shared machine the minimum
  // is the least disturbed estimate.
  double client_us = 1e18, raw_us = 1e18;
  for (int round = 0; round < 5; ++round) {
    absl::Time t0 = absl::Now();
    for (const auto& c : items) (void)one->Compare(c);
    client_us = std::min(client_us, absl::ToDoubleMicroseconds(absl::Now() - t0) / overhead_calls);
    absl::Time t1 = absl::Now();
    for (const auto& b : bodies) (void)raw.Post("/v1/chat/completions", b, "application/json");
    raw_us = std::min(raw_us, absl::ToDoubleMicroseconds(absl::Now() - t1) / overhead_calls);
  }
  std::printf(
      "overhead (L=0, C=1, %d calls x 5 rounds, best round): client %.1f us/call, bare httplib "
      "%.1f us/call, "
      "client overhead %.1f us/call\n",
      overhead_calls, client_us, raw_us, client_us - raw_us);
  return failed == 0 ? 0 : 1;
}
