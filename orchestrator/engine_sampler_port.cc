#include "orchestrator/engine_sampler_port.h"

#include <httplib.h>

#include <algorithm>
#include <optional>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/outside_text.h"
#include "common/status_macros.h"
#include "model/engine_prompt.h"
#include "nlohmann/json.hpp"
#include "orchestrator/internal/completion_stream.h"
#include "orchestrator/internal/engine_lease.h"
#include "orchestrator/internal/engine_process.h"

namespace spar::orchestrator {
namespace {

using nlohmann::json;

const std::set<std::string>& EngineKinds() {
  static const std::set<std::string> kinds = {"native", "openai", "vllm", "sglang", "spar"};
  return kinds;
}

struct Endpoint {
  std::string scheme_host_port;  // what httplib::Client takes
  std::string prefix;            // "" or "/v1"-less path prefix, no trailing slash
};

// http(s)://host[:port][/path]; a trailing /v1 is dropped (the port adds /v1/... itself).
absl::StatusOr<Endpoint> ParseUrl(const std::string& url) {
  absl::string_view rest = url;
  const bool https = absl::ConsumePrefix(&rest, "https://");
  if (!https && !absl::ConsumePrefix(&rest, "http://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampler_engine.url: must start with http:// or https://, got \"", url, "\""));
  }
  const size_t slash = rest.find('/');
  absl::string_view host = rest.substr(0, slash);
  std::string path(slash == absl::string_view::npos ? "" : rest.substr(slash));
  while (absl::EndsWith(path, "/")) path.pop_back();
  if (absl::EndsWith(path, "/v1")) path.resize(path.size() - 3);
  if (host.empty() || absl::StrContains(host, '@') || absl::StrContains(path, '?')) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sampler_engine.url: expected http(s)://host[:port][/path], got \"", url, "\""));
  }
  return Endpoint{absl::StrCat(https ? "https://" : "http://", host), path};
}

bool CanReload(const std::string& engine) { return engine == "spar" || engine == "sglang"; }

// The hand-off mode: "reload", "restart" or "none".
std::string HandoffMode(const EngineConfig& c) {
  if (!c.handoff.empty()) return c.handoff;
  if (CanReload(c.engine)) return "reload";
  return c.command.empty() ? "none" : "restart";
}

bool Retryable(int http_status) {
  return http_status == 0 || http_status == 408 || http_status == 429 || http_status >= 500;
}

class EngineSamplerPort final : public SamplerPort {
 public:
  EngineSamplerPort(EngineConfig config, Endpoint endpoint, metrics::Registry* registry)
      : config_(std::move(config)), endpoint_(std::move(endpoint)) {
    if (!config_.command.empty()) {
      process_ = std::make_unique<internal::EngineProcess>(config_.command);
    }
    if (registry != nullptr) {
      sync_seconds_ = &registry
                           ->AddHistogram("spar_sampler_weight_sync_seconds",
                                          "Hand-offs of a round's policy to the generation engine.",
                                          metrics::ExponentialBuckets(0.01, 2, 16))
                           .Add({{"engine", config_.engine}});
      retries_ = &registry
                      ->AddCounter("spar_sampler_engine_retries_total",
                                   "Engine requests retried after a connection error, 429 or 5xx.")
                      .Add({{"engine", config_.engine}});
      lease_waiting_ =
          &registry
               ->AddGauge("spar_sampler_engine_lease_waiting",
                          "Requests (a job's sample or eval stage) waiting for the engine while "
                          "it serves another policy.")
               .Add({{"engine", config_.engine}});
      lease_wait_seconds_ =
          &registry
               ->AddHistogram("spar_sampler_engine_lease_wait_seconds",
                              "Time a request waited for the engine to be free of other policies.",
                              metrics::ExponentialBuckets(0.01, 2, 20))
               .Add({{"engine", config_.engine}});
    }
  }

  absl::Status Generate(const v1::GenerateRequest& request,
                        const std::function<absl::Status(const v1::GenerateResponse&)>& on_result,
                        const CancelCheck& cancelled) override;

 private:
  absl::Status GenerateImpl(
      const v1::GenerateRequest& request,
      const std::function<absl::Status(const v1::GenerateResponse&)>& on_result,
      const CancelCheck& cancelled);
  std::unique_ptr<httplib::Client> Client() const;
  std::string EnginePath(const std::string& local) const;
  // "http://host:port/prefix/v1/models" for messages.
  std::string Where(const std::string& path) const {
    return absl::StrCat(endpoint_.scheme_host_port, endpoint_.prefix, path);
  }
  // GET (body empty) or POST JSON; the HTTP status (0 = no response) and the parsed body.
  absl::StatusOr<json> Call(const std::string& method, const std::string& path, const json& body,
                            int* http_status) const;
  absl::StatusOr<std::string> Serving() const;
  absl::Status EnsureServing(const std::string& engine_path);
  // Supervised engine: (re)starts it on `engine_path` and waits until it answers /v1/models.
  absl::Status StartEngine(const std::string& engine_path);
  absl::Status Reload(const std::string& engine_path);
  absl::StatusOr<std::string> ModelName() const;
  absl::Status SendRun(const v1::GenerateRequest& request,
                       const std::vector<model::EnginePrompt>& rendered, int64_t begin, int64_t end,
                       const std::string& model_name,
                       const std::function<absl::Status(v1::GenerateResponse)>& deliver,
                       const CancelCheck& cancelled, std::vector<int64_t>* pending);

  const EngineConfig config_;
  const Endpoint endpoint_;
  metrics::Histogram* sync_seconds_ = nullptr;
  metrics::Counter* retries_ = nullptr;
  metrics::Gauge* lease_waiting_ = nullptr;
  metrics::Histogram* lease_wait_seconds_ = nullptr;
  // One policy on the engine at a time, from its hand-off to its last request (issue 27: two
  // jobs on one engine sampled each other's policy while the lock covered the hand-off only).
  internal::EngineLease lease_;
  std::mutex sync_mu_;  // one hand-off at a time; guards process_
  std::unique_ptr<internal::EngineProcess> process_;
};

std::unique_ptr<httplib::Client> EngineSamplerPort::Client() const {
  auto cli = std::make_unique<httplib::Client>(endpoint_.scheme_host_port);
  const int64_t secs = std::max<int64_t>(1, absl::ToInt64Seconds(config_.timeout));
  cli->set_connection_timeout(10, 0);
  cli->set_read_timeout(secs, 0);
  cli->set_write_timeout(60, 0);
  if (!config_.api_key.empty()) cli->set_bearer_token_auth(config_.api_key.c_str());
  return cli;
}

std::string EngineSamplerPort::EnginePath(const std::string& local) const {
  const size_t eq = config_.path_map.find('=');
  if (eq == std::string::npos) return local;
  const std::string from = config_.path_map.substr(0, eq), to = config_.path_map.substr(eq + 1);
  return absl::StartsWith(local, from) ? absl::StrCat(to, local.substr(from.size())) : local;
}

absl::StatusOr<json> EngineSamplerPort::Call(const std::string& method, const std::string& path,
                                             const json& body, int* http_status) const {
  std::unique_ptr<httplib::Client> cli = Client();
  const std::string full = endpoint_.prefix + path;
  httplib::Result res = method == "GET"
                            ? cli->Get(full.c_str())
                            : cli->Post(full.c_str(), DumpJson(body), "application/json");
  *http_status = res ? res->status : 0;
  if (!res) {
    return absl::UnavailableError(
        absl::StrCat("engine ", Where(path), ": ", httplib::to_string(res.error())));
  }
  json out = json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (res->status != 200) {
    // The engine's own words, made safe: its key redacted (an engine may echo the request's
    // Authorization header), valid UTF-8 (a Latin-1 page, a body cut inside a character), short.
    const std::string raw = out.is_object() && out.contains("message") ? DumpJson(out["message"])
                            : out.is_object() && out.contains("error") ? DumpJson(out["error"])
                                                                       : res->body;
    const std::string msg = SafeOutsideText(raw, config_.api_key, 300);
    const absl::StatusCode code = Retryable(res->status) ? absl::StatusCode::kUnavailable
                                  : res->status == 401 || res->status == 403
                                      ? absl::StatusCode::kPermissionDenied
                                      : absl::StatusCode::kFailedPrecondition;
    return absl::Status(
        code, absl::StrCat("engine ", Where(path), " answered HTTP ", res->status, ": ", msg));
  }
  if (out.is_discarded()) {
    return absl::InternalError(absl::StrCat("engine ", Where(path), ": body is not JSON"));
  }
  return out;
}

// What the engine says it serves: a checkpoint path.
absl::StatusOr<std::string> EngineSamplerPort::Serving() const {
  int status = 0;
  if (config_.engine == "sglang") {
    SPAR_ASSIGN_OR_RETURN(json info, Call("GET", "/get_model_info", json(), &status));
    return info.value("model_path", "");
  }
  SPAR_ASSIGN_OR_RETURN(json models, Call("GET", "/v1/models", json(), &status));
  if (!models.contains("data") || !models["data"].is_array() || models["data"].empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("engine ", Where("/v1/models"), " lists no model"));
  }
  for (const json& m : models["data"]) {
    if (config_.served_model.empty() || m.value("id", "") == config_.served_model) {
      return m.value("root", "");
    }
  }
  return absl::FailedPreconditionError(
      absl::StrCat("engine ", config_.url, " does not serve \"", config_.served_model, "\""));
}

absl::StatusOr<std::string> EngineSamplerPort::ModelName() const {
  // SGLang renames its served model to the new path on every update: always ask it.
  if (!config_.served_model.empty() && config_.engine != "sglang") return config_.served_model;
  int status = 0;
  SPAR_ASSIGN_OR_RETURN(json models, Call("GET", "/v1/models", json(), &status));
  if (models.contains("data") && models["data"].is_array() && !models["data"].empty()) {
    return models["data"][0].value("id", "");
  }
  return absl::FailedPreconditionError(absl::StrCat("engine ", config_.url, " lists no model"));
}

absl::Status EngineSamplerPort::StartEngine(const std::string& engine_path) {
  SPAR_RETURN_IF_ERROR(process_->Start(engine_path));
  const absl::Time deadline = absl::Now() + config_.start_timeout;
  for (;;) {
    if (!process_->Running()) {
      return absl::UnavailableError(
          absl::StrCat("engine process (", config_.command[0],
                       ") ended before it served: ", process_->ExitDescription()));
    }
    int status = 0;
    if (Call("GET", "/v1/models", json(), &status).ok()) return absl::OkStatus();
    if (absl::Now() > deadline) {
      process_->Stop();
      return absl::UnavailableError(absl::StrCat(
          "engine process did not answer ", Where("/v1/models"), " within ",
          absl::FormatDuration(config_.start_timeout), " (sampler_engine.start_timeout_seconds)"));
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
}

absl::Status EngineSamplerPort::Reload(const std::string& engine_path) {
  int status = 0;
  SPAR_ASSIGN_OR_RETURN(json ack, Call("POST", "/update_weights_from_disk",
                                       json{{"model_path", engine_path}}, &status));
  if (!ack.value("success", false)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "engine ", config_.url, " refused the weight update to \"", engine_path,
        "\": ", SafeOutsideText(ack.value("message", DumpJson(ack)), config_.api_key)));
  }
  return absl::OkStatus();
}

absl::Status EngineSamplerPort::EnsureServing(const std::string& engine_path) {
  std::lock_guard<std::mutex> lock(sync_mu_);
  const absl::Time started = absl::Now();
  // A supervised engine that is not running (first hand-off, or it died) starts on the round's
  // checkpoint: that is the hand-off.
  std::string mode = HandoffMode(config_);
  if (process_ != nullptr && !process_->Running()) {
    SPAR_RETURN_IF_ERROR(StartEngine(engine_path));
    mode = "start";
  }
  SPAR_ASSIGN_OR_RETURN(std::string now, Serving());
  if (now == engine_path && mode != "start") return absl::OkStatus();
  if (mode == "none") {
    return absl::FailedPreconditionError(absl::StrCat(
        "engine ", config_.url, " serves \"", now, "\" but this round samples \"", engine_path,
        "\"; the ", config_.engine,
        " preset cannot reload weights over HTTP: give sampler_engine.command so Spar restarts "
        "the engine on each round's checkpoint, or use an engine with /update_weights_from_disk "
        "(sglang, spar)"));
  }
  if (now != engine_path) {
    SPAR_RETURN_IF_ERROR(mode == "reload" ? Reload(engine_path) : StartEngine(engine_path));
    SPAR_ASSIGN_OR_RETURN(now, Serving());
  }
  if (now != engine_path) {
    return absl::FailedPreconditionError(
        absl::StrCat("engine ", config_.url, " acknowledged the weight update to \"", engine_path,
                     "\" but serves \"", now, "\": refusing to sample from a stale policy"));
  }
  const double secs = absl::ToDoubleSeconds(absl::Now() - started);
  if (sync_seconds_ != nullptr) sync_seconds_->Observe(secs);
  SPAR_LOG(Info) << "engine " << config_.url << " now serves " << engine_path << " (" << mode
                 << ", " << secs << " s)";
  return absl::OkStatus();
}

}  // namespace
}  // namespace spar::orchestrator

namespace spar::orchestrator {
namespace {

absl::Status EngineSamplerPort::SendRun(
    const v1::GenerateRequest& request, const std::vector<model::EnginePrompt>& rendered,
    int64_t begin, int64_t end, const std::string& model_name,
    const std::function<absl::Status(v1::GenerateResponse)>& deliver, const CancelCheck& cancelled,
    std::vector<int64_t>* pending) {
  const v1::SamplingParams& p = request.params();
  const int k = p.has_num_samples() ? p.num_samples() : 1;
  json texts = json::array();
  std::vector<std::string> prompts;
  for (int64_t i = begin; i < end; ++i) {
    texts.push_back(rendered[i].text);
    prompts.push_back(request.prompts(i));
  }
  json body = {{"model", model_name},
               {"prompt", texts},
               {"n", k},
               {"temperature", p.has_temperature() ? p.temperature() : 1.0f},
               {"top_p", p.has_top_p() ? p.top_p() : 1.0f},
               {"max_tokens", p.has_max_new_tokens() ? p.max_new_tokens() : 8},
               {"seed", p.has_seed() ? p.seed() : 0},
               {"logprobs", 1},
               {"stream", true}};
  if (!rendered[begin].add_special_tokens) body["add_special_tokens"] = false;
  if (config_.engine == "spar") body["spar_first_index"] = request.first_index() + begin;
  if (config_.engine == "vllm") {
    // Token ids: choice.token_ids in newer releases, "token_id:<id>" log-prob tokens in older.
    body["return_token_ids"] = true;
    body["return_tokens_as_token_ids"] = true;
  }
  // SGLang: each streamed choice carries the token ids it adds (its log-prob tokens are texts).
  if (config_.engine == "sglang") body["return_token_ids"] = true;

  internal::CompletionStream stream(std::move(prompts), request.first_index() + begin, k, deliver);
  httplib::Request req;
  req.method = "POST";
  req.path = endpoint_.prefix + "/v1/completions";
  req.body = DumpJson(body);
  req.set_header("Content-Type", "application/json");
  req.set_header("Accept", "text/event-stream");
  int status = 0;
  bool was_cancelled = false;
  std::string error_body;
  req.response_handler = [&](const httplib::Response& r) {
    status = r.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    if (status != 200) {
      error_body.append(data, len);
      return error_body.size() < (1u << 20);
    }
    if (cancelled && cancelled()) {
      was_cancelled = true;
      return false;
    }
    return stream.Feed(data, len).ok();
  };
  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  const bool sent = Client()->send(req, res, err);
  for (int64_t i : stream.Pending()) pending->push_back(begin + i);
  if (was_cancelled) return absl::CancelledError("sampling cancelled");
  if (!stream.status().ok()) return stream.status();
  const std::string where = absl::StrCat("engine ", Where("/v1/completions"));
  if (status != 0 && status != 200) {
    const absl::StatusCode code = Retryable(status) ? absl::StatusCode::kUnavailable
                                  : status == 401 || status == 403
                                      ? absl::StatusCode::kPermissionDenied
                                      : absl::StatusCode::kFailedPrecondition;
    return absl::Status(
        code, absl::StrCat(where, " answered HTTP ", status, ": ", error_body.substr(0, 500)));
  }
  if (!sent) return absl::UnavailableError(absl::StrCat(where, ": ", httplib::to_string(err)));
  if (!stream.done() || !pending->empty()) {
    const std::string aborted =
        stream.aborted() > 0
            ? absl::StrCat(" (", stream.aborted(),
                           " with a choice the engine aborted: finish_reason other than stop / "
                           "length; asked again, never kept)")
            : "";
    return absl::UnavailableError(absl::StrCat(where, ": the stream ended with ", pending->size(),
                                               " of ", end - begin, " prompts unanswered",
                                               aborted));
  }
  return absl::OkStatus();
}

// Contiguous runs [begin, end) of sorted positions.
std::vector<std::pair<int64_t, int64_t>> Runs(const std::vector<int64_t>& positions) {
  std::vector<std::pair<int64_t, int64_t>> runs;
  for (int64_t i : positions) {
    if (!runs.empty() && runs.back().second == i) {
      ++runs.back().second;
    } else {
      runs.emplace_back(i, i + 1);
    }
  }
  return runs;
}

absl::Status EngineSamplerPort::Generate(
    const v1::GenerateRequest& request,
    const std::function<absl::Status(const v1::GenerateResponse&)>& on_result,
    const CancelCheck& cancelled) {
  // An engine's answer with a field of the wrong type ("root": null, ...) is an error, never an
  // exception out of the port. Whatever the engine wrote into an error leaves the port through
  // the one redaction for outside text (its key out, valid UTF-8).
  absl::Status st;
  try {
    st = GenerateImpl(request, on_result, cancelled);
  } catch (const json::exception& e) {
    st = absl::InternalError(
        absl::StrCat("engine ", config_.url, " sent unexpected JSON: ", e.what()));
  }
  if (st.ok()) return st;
  return absl::Status(st.code(), SafeOutsideText(st.message(), config_.api_key, 2000));
}

absl::Status EngineSamplerPort::GenerateImpl(
    const v1::GenerateRequest& request,
    const std::function<absl::Status(const v1::GenerateResponse&)>& on_result,
    const CancelCheck& cancelled) {
  const int64_t n = request.prompts_size();
  if (n == 0) return absl::InvalidArgumentError("prompts is empty");
  SPAR_ASSIGN_OR_RETURN(
      model::EnginePromptRenderer renderer,
      model::EnginePromptRenderer::ForCheckpoint(request.policy(), request.chat_template()));
  std::vector<model::EnginePrompt> rendered;
  for (const std::string& prompt : request.prompts()) {
    SPAR_ASSIGN_OR_RETURN(model::EnginePrompt r, renderer.Render(prompt));
    rendered.push_back(std::move(r));
  }
  const std::string engine_path = EnginePath(request.policy());
  const absl::Time asked = absl::Now();
  if (lease_waiting_ != nullptr) lease_waiting_->Increment();
  absl::StatusOr<internal::EngineLease::Holder> hold = lease_.Acquire(engine_path, cancelled);
  if (lease_waiting_ != nullptr) lease_waiting_->Decrement();
  SPAR_RETURN_IF_ERROR(hold.status());
  if (lease_wait_seconds_ != nullptr) {
    lease_wait_seconds_->Observe(absl::ToDoubleSeconds(absl::Now() - asked));
  }
  SPAR_RETURN_IF_ERROR(EnsureServing(engine_path));
  SPAR_ASSIGN_OR_RETURN(std::string model_name, ModelName());
  bool caller_failed = false;  // the caller's error ends the call as is, never retried
  auto deliver = [&](v1::GenerateResponse r) {
    absl::Status st = on_result(r);
    caller_failed = caller_failed || !st.ok();
    return st;
  };
  // Request boundaries sit at multiples of prompts_per_request in the global prompt index, as the
  // native sampler's batches do (at multiples of max_batch_size / K): with prompts_per_request a
  // multiple of that, every prompt is computed in the same batch and the log-probs are identical.
  const int64_t per = config_.prompts_per_request;
  for (int64_t begin = 0, end = 0; begin < n; begin = end) {
    end = std::min<int64_t>(n, begin + per - (request.first_index() + begin) % per);
    std::vector<std::pair<int64_t, int64_t>> runs = {{begin, end}};
    for (int attempt = 1;; ++attempt) {
      std::vector<int64_t> pending;
      absl::Status st;
      for (size_t r = 0; r < runs.size(); ++r) {
        if (!st.ok()) {
          for (int64_t i = runs[r].first; i < runs[r].second; ++i) pending.push_back(i);
          continue;
        }
        st = SendRun(request, rendered, runs[r].first, runs[r].second, model_name, deliver,
                     cancelled, &pending);
      }
      if (st.ok() || caller_failed) {
        if (!st.ok()) return st;
        break;
      }
      if (cancelled && cancelled()) return absl::CancelledError("sampling cancelled");
      if (!absl::IsUnavailable(st) || attempt >= config_.max_attempts) return st;
      if (retries_ != nullptr) retries_->Increment();
      SPAR_LOG(Warning) << "engine request failed (attempt " << attempt << " of "
                        << config_.max_attempts << "): " << st.message() << "; retrying "
                        << pending.size() << " prompts";
      absl::SleepFor(
          std::min(absl::Milliseconds(250) * (1 << std::min(attempt, 5)), absl::Seconds(8)));
      // A restarted engine may serve another checkpoint (or none): hand off again first.
      absl::Status sync = EnsureServing(engine_path);
      if (!sync.ok() && !absl::IsUnavailable(sync)) return sync;
      std::sort(pending.begin(), pending.end());
      runs = Runs(pending);
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Validate(const EngineConfig& c) {
  if (EngineKinds().count(c.engine) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampler_engine.engine: \"", c.engine,
                     "\" is not one of native, openai, vllm, sglang, spar"));
  }
  if (c.engine == "native") return absl::OkStatus();
  SPAR_RETURN_IF_ERROR(ParseUrl(c.url).status());
  if (c.prompts_per_request < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sampler_engine.prompts_per_request: must be >= 1, got ", c.prompts_per_request));
  }
  if (c.max_attempts < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampler_engine.max_attempts: must be >= 1, got ", c.max_attempts));
  }
  if (c.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("sampler_engine.timeout_seconds: must be > 0");
  }
  if (!c.handoff.empty() && c.handoff != "reload" && c.handoff != "restart") {
    return absl::InvalidArgumentError(
        absl::StrCat("sampler_engine.handoff: \"", c.handoff, "\" is not one of reload, restart"));
  }
  if (c.handoff == "reload" && !CanReload(c.engine)) {
    return absl::InvalidArgumentError(absl::StrCat("sampler_engine.handoff: the ", c.engine,
                                                   " preset cannot reload weights over HTTP; use "
                                                   "restart with sampler_engine.command"));
  }
  if (c.handoff == "restart" && c.command.empty()) {
    return absl::InvalidArgumentError(
        "sampler_engine.handoff: restart needs sampler_engine.command (the engine to supervise)");
  }
  if (c.start_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("sampler_engine.start_timeout_seconds: must be > 0");
  }
  if (!c.path_map.empty() &&
      (c.path_map.find('=') == std::string::npos || c.path_map.front() == '=')) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampler_engine.path_map: expected FROM=TO, got \"", c.path_map, "\""));
  }
  return absl::OkStatus();
}

std::unique_ptr<SamplerPort> MakeEngineSamplerPort(const EngineConfig& config,
                                                   metrics::Registry* registry) {
  absl::StatusOr<Endpoint> endpoint = ParseUrl(config.url);
  return std::make_unique<EngineSamplerPort>(config, endpoint.ok() ? *endpoint : Endpoint{},
                                             registry);
}

}  // namespace spar::orchestrator
