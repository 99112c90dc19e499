// The engine backend of the sample stage against a real server: Spar's own sampler behind its
// OpenAI-compatible HTTP API (App with sampler_http_port), driven by the orchestrator's engine
// port (preset "spar") exactly as it drives vLLM or SGLang. The engine path must give the native
// gRPC path's samples bit for bit (tokens, per-token log-probs, finished) for a byte-tokenizer
// policy and for an HF tokenizer with a chat template rendered by Spar; a hand-off the engine
// refuses or fakes fails with a clear error; the HTTP API names the field it refuses.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/metrics/registry.h"
#include "common/utf8.h"
#include "model/policy.h"
#include "nlohmann/json.hpp"
#include "orchestrator/engine_sampler_port.h"
#include "orchestrator/grpc_ports.h"
#include "services/app/app.h"
#include "services/common/server_runner.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/tiny_model.h"

namespace spar::services {
namespace {

using nlohmann::json;
using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;
using ::testing::HasSubstr;

// A loopback port with no listener (bound, then released).
int UnusedLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ::close(fd);
  return ntohs(addr.sin_port);
}

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/spar_engine_XXXXXX";
    root_ = new std::string(mkdtemp(tmpl));
    auto policy = model::Policy::CreateRandom(spar::testing::TinyLlamaConfig(), 7);
    ASSERT_THAT(policy, IsOk());
    ASSERT_TRUE((*policy)->Save(JoinPath(*root_, "byte")).ok());
    for (const char* more : {"byte-2", "byte-3"}) {  // more policies for the many-jobs tests
      ASSERT_TRUE((*policy)->Save(JoinPath(*root_, more)).ok());
    }
    // A tiny qwen3 with the real Qwen3 tokenizer files: "auto" renders Qwen3's chat template.
    auto hf = model::Policy::CreateRandom(spar::testing::TinyQwen3Config(), 3);
    ASSERT_THAT(hf, IsOk());
    const std::string hf_dir = JoinPath(*root_, "qwen3");
    ASSERT_TRUE((*hf)->Save(hf_dir).ok());
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
      auto contents = ReadFile(JoinPath("tests/data/tokenizers/qwen3", f));
      ASSERT_TRUE(contents.ok()) << f;
      ASSERT_TRUE(WriteFileAtomic(JoinPath(hf_dir, f), *contents).ok());
    }
    AppConfig ac;
    ac.roles = {"sampler"};
    ac.runs_dir = JoinPath(*root_, "runs");
    ac.data_root = *root_;
    ac.sampler_http_port = 0;
    ac.sampler_max_batch_size = 8;  // 2 prompts of K=3 per batch: several per request
    auto app = App::Start(ac);
    ASSERT_THAT(app, IsOk());
    app_ = app->release();
  }
  static void TearDownTestSuite() {
    delete app_;
    RemoveAll(*root_).IgnoreError();
    delete root_;
  }

  static std::string Url() { return absl::StrCat("http://127.0.0.1:", app_->sampler_http_port()); }

  static std::unique_ptr<orchestrator::SamplerPort> EnginePort(const std::string& url,
                                                               int per_request = 4) {
    orchestrator::EngineConfig e;
    e.engine = "spar";
    e.url = url;
    e.prompts_per_request = per_request;
    e.max_attempts = 2;
    EXPECT_TRUE(orchestrator::Validate(e).ok());
    return orchestrator::MakeEngineSamplerPort(e, nullptr);
  }

  static v1::GenerateRequest Request(const std::string& policy, const std::string& chat_template,
                                     int64_t first_index) {
    v1::GenerateRequest req;
    req.set_policy(JoinPath(*root_, policy));
    for (int i = 0; i < 7; ++i) req.add_prompts(absl::StrCat(i + 3, "+", 2 * i, "="));
    req.mutable_params()->set_num_samples(3);
    req.mutable_params()->set_max_new_tokens(6);
    req.mutable_params()->set_temperature(1.0f);
    req.mutable_params()->set_seed(11);
    req.set_first_index(first_index);
    req.set_chat_template(chat_template);
    return req;
  }

  static std::map<int64_t, v1::GenerateResponse> Run(orchestrator::SamplerPort& port,
                                                     const v1::GenerateRequest& req,
                                                     absl::Status* status) {
    std::map<int64_t, v1::GenerateResponse> out;
    *status = port.Generate(
        req,
        [&](const v1::GenerateResponse& r) {
          out[r.index()] = r;
          return absl::OkStatus();
        },
        nullptr);
    return out;
  }

  static void ExpectSameSamples(const std::string& policy, const std::string& chat_template,
                                int64_t first_index) {
    const v1::GenerateRequest req = Request(policy, chat_template, first_index);
    orchestrator::GrpcPortsConfig pc;
    auto native_port = orchestrator::MakeGrpcSamplerPort(MakeChannel(app_->address()), pc);
    auto engine_port = EnginePort(Url());
    absl::Status native_st, engine_st;
    auto native = Run(*native_port, req, &native_st);
    auto engine = Run(*engine_port, req, &engine_st);
    ASSERT_THAT(native_st, IsOk());
    ASSERT_THAT(engine_st, IsOk());
    ASSERT_EQ(native.size(), 7u);
    ASSERT_EQ(engine.size(), 7u);
    int tokens = 0;
    for (const auto& [index, want] : native) {
      const v1::GenerateResponse& got = engine[index];
      EXPECT_EQ(got.prompt(), want.prompt());
      ASSERT_EQ(got.samples_size(), 3);
      for (int j = 0; j < 3; ++j) {
        const v1::Sample& a = got.samples(j);
        const v1::Sample& b = want.samples(j);
        EXPECT_EQ(a.text(), b.text()) << index << "/" << j;
        EXPECT_EQ(std::vector<int32_t>(a.token_ids().begin(), a.token_ids().end()),
                  std::vector<int32_t>(b.token_ids().begin(), b.token_ids().end()));
        EXPECT_EQ(std::vector<double>(a.token_logprobs().begin(), a.token_logprobs().end()),
                  std::vector<double>(b.token_logprobs().begin(), b.token_logprobs().end()));
        EXPECT_EQ(a.logprob(), b.logprob());
        EXPECT_EQ(a.finished(), b.finished());
        tokens += a.token_ids_size();
      }
    }
    EXPECT_GT(tokens, 7 * 3);
  }

  static inline std::string* root_ = nullptr;
  static inline App* app_ = nullptr;
};

TEST_F(EngineTest, ByteTokenizerSamplesEqualNativeGrpc) { ExpectSameSamples("byte", "", 0); }

TEST_F(EngineTest, ShardOffsetSamplesEqualNativeGrpc) { ExpectSameSamples("byte", "", 5); }

TEST_F(EngineTest, ChatTemplateRenderedBySparEqualsNativeGrpc) {
  ExpectSameSamples("qwen3", "auto", 0);
}

TEST_F(EngineTest, HandOffShowsInModelsAndRefusesPathsOutsideTheRoots) {
  httplib::Client cli(Url());
  auto bad = cli.Post("/update_weights_from_disk", R"({"model_path": "/etc"})", "application/json");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  json body = json::parse(bad->body);
  EXPECT_FALSE(body["success"].get<bool>());
  EXPECT_THAT(body["message"].get<std::string>(), HasSubstr("model_path"));
  const std::string dir = JoinPath(*root_, "byte");
  auto ok =
      cli.Post("/update_weights_from_disk", json{{"model_path", dir}}.dump(), "application/json");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
  auto models = cli.Get("/v1/models");
  ASSERT_TRUE(models);
  json m = json::parse(models->body);
  EXPECT_EQ(m["data"][0]["root"], dir);
  EXPECT_EQ(m["data"][0]["id"], "spar-policy");
}

TEST_F(EngineTest, CompletionsNameTheFieldTheyRefuse) {
  httplib::Client cli(Url());
  const std::string dir = JoinPath(*root_, "byte");
  ASSERT_TRUE(
      cli.Post("/update_weights_from_disk", json{{"model_path", dir}}.dump(), "application/json"));
  struct Case {
    json body;
    std::string param;
  };
  const std::vector<Case> cases = {
      {{{"prompt", "1+1="}, {"n", 0}}, "n"},
      {{{"prompt", "1+1="}, {"temperature", -1}}, "temperature"},
      {{{"prompt", "1+1="}, {"top_p", 0}}, "top_p"},
      {{{"prompt", "1+1="}, {"max_tokens", "many"}}, "max_tokens"},
      {{{"prompt", json::array({1, 2})}}, "prompt[0]"},
      {{{"n", 1}}, "prompt"},
      {{{"prompt", "1+1="}, {"stop", "\n"}}, "stop"},
      {{{"prompt", "1+1="}, {"frobnicate", true}}, "frobnicate"},
      {{{"prompt", "1+1="}, {"n", "2"}, {"best_of", 2}}, "n"},
      {{{"prompt", "1+1="}, {"stream_options", {{"include_usage", "yes"}}}}, "include_usage"},
  };
  for (const Case& c : cases) {
    auto res = cli.Post("/v1/completions", c.body.dump(), "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 400) << c.body.dump();
    json err = json::parse(res->body);
    EXPECT_EQ(err["error"]["param"], c.param) << res->body;
  }
  auto wrong_model =
      cli.Post("/v1/completions", R"({"prompt": "1+1=", "model": "gpt-4"})", "application/json");
  ASSERT_TRUE(wrong_model);
  EXPECT_EQ(wrong_model->status, 404);
  // A plain OpenAI request: defaults n=1, max_tokens=16; usage counts the prompt with its BOS.
  auto res = cli.Post("/v1/completions",
                      R"({"model": "spar-policy", "prompt": ["1+1=", "2+2="], "max_tokens": 3,
                          "seed": 4, "logprobs": 1})",
                      "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  json out = json::parse(res->body);
  ASSERT_EQ(out["choices"].size(), 2u);
  EXPECT_EQ(out["choices"][1]["index"], 1);
  EXPECT_EQ(out["usage"]["prompt_tokens"], 10);
  EXPECT_EQ(out["choices"][0]["logprobs"]["token_logprobs"].size(),
            out["choices"][0]["token_ids"].size());
}

// The shell of the fake engines: an httplib server on a loopback port, on its own thread. A
// subclass registers its routes, then calls Listen(); its destructor calls Stop() before its own
// members go.
class LoopbackServer {
 public:
  std::string url() const { return absl::StrCat("http://127.0.0.1:", port_, "/v1"); }

 protected:
  void Listen() {
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::yield();
  }
  void Stop() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }
  httplib::Server server_;

 private:
  std::thread thread_;
  int port_ = 0;
};

// A fake engine (an injected fault): /v1/models reports `root`; /update_weights_from_disk answers
// `ack` and, when `obey`, switches root to the asked path.
class FakeEngine : public LoopbackServer {
 public:
  // `null_root`: /v1/models answers "root": null (a broken engine).
  FakeEngine(bool ack, bool obey, bool null_root = false) {
    server_.Get("/v1/models", [this, null_root](const httplib::Request&, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      const json root = null_root ? json(nullptr) : json(root_);
      res.set_content(json{{"data", json::array({{{"id", "m"}, {"root", root}}})}}.dump(),
                      "application/json");
    });
    server_.Post("/update_weights_from_disk", [this, ack, obey](const httplib::Request& req,
                                                                httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      if (obey) root_ = json::parse(req.body)["model_path"].get<std::string>();
      res.set_content(json{{"success", ack}, {"message", "disk full"}}.dump(), "application/json");
    });
    Listen();
  }
  ~FakeEngine() { Stop(); }

 private:
  std::mutex mu_;
  std::string root_ = "/models/round-0";
};

// An engine whose completions lie in one way (issue 27 item 3), streamed as SSE: "abort_once"
// aborts the first choice of its first request (SGLang's finish_reason "abort"), "null_logprobs"
// answers "logprobs": null, "ignore_n" answers one choice per prompt. Texts carry the call
// number, so a test can tell which request a sample came from.
class LyingEngine : public LoopbackServer {
 public:
  explicit LyingEngine(std::string lie) : lie_(std::move(lie)) {
    server_.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      res.set_content(json{{"data", json::array({{{"id", "m"}, {"root", root_}}})}}.dump(),
                      "application/json");
    });
    server_.Post("/update_weights_from_disk",
                 [this](const httplib::Request& req, httplib::Response& res) {
                   std::lock_guard<std::mutex> lock(mu_);
                   root_ = json::parse(req.body)["model_path"].get<std::string>();
                   res.set_content(json{{"success", true}}.dump(), "application/json");
                 });
    server_.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      res.set_content(Answer(json::parse(req.body)), "text/event-stream");
    });
    Listen();
  }
  ~LyingEngine() { Stop(); }
  std::vector<size_t> prompts_per_call() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }

 private:
  std::string Answer(const json& body) {
    const size_t prompts = body["prompt"].size();
    calls_.push_back(prompts);
    const int n = lie_ == "ignore_n" ? 1 : body["n"].get<int>();
    std::string out;
    for (size_t p = 0; p < prompts; ++p) {
      for (int j = 0; j < n; ++j) {
        const int64_t index = static_cast<int64_t>(p) * n + j;
        json choice = {{"index", index},
                       {"text", absl::StrCat("c", calls_.size())},
                       {"finish_reason", "stop"},
                       {"logprobs", {{"token_logprobs", {-1.0, -1.0}}}}};
        if (lie_ == "null_logprobs") choice["logprobs"] = nullptr;
        if (lie_ == "abort_once" && calls_.size() == 1 && index == 0) {
          choice["finish_reason"] = "abort";
        }
        out += "data: " + json{{"choices", json::array({choice})}}.dump() + "\n\n";
      }
    }
    return out + "data: [DONE]\n\n";
  }

  const std::string lie_;
  std::mutex mu_;
  std::string root_ = "/models/round-0";
  std::vector<size_t> calls_;
};

// An engine that answers every choice with the path it serves, and holds its first completion
// request until another caller has acted on the engine: a second hand-off arrived, or the port
// reports a request waiting for the engine (spar_sampler_engine_lease_waiting). Without the
// lease, the second caller's hand-off lands in the middle of the first caller's requests.
class EchoEngine : public LoopbackServer {
 public:
  // `engine`: the preset whose port it serves ("spar" or "sglang": then also /get_model_info).
  EchoEngine(const metrics::Registry* registry, std::string engine = "spar")
      : registry_(registry), engine_(std::move(engine)) {
    server_.Get("/get_model_info", [this](const httplib::Request&, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      res.set_content(json{{"model_path", root_}}.dump(), "application/json");
    });
    server_.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      res.set_content(json{{"data", json::array({{{"id", "m"}, {"root", root_}}})}}.dump(),
                      "application/json");
    });
    server_.Post("/update_weights_from_disk",
                 [this](const httplib::Request& req, httplib::Response& res) {
                   std::lock_guard<std::mutex> lock(mu_);
                   root_ = json::parse(req.body)["model_path"].get<std::string>();
                   ++updates_;
                   cv_.notify_all();
                   res.set_content(json{{"success", true}}.dump(), "application/json");
                 });
    server_.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      std::unique_lock<std::mutex> lock(mu_);
      if (completions_++ == 0) {
        cv_.wait_for(lock, std::chrono::milliseconds(10), [this] { return updates_ >= 2; });
        while (updates_ < 2 && !AnotherCallerWaits()) {
          cv_.wait_for(lock, std::chrono::milliseconds(10), [this] { return updates_ >= 2; });
        }
      }
      const json body = json::parse(req.body);
      const int n = body["n"].get<int>();
      std::string out;
      for (size_t i = 0; i < body["prompt"].size() * n; ++i) {
        json choice = {{"index", i},
                       {"text", root_},
                       {"finish_reason", "stop"},
                       {"logprobs", {{"token_logprobs", {-1.0}}}}};
        out += "data: " + json{{"choices", json::array({choice})}}.dump() + "\n\n";
      }
      res.set_content(out + "data: [DONE]\n\n", "text/event-stream");
    });
    Listen();
  }
  ~EchoEngine() { Stop(); }

 private:
  bool AnotherCallerWaits() const {
    const std::string waiting =
        absl::StrCat("spar_sampler_engine_lease_waiting{engine=\"", engine_, "\"} ");
    const std::string text = registry_->Serialize();
    const size_t at = text.find(waiting);
    return at != std::string::npos && text.compare(at + waiting.size(), 2, "0\n") != 0;
  }
  const metrics::Registry* registry_;
  const std::string engine_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string root_ = "/models/round-0";
  int updates_ = 0;
  int completions_ = 0;
};

// Issue 27 item 1: jobs sampling different policies through one engine at once each get only
// their own policy's samples (one job's round-2 samples.jsonl held 32 of its own and 32 of the
// other's). The engine answers with the path it serves, so a sample names its policy.
void JobsOnOneEngineEachSampleTheirOwnPolicy(const std::string& preset,
                                             const std::vector<std::string>& policies,
                                             const std::string& root) {
  metrics::Registry registry;
  EchoEngine engine(&registry, preset);
  orchestrator::EngineConfig e;
  e.engine = preset;
  e.url = engine.url();
  e.prompts_per_request = 4;
  e.max_attempts = 1;
  ASSERT_THAT(orchestrator::Validate(e), IsOk());
  auto port = orchestrator::MakeEngineSamplerPort(e, &registry);
  std::map<std::string, std::map<int64_t, v1::GenerateResponse>> got;
  std::map<std::string, absl::Status> status;
  std::mutex mu;
  auto job = [&](const std::string& policy) {
    v1::GenerateRequest req;
    req.set_policy(JoinPath(root, policy));
    for (int i = 0; i < 7; ++i) req.add_prompts(absl::StrCat(i + 3, "+", 2 * i, "="));
    req.mutable_params()->set_num_samples(3);
    req.mutable_params()->set_max_new_tokens(6);
    req.set_chat_template("none");
    std::map<int64_t, v1::GenerateResponse> out;
    absl::Status st = port->Generate(
        req,
        [&](const v1::GenerateResponse& r) {
          out[r.index()] = r;
          return absl::OkStatus();
        },
        nullptr);
    std::lock_guard<std::mutex> lock(mu);
    got[policy] = std::move(out);
    status[policy] = st;
  };
  std::vector<std::thread> jobs;
  for (const std::string& policy : policies) jobs.emplace_back(job, policy);
  for (std::thread& t : jobs) t.join();
  for (const std::string& policy : policies) {
    ASSERT_THAT(status[policy], IsOk()) << preset << " " << policy;
    ASSERT_EQ(got[policy].size(), 7u) << preset << " " << policy;
    for (const auto& [index, r] : got[policy]) {
      for (const v1::Sample& s : r.samples()) {
        EXPECT_EQ(s.text(), JoinPath(root, policy)) << preset << " " << policy << " " << index;
      }
    }
  }
}

TEST_F(EngineTest, TwoJobsOnOneEngineEachSampleTheirOwnPolicy) {
  JobsOnOneEngineEachSampleTheirOwnPolicy("spar", {"byte", "qwen3"}, *root_);
}

TEST_F(EngineTest, FourJobsOnOneEngineEachSampleTheirOwnPolicySparAndSglangPresets) {
  for (const char* preset : {"spar", "sglang"}) {
    JobsOnOneEngineEachSampleTheirOwnPolicy(preset, {"byte", "qwen3", "byte-2", "byte-3"}, *root_);
  }
}

// Issue 27 item 3: an aborted choice is asked again and never kept; an answer without the
// log-probs asked for, or one that ignores n, is refused naming the cause, and nothing of it
// reaches the caller.
TEST_F(EngineTest, WrongEngineAnswersNeverBecomeSamples) {
  {
    LyingEngine engine("abort_once");
    absl::Status st;
    auto out = Run(*EnginePort(engine.url()), Request("byte", "", 0), &st);
    ASSERT_THAT(st, IsOk());
    ASSERT_EQ(out.size(), 7u);
    // Prompts 0-3 in the first request, prompt 0 alone again, then prompts 4-6.
    EXPECT_EQ(engine.prompts_per_call(), (std::vector<size_t>{4, 1, 3}));
    for (const v1::Sample& s : out[0].samples()) EXPECT_EQ(s.text(), "c2");
    for (const v1::Sample& s : out[1].samples()) EXPECT_EQ(s.text(), "c1");
  }
  {
    LyingEngine engine("null_logprobs");
    absl::Status st;
    auto out = Run(*EnginePort(engine.url()), Request("byte", "", 0), &st);
    EXPECT_TRUE(out.empty());
    EXPECT_THAT(st, StatusIs(absl::StatusCode::kFailedPrecondition,
                             HasSubstr("without the per-token log-probs")));
    EXPECT_EQ(engine.prompts_per_call().size(), 1u);  // refused, not retried
  }
  {
    LyingEngine engine("ignore_n");
    absl::Status st;
    auto out = Run(*EnginePort(engine.url()), Request("byte", "", 0), &st);
    EXPECT_TRUE(out.empty());
    EXPECT_THAT(st, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("ignores \"n\"")));
  }
}

// An engine shaped as SGLang's server (serving_completions.py): /get_model_info names the served
// path, /v1/models renames the served model to it, and a streamed choice carries "token_ids" (the
// ids it adds) only when the request asks "return_token_ids"; its log-prob tokens are texts.
class SglangShapedEngine : public LoopbackServer {
 public:
  SglangShapedEngine() {
    server_.Get("/get_model_info", [this](const httplib::Request&, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      res.set_content(json{{"model_path", root_}}.dump(), "application/json");
    });
    server_.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      res.set_content(json{{"data", json::array({{{"id", root_}, {"root", root_}}})}}.dump(),
                      "application/json");
    });
    server_.Post("/update_weights_from_disk",
                 [this](const httplib::Request& req, httplib::Response& res) {
                   std::lock_guard<std::mutex> lock(mu_);
                   root_ = json::parse(req.body)["model_path"].get<std::string>();
                   res.set_content(json{{"success", true}}.dump(), "application/json");
                 });
    server_.Post("/v1/completions", [](const httplib::Request& req, httplib::Response& res) {
      const json body = json::parse(req.body);
      const bool ids = body.value("return_token_ids", false);
      const int n = body["n"].get<int>();
      std::string out;
      for (size_t i = 0; i < body["prompt"].size() * n; ++i) {
        // Two chunks per choice: "4" (id 52) then "2" (id 50) and the end.
        for (int part = 0; part < 2; ++part) {
          json choice = {
              {"index", i},
              {"text", part == 0 ? "4" : "2"},
              {"finish_reason", part == 0 ? json(nullptr) : json("stop")},
              {"logprobs", {{"tokens", {part == 0 ? "4" : "2"}}, {"token_logprobs", {-0.5}}}}};
          if (ids) choice["token_ids"] = {part == 0 ? 52 : 50};
          out += "data: " + json{{"choices", json::array({choice})}}.dump() + "\n\n";
        }
      }
      res.set_content(out + "data: [DONE]\n\n", "text/event-stream");
    });
    Listen();
  }
  ~SglangShapedEngine() { Stop(); }

 private:
  std::mutex mu_;
  std::string root_ = "/models/round-0";
};

// Issue 27 item 3: with the sglang preset every sample had token_ids [] (num_tokens 0): SGLang
// returns them only when asked.
TEST_F(EngineTest, SglangSamplesCarryTheirTokenIds) {
  SglangShapedEngine engine;
  orchestrator::EngineConfig e;
  e.engine = "sglang";
  e.url = engine.url();
  ASSERT_THAT(orchestrator::Validate(e), IsOk());
  absl::Status st;
  auto out = Run(*orchestrator::MakeEngineSamplerPort(e, nullptr), Request("byte", "", 0), &st);
  ASSERT_THAT(st, IsOk());
  ASSERT_EQ(out.size(), 7u);
  for (const auto& [index, r] : out) {
    ASSERT_EQ(r.samples_size(), 3);
    for (const v1::Sample& s : r.samples()) {
      EXPECT_EQ(s.text(), "42");
      EXPECT_EQ(std::vector<int32_t>(s.token_ids().begin(), s.token_ids().end()),
                (std::vector<int32_t>{52, 50}));
      EXPECT_EQ(s.token_logprobs_size(), 2);
      EXPECT_DOUBLE_EQ(s.logprob(), -1.0);
    }
  }
}

TEST_F(EngineTest, AnEngineThatFakesTheUpdateFailsTheStageAsStale) {
  FakeEngine engine(/*ack=*/true, /*obey=*/false);
  absl::Status st;
  auto out = Run(*EnginePort(engine.url()), Request("byte", "", 0), &st);
  EXPECT_TRUE(out.empty());
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("stale policy")));
  EXPECT_THAT(st.message(), HasSubstr("/models/round-0"));
}

TEST_F(EngineTest, AnEngineThatRefusesTheUpdateFailsTheStage) {
  FakeEngine engine(/*ack=*/false, /*obey=*/true);
  absl::Status st;
  auto out = Run(*EnginePort(engine.url()), Request("byte", "", 0), &st);
  EXPECT_TRUE(out.empty());
  EXPECT_THAT(
      st, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("refused the weight update")));
  EXPECT_THAT(st.message(), HasSubstr("disk full"));
}

TEST_F(EngineTest, AnEngineThatSendsBadJsonIsAnErrorNotACrash) {
  FakeEngine engine(/*ack=*/true, /*obey=*/true, /*null_root=*/true);
  absl::Status st;
  auto out = Run(*EnginePort(engine.url()), Request("byte", "", 0), &st);
  EXPECT_TRUE(out.empty());
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kInternal, HasSubstr("unexpected JSON")));
}

// An engine whose every answer is an HTTP 400 page with the given raw body.
class ErrorPageEngine : public LoopbackServer {
 public:
  explicit ErrorPageEngine(std::string body) : body_(std::move(body)) {
    auto page = [this](const httplib::Request&, httplib::Response& res) {
      res.status = 400;
      res.set_content(body_, "text/html");
    };
    server_.Get("/v1/models", page);
    server_.Post("/update_weights_from_disk", page);
    Listen();
  }
  ~ErrorPageEngine() { Stop(); }

 private:
  const std::string body_;
};

// Issue 24 items 8 and 10: an engine's error page in Latin-1, one in UTF-8 cut at byte 300
// inside a character, and one echoing the engine's key. Each used to travel raw into the job's
// error and events.jsonl, where json::dump threw and aborted `spar up`, and the key was stored.
// The port's error is valid UTF-8, short, keyless, and names the engine's HTTP status.
TEST_F(EngineTest, AnEngineErrorPageIsMadeSafeBeforeItLeavesThePort) {
  const std::string key = "sk-engine-SECRET-77";
  std::string cut;
  while (cut.size() < 299) cut += "\xE2\x82\xAC";  // U+20AC, 3 bytes each
  cut.resize(300);                                 // ends inside a character
  const std::string pages[] = {
      "<html><body>Erreur: r\xE9essayez plus tard \xA9 moteur</body></html>",
      cut,
      absl::StrCat("{\"error\": \"bad key ", key, ", header Authorization: Bearer ", key, "\"}"),
  };
  for (const std::string& page : pages) {
    ErrorPageEngine engine(page);
    orchestrator::EngineConfig e;
    e.engine = "spar";
    e.url = engine.url();
    e.api_key = key;
    e.max_attempts = 1;
    ASSERT_THAT(orchestrator::Validate(e), IsOk());
    auto port = orchestrator::MakeEngineSamplerPort(e, nullptr);
    absl::Status st;
    Run(*port, Request("byte", "", 0), &st);
    ASSERT_FALSE(st.ok());
    const std::string msg(st.message());
    EXPECT_THAT(msg, HasSubstr("HTTP 400"));
    EXPECT_EQ(SanitizeUtf8(msg), msg) << msg;
    EXPECT_EQ(msg.find("SECRET"), std::string::npos) << msg;
    EXPECT_LT(msg.size(), 600u) << msg;
    EXPECT_NO_THROW(json({{"error", msg}}).dump());
  }
}

TEST_F(EngineTest, AnEngineThatIsDownIsUnavailable) {
  std::string url;
  {
    FakeEngine engine(true, true);
    url = engine.url();
  }  // stopped: nothing listens there now
  absl::Status st;
  Run(*EnginePort(url), Request("byte", "", 0), &st);
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kUnavailable));
}

// A supervised engine (sampler_engine.command) that cannot start, or dies before it serves, fails
// the call with the reason; bad supervision settings are refused naming the field.
TEST_F(EngineTest, ASupervisedEngineThatCannotServeNamesWhy) {
  orchestrator::EngineConfig e;
  e.engine = "vllm";
  e.url = absl::StrCat("http://127.0.0.1:", UnusedLoopbackPort(), "/v1");
  e.max_attempts = 1;
  e.command = {"/bin/sh", "-c", "exit 3", "{model_path}"};
  ASSERT_TRUE(orchestrator::Validate(e).ok());
  absl::Status st;
  Run(*orchestrator::MakeEngineSamplerPort(e, nullptr), Request("byte", "", 0), &st);
  EXPECT_THAT(
      st, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("ended before it served: exit 3")));

  e.command = {"/nonexistent/vllm", "serve", "{model_path}"};
  Run(*orchestrator::MakeEngineSamplerPort(e, nullptr), Request("byte", "", 0), &st);
  EXPECT_THAT(
      st, StatusIs(absl::StatusCode::kInternal, HasSubstr("cannot start \"/nonexistent/vllm\"")));

  e.handoff = "reload";
  EXPECT_THAT(orchestrator::Validate(e).message(), HasSubstr("sampler_engine.handoff"));
  e.handoff = "restart";
  e.command.clear();
  EXPECT_THAT(orchestrator::Validate(e).message(), HasSubstr("needs sampler_engine.command"));
  e.handoff = "";
  e.engine = "tgi";
  EXPECT_THAT(orchestrator::Validate(e).message(), HasSubstr("sampler_engine.engine"));
  e.engine = "sglang";
  e.url = "ftp://x";
  EXPECT_THAT(orchestrator::Validate(e).message(), HasSubstr("sampler_engine.url"));
}

// Without a command, a vllm engine that serves another checkpoint is refused, not used.
TEST_F(EngineTest, AVllmEngineServingAnotherCheckpointIsRefused) {
  FakeEngine engine(/*ack=*/true, /*obey=*/true);
  orchestrator::EngineConfig e;
  e.engine = "vllm";
  e.url = engine.url();
  absl::Status st;
  auto out = Run(*orchestrator::MakeEngineSamplerPort(e, nullptr), Request("byte", "", 0), &st);
  EXPECT_TRUE(out.empty());
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kFailedPrecondition,
                           HasSubstr("cannot reload weights over HTTP")));
}

}  // namespace
}  // namespace spar::services
