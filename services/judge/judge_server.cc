#include "services/judge/judge_server.h"

#include <httplib.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/log.h"
#include "oracle_client/judge_template.h"
#include "oracle_client/side_by_side.h"
#include "services/common/http_exception.h"
#include "tasks/arith/problems.h"
#include "tasks/arith/rule_judge.h"

namespace spar::judge {
namespace {

using nlohmann::json;

constexpr char kJsonType[] = "application/json";

json ErrorBody(const std::string& message, const std::string& type, const std::string& code) {
  return json{
      {"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", code}}}};
}

void SendError(httplib::Response& res, int status, const std::string& message,
               const std::string& type, const std::string& code) {
  res.status = status;
  res.set_content(DumpJson(ErrorBody(message, type, code)), kJsonType);
}

// P(winner) the judge reports, by how clear the win is.
double WinnerProbability(arith::RuleVerdict::Basis basis) {
  switch (basis) {
    case arith::RuleVerdict::Basis::kQuality:
      return 0.99;
    case arith::RuleVerdict::Basis::kTieBreak:
      return 0.6;
    case arith::RuleVerdict::Basis::kTie:
      return 0.55;
  }
  return 0.5;
}

// The text of a message's content: a string, or the concatenated "text" parts of an array.
std::optional<std::string> ContentText(const json& content) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) return std::nullopt;
  std::string out;
  for (const json& part : content) {
    if (!part.is_object()) return std::nullopt;
    auto t = part.find("text");
    if (t == part.end() || !t->is_string()) return std::nullopt;
    out += t->get<std::string>();
  }
  return out;
}

bool IsFaulted(int64_t n, double rate) {
  if (rate <= 0) return false;
  if (rate >= 1) return true;
  constexpr double kEps = 1e-9;
  return std::ceil(static_cast<double>(n) * rate - kEps) >
         std::ceil(static_cast<double>(n - 1) * rate - kEps);
}

arith::ArithRule RuleOf(const JudgeServerOptions& o) {
  return o.arith_rule == "exact" ? arith::ArithRule::kExact : arith::ArithRule::kCloser;
}

int64_t ApproxTokens(const std::string& text) { return static_cast<int64_t>(text.size() + 3) / 4; }

}  // namespace

absl::Status Validate(const JudgeServerOptions& o) {
  if (o.arith_rule != "closer" && o.arith_rule != "exact") {
    return absl::InvalidArgumentError(absl::StrCat(
        "judge.arith_rule must be \"closer\" or \"exact\", got \"", o.arith_rule, "\""));
  }
  static const std::set<std::string> kFaults = {"",
                                                "429",
                                                "500",
                                                "503",
                                                "slow",
                                                "truncated_json",
                                                "bad_verdict",
                                                "reset",
                                                "insufficient_quota"};
  if (kFaults.count(o.fault) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("judge.fault must be one of 429|500|503|slow|truncated_json|bad_verdict|reset|"
                     "insufficient_quota or empty, got \"",
                     o.fault, "\""));
  }
  if (!(o.fault_rate >= 0 && o.fault_rate <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("judge.fault_rate must be in [0, 1], got ", o.fault_rate));
  }
  if (o.port < 0 || o.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("judge.port must be in [0, 65535], got ", o.port));
  }
  if (o.latency < absl::ZeroDuration() || o.slow_latency < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("judge.latency and judge.slow_latency must be >= 0");
  }
  if (o.host.empty()) return absl::InvalidArgumentError("judge.host must be non-empty");
  if (o.threads < 1 || o.threads > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("judge.threads must be in [1, 1024], got ", o.threads));
  }
  if (o.model.empty()) return absl::InvalidArgumentError("judge.model must be non-empty");
  return absl::OkStatus();
}

// Request handling, with access to the server's counters.
struct JudgeServer::Handlers {
  static bool Authorized(const JudgeServer& s, const httplib::Request& req,
                         httplib::Response& res) {
    if (s.options_.api_key.empty()) return true;
    if (req.get_header_value("Authorization") == absl::StrCat("Bearer ", s.options_.api_key)) {
      return true;
    }
    SendError(res, 401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key");
    return false;
  }

  // One chat.completion choice carrying `content` (no logprobs).
  static json TextChoice(const std::string& content) {
    return {{"index", 0},
            {"message", {{"role", "assistant"}, {"content", content}}},
            {"finish_reason", "stop"},
            {"logprobs", nullptr}};
  }

  // Answers 200 with a chat.completion of one choice; the truncated_json fault cuts the body.
  static void SendCompletion(httplib::Response& res, int64_t n, const std::string& model,
                             json choice, int64_t prompt_tokens, int64_t completion_tokens,
                             const std::string& fault) {
    json out = {{"id", absl::StrCat("chatcmpl-spar-", n)},
                {"object", "chat.completion"},
                {"created", absl::ToUnixSeconds(absl::Now())},
                {"model", model},
                {"choices", json::array({std::move(choice)})},
                {"usage",
                 {{"prompt_tokens", prompt_tokens},
                  {"completion_tokens", completion_tokens},
                  {"total_tokens", prompt_tokens + completion_tokens}}}};
    std::string text = DumpJson(out);
    if (fault == "truncated_json") text.resize(text.size() / 2);
    res.status = 200;
    res.set_header("x-request-id", absl::StrCat("req-spar-", n));
    res.set_content(text, kJsonType);
  }

  // Answers with the injected fault, if it is one that replaces the answer; false otherwise.
  static bool SendInjectedFault(const JudgeServerOptions& o, const std::string& fault,
                                httplib::Response& res) {
    if (fault == "429" || fault == "503") {
      if (!o.retry_after.empty()) res.set_header("retry-after", o.retry_after);
      if (!o.retry_after_ms.empty()) res.set_header("retry-after-ms", o.retry_after_ms);
      if (fault == "429") {
        SendError(res, 429, "Rate limit reached for requests (injected fault).", "rate_limit_error",
                  "rate_limit_exceeded");
      } else {
        SendError(res, 503, "The server is overloaded (injected fault).", "server_error",
                  "server_is_overloaded");
      }
      return true;
    }
    if (fault == "500") {
      SendError(res, 500, "The server had an error (injected fault).", "server_error",
                "internal_error");
      return true;
    }
    if (fault == "insufficient_quota") {
      SendError(res, 429, "You exceeded your current quota (injected fault).", "insufficient_quota",
                "insufficient_quota");
      return true;
    }
    if (fault == "reset") {
      // Headers promise a body that never comes; the connection is closed mid-response.
      res.set_content_provider(64, kJsonType,
                               [](size_t, size_t, httplib::DataSink&) { return false; });
      return true;
    }
    return false;
  }

  // What the messages ask: the last user message parsed as each judge template, and the text of
  // every message (for the token estimate).
  struct ParsedMessages {
    std::optional<oracle::JudgeInputs> inputs;
    std::optional<oracle::PointwiseInputs> pointwise;
    std::optional<oracle::SideBySideInputs> side_by_side;
    std::string prompt_text;
  };

  static ParsedMessages ParseMessages(const json& messages) {
    ParsedMessages out;
    for (const json& m : messages) {
      if (!m.is_object()) continue;
      auto content = m.find("content");
      if (content == m.end()) continue;
      std::optional<std::string> text = ContentText(*content);
      if (!text) continue;
      out.prompt_text += *text;
      auto role = m.find("role");
      if (role != m.end() && role->is_string() && role->get<std::string>() == "user") {
        out.inputs = oracle::ParseJudgeUserMessage(*text);
        out.pointwise = oracle::ParsePointwiseUserMessage(*text);
        out.side_by_side = oracle::ParseSideBySideUserMessage(*text);
      }
    }
    return out;
  }

  // The start of every judged request (chat completions and pooling): the key, the request
  // number `n`, the added latency and the injected fault. False when the answer was already sent
  // (401 or a fault that replaces it); else *fault is what the handler must still apply.
  static bool Admit(JudgeServer& s, const httplib::Request& req, httplib::Response& res, int64_t* n,
                    std::string* fault) {
    if (!Authorized(s, req, res)) return false;
    const JudgeServerOptions& o = s.options_;
    *n = s.request_counter_.fetch_add(1) + 1;
    s.requests_served_.fetch_add(1);
    *fault = (!o.fault.empty() && IsFaulted(*n, o.fault_rate)) ? o.fault : "";
    if (o.latency > absl::ZeroDuration()) absl::SleepFor(o.latency);
    if (SendInjectedFault(o, *fault, res)) return false;
    if (*fault == "slow" && o.slow_latency > absl::ZeroDuration()) absl::SleepFor(o.slow_latency);
    return true;
  }

  static void ChatCompletions(JudgeServer& s, const httplib::Request& req, httplib::Response& res) {
    int64_t n = 0;
    std::string fault;
    if (!Admit(s, req, res, &n, &fault)) return;

    json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    if (!body.is_object()) {
      SendError(res, 400, "We could not parse the JSON body of your request.",
                "invalid_request_error", "invalid_json");
      return;
    }
    auto messages = body.find("messages");
    if (messages == body.end() || !messages->is_array()) {
      SendError(res, 400, "'messages' is a required array.", "invalid_request_error",
                "invalid_request");
      return;
    }
    const ParsedMessages parsed = ParseMessages(*messages);
    if (!parsed.inputs && !parsed.pointwise && parsed.side_by_side) {
      SideBySideResponse(s, *parsed.side_by_side, body, parsed.prompt_text, n, fault, res);
      return;
    }
    if (!parsed.inputs && parsed.pointwise) {
      ScoreResponse(s, *parsed.pointwise, body, parsed.prompt_text, n, fault, res);
      return;
    }
    if (!parsed.inputs) {
      SendError(res, 400, "The last user message does not follow the spar pairwise judge template.",
                "invalid_request_error", "unsupported_prompt");
      return;
    }
    PairwiseResponse(s, *parsed.inputs, body, parsed.prompt_text, n, fault, res);
  }

  // The pairwise verdict by the arithmetic rule, with log-probs when asked.
  static void PairwiseResponse(JudgeServer& s, const oracle::JudgeInputs& in, const json& body,
                               const std::string& prompt_text, int64_t n, const std::string& fault,
                               httplib::Response& res) {
    const JudgeServerOptions& o = s.options_;
    bool want_logprobs = body.value("logprobs", false);
    int top_n = 0;
    if (auto t = body.find("top_logprobs"); t != body.end() && t->is_number_integer()) {
      top_n = t->get<int>();
    }
    if (top_n < 0 || top_n > 20) {
      SendError(res, 400, "'top_logprobs' must be in [0, 20].", "invalid_request_error",
                "invalid_value");
      return;
    }
    std::string model = o.model;
    if (auto m = body.find("model"); m != body.end() && m->is_string())
      model = m->get<std::string>();
    s.RecordSeen(json{{"instruction", in.instruction},
                      {"output_a", in.output_a},
                      {"output_b", in.output_b},
                      {"model", model},
                      {"logprobs", want_logprobs},
                      {"top_logprobs", top_n}});

    arith::RuleVerdict v =
        arith::JudgeArithmetic(in.instruction, in.output_a, in.output_b, RuleOf(o));
    const std::string winner = oracle::VerdictToken(v.winner);
    const std::string loser = v.winner == oracle::Verdict::kA ? "B" : "A";
    const double p = WinnerProbability(v.basis);
    std::string content = winner;
    json choice = TextChoice(content);
    if (fault == "bad_verdict") {
      content = "maybe";
      choice["message"]["content"] = content;
      if (want_logprobs) {
        json top = json::array({{{"token", "maybe"}, {"logprob", -0.01}, {"bytes", nullptr}},
                                {{"token", "perhaps"}, {"logprob", -5.0}, {"bytes", nullptr}}});
        top.get_ref<json::array_t&>().resize(std::min<size_t>(top.size(), top_n));
        choice["logprobs"] = {{"content", json::array({{{"token", "maybe"},
                                                        {"logprob", -0.01},
                                                        {"bytes", nullptr},
                                                        {"top_logprobs", top}}})}};
      }
    } else if (want_logprobs) {
      json top =
          json::array({{{"token", winner}, {"logprob", std::log(p)}, {"bytes", nullptr}},
                       {{"token", loser}, {"logprob", std::log(1 - p)}, {"bytes", nullptr}}});
      top.get_ref<json::array_t&>().resize(std::min<size_t>(top.size(), top_n));
      choice["logprobs"] = {{"content", json::array({{{"token", winner},
                                                      {"logprob", std::log(p)},
                                                      {"bytes", nullptr},
                                                      {"top_logprobs", top}}})}};
    }
    SendCompletion(res, n, model, std::move(choice), ApproxTokens(prompt_text), 1, fault);
  }

  static void ScoreResponse(JudgeServer& s, const oracle::PointwiseInputs& in, const json& body,
                            const std::string& prompt_text, int64_t n, const std::string& fault,
                            httplib::Response& res) {
    std::string model = s.options_.model;
    if (auto m = body.find("model"); m != body.end() && m->is_string()) {
      model = m->get<std::string>();
    }
    s.RecordSeen(json{{"instruction", in.instruction}, {"output", in.output}, {"model", model}});
    int score = 5;
    if (std::optional<int64_t> truth = arith::ArithTruth(in.instruction)) {
      std::optional<int64_t> got = arith::ParseArithAnswer(in.output);
      score = !got ? 1 : (*got == *truth ? 10 : 3);
    }
    std::string content = fault == "bad_verdict" ? "maybe" : std::to_string(score);
    SendCompletion(res, n, model, TextChoice(content), ApproxTokens(prompt_text), 1, fault);
  }

  // Side-by-side 6-point scores by the arithmetic rule: 6 for the correct number, 1 for a wrong
  // number, 0 for no number; 3 for every output when the instruction is not arithmetic.
  static void SideBySideResponse(JudgeServer& s, const oracle::SideBySideInputs& in,
                                 const json& body, const std::string& prompt_text, int64_t n,
                                 const std::string& fault, httplib::Response& res) {
    std::string model = s.options_.model;
    if (auto m = body.find("model"); m != body.end() && m->is_string()) {
      model = m->get<std::string>();
    }
    s.RecordSeen(json{{"instruction", in.instruction},
                      {"outputs", in.outputs},
                      {"model", model},
                      {"mode", "side_by_side"}});
    json answer = json::object();
    const std::optional<int64_t> truth = arith::ArithTruth(in.instruction);
    for (size_t k = 0; k < in.outputs.size(); ++k) {
      int score = 3;
      std::string why = "not an arithmetic question";
      if (truth) {
        std::optional<int64_t> got = arith::ParseArithAnswer(in.outputs[k]);
        score = !got ? 0 : (*got == *truth ? 6 : 1);
        why = !got ? "no number" : (*got == *truth ? "correct" : "wrong number");
      }
      const std::string id = absl::StrCat("id", k + 1);
      answer[id + "_justification"] = why;
      answer[id + "_score"] = score;
    }
    std::string content = fault == "bad_verdict" ? "The first one is best." : DumpJson(answer);
    SendCompletion(res, n, model, TextChoice(content), ApproxTokens(prompt_text),
                   ApproxTokens(content), fault);
  }

  // POST /pooling (vLLM's pooling API, as a reward model serves it): the arithmetic rule's reward
  // (arith::ArithReward) for the conversation's last assistant message as the answer to its last
  // user message, as {"data":[{"index":0,"object":"pooling","data":[reward]}],"usage":{...}}.
  // The injected faults apply as to chat completions ("bad_verdict" sends two values).
  static void Pooling(JudgeServer& s, const httplib::Request& req, httplib::Response& res) {
    int64_t n = 0;
    std::string fault;
    if (!Admit(s, req, res, &n, &fault)) return;
    const JudgeServerOptions& o = s.options_;
    json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    std::optional<std::string> user, assistant;
    auto messages = body.is_object() ? body.find("messages") : body.end();
    if (body.is_object() && messages != body.end() && messages->is_array()) {
      for (const json& m : *messages) {
        if (!m.is_object() || !m.contains("content") || !m["role"].is_string()) continue;
        std::optional<std::string> text = ContentText(m["content"]);
        if (m["role"] == "user") user = text;
        if (m["role"] == "assistant") assistant = text;
      }
    }
    if (!user || !assistant) {
      SendError(
          res, 400,
          "spar-judge's reward model needs 'messages' holding a user and an assistant message.",
          "invalid_request_error", "invalid_request");
      return;
    }
    std::string model = o.model;
    if (auto m = body.find("model"); m != body.end() && m->is_string())
      model = m->get<std::string>();
    s.RecordSeen(
        json{{"instruction", *user}, {"output", *assistant}, {"model", model}, {"mode", "reward"}});
    const double reward = arith::ArithReward(*user, *assistant, RuleOf(o));
    const int64_t tokens = ApproxTokens(*user) + ApproxTokens(*assistant);
    json out = {
        {"id", absl::StrCat("pool-spar-", n)},
        {"object", "list"},
        {"created", absl::ToUnixSeconds(absl::Now())},
        {"model", model},
        {"data", json::array({{{"index", 0},
                               {"object", "pooling"},
                               {"data", fault == "bad_verdict" ? json::array({reward, reward})
                                                               : json::array({reward})}}})},
        {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}, {"completion_tokens", 0}}}};
    std::string text = DumpJson(out);
    if (fault == "truncated_json") text.resize(text.size() / 2);
    res.status = 200;
    res.set_header("x-request-id", absl::StrCat("req-spar-", n));
    res.set_content(text, kJsonType);
  }

  static void Models(JudgeServer& s, const httplib::Request& req, httplib::Response& res) {
    if (!Authorized(s, req, res)) return;
    json out = {{"object", "list"},
                {"data", json::array({{{"id", s.options_.model},
                                       {"object", "model"},
                                       {"created", 0},
                                       {"owned_by", "spar"}}})}};
    res.set_content(DumpJson(out), kJsonType);
  }
};

JudgeServer::JudgeServer(JudgeServerOptions options) : options_(std::move(options)) {}

JudgeServer::~JudgeServer() {
  Stop();
  if (request_log_ != nullptr) std::fclose(request_log_);
}

void JudgeServer::RecordSeen(nlohmann::json request) {
  std::lock_guard<std::mutex> lock(seen_mu_);
  if (request_log_ != nullptr) {
    std::string line = DumpJson(request);
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), request_log_);
    std::fflush(request_log_);
  }
  seen_.push_back(std::move(request));
}

absl::StatusOr<std::unique_ptr<JudgeServer>> JudgeServer::Start(JudgeServerOptions options) {
  if (absl::Status st = Validate(options); !st.ok()) return st;
  std::unique_ptr<JudgeServer> s(new JudgeServer(std::move(options)));
  if (!s->options_.request_log.empty()) {
    s->request_log_ = std::fopen(s->options_.request_log.c_str(), "w");
    if (s->request_log_ == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "judge.request_log: cannot open ", s->options_.request_log, ": ", std::strerror(errno)));
    }
  }
  s->server_ = std::make_unique<httplib::Server>();
  s->server_->set_tcp_nodelay(true);
  const int threads = s->options_.threads;
  s->server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  JudgeServer* self = s.get();
  s->server_->Post("/v1/chat/completions",
                   [self](const httplib::Request& req, httplib::Response& res) {
                     Handlers::ChatCompletions(*self, req, res);
                   });
  for (const char* path : {"/pooling", "/v1/pooling"}) {
    s->server_->Post(path, [self](const httplib::Request& req, httplib::Response& res) {
      Handlers::Pooling(*self, req, res);
    });
  }
  s->server_->Get("/v1/models", [self](const httplib::Request& req, httplib::Response& res) {
    Handlers::Models(*self, req, res);
  });
  s->server_->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", kJsonType);
  });
  services::SetInternalErrorHandler(
      *s->server_, [](httplib::Response& res, const std::string& message) {
        SendError(res, 500, message, "server_error", "internal_error");
      });
  const JudgeServerOptions& o = s->options_;
  if (o.port == 0) {
    s->port_ = s->server_->bind_to_any_port(o.host);
  } else {
    s->port_ = s->server_->bind_to_port(o.host, o.port) ? o.port : -1;
  }
  if (s->port_ <= 0) {
    return absl::UnavailableError(absl::StrCat("spar-judge cannot bind ", o.host, ":", o.port));
  }
  s->thread_ = std::thread([self] { self->server_->listen_after_bind(); });
  // Stop() before the accept loop runs would be lost; wait until it runs (bounded).
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!s->server_->is_running()) {
    if (absl::Now() > deadline) {
      return absl::UnavailableError("spar-judge: HTTP server did not start within 10 s");
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
  return s;
}

std::string JudgeServer::base_url() const {
  bool v6 = options_.host.find(':') != std::string::npos;
  return absl::StrCat("http://", v6 ? "[" : "", options_.host, v6 ? "]" : "", ":", port_, "/v1");
}

void JudgeServer::Stop() {
  std::call_once(stop_once_, [this] {
    if (server_ == nullptr) return;
    if (thread_.joinable()) {
      // listen_after_bind may not have set is_running yet (Start's failure path); wait briefly.
      absl::Time deadline = absl::Now() + absl::Seconds(10);
      while (!server_->is_running() && absl::Now() < deadline)
        absl::SleepFor(absl::Milliseconds(1));
      server_->stop();
      thread_.join();
    }
  });
}

std::vector<nlohmann::json> JudgeServer::seen_requests() const {
  std::lock_guard<std::mutex> lock(seen_mu_);
  return seen_;
}

}  // namespace spar::judge
