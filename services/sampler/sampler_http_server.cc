#include "services/sampler/sampler_http_server.h"

#include <httplib.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "services/common/auth.h"
#include "services/common/connection_watch.h"
#include "services/common/http_exception.h"
#include "services/sampler/completions_codec.h"

namespace spar::services {
namespace {

using nlohmann::json;
constexpr char kJson[] = "application/json";

}  // namespace

struct SamplerHttpServer::Impl {
  sampler::Sampler& sampler;
  metrics::Registry& registry;
  AccessPolicy access;
  SamplerHttpOptions options;
  httplib::Server server;
  std::unique_ptr<ConnectionWatch> watch;  // from Start, once the port is known
  std::thread thread;
  int port = 0;
  std::once_flag stop_once;
  std::atomic<bool> stopping{false};
  mutable std::mutex mu;
  std::string served;   // guarded by mu
  int64_t next_id = 0;  // guarded by mu

  metrics::Family<metrics::Counter>& requests;
  metrics::Counter& cut;
  metrics::Counter& abandoned;

  Impl(sampler::Sampler& s, metrics::Registry& r, AccessPolicy a, SamplerHttpOptions o)
      : sampler(s),
        registry(r),
        access(std::move(a)),
        options(std::move(o)),
        requests(r.AddCounter(
            "spar_sampler_http_requests_total",
            "Requests to the sampler's OpenAI-compatible HTTP API, by endpoint and code.")),
        cut(r.AddCounter("spar_sampler_http_connections_cut_total",
                         "Connections cut because a request was not read within the request "
                         "deadline (a client sending too slowly).")
                .Add({})),
        abandoned(r.AddCounter("spar_sampler_http_abandoned_total",
                               "Generations stopped because their client closed the connection.")
                      .Add({})) {}

  void Count(const char* endpoint, int code) {
    requests.Add({{"endpoint", endpoint}, {"code", absl::StrCat(code)}}).Increment();
  }

  void Reply(httplib::Response& res, const char* endpoint, const absl::Status& st) {
    res.status = HttpStatusFor(st);
    res.set_content(DumpJson(ErrorJson(st)), kJson);
    Count(endpoint, res.status);
  }

  // OK, or UNAUTHENTICATED / PERMISSION_DENIED as the gRPC services answer.
  absl::Status Authorize(const httplib::Request& req) const {
    if (access.api_token.empty()) return absl::OkStatus();
    const std::string header = req.get_header_value("Authorization");
    if (!absl::StartsWith(header, "Bearer ")) {
      return absl::UnauthenticatedError("missing Authorization: Bearer header");
    }
    if (!ConstantTimeEquals(header.substr(7), access.api_token)) {
      return absl::PermissionDeniedError("wrong bearer token");
    }
    return absl::OkStatus();
  }

  std::string Served() const {
    std::lock_guard<std::mutex> lock(mu);
    return served;
  }

  void Models(httplib::Response& res) {
    json model = {{"id", options.served_model_name},
                  {"object", "model"},
                  {"created", 0},
                  {"owned_by", "spar"},
                  {"root", Served()},
                  {"parent", nullptr}};
    res.set_content(DumpJson(json{{"object", "list"}, {"data", json::array({model})}}), kJson);
    Count("models", 200);
  }

  void UpdateWeights(const httplib::Request& req, httplib::Response& res) {
    json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    const bool named =
        body.is_object() && body.contains("model_path") && body["model_path"].is_string();
    absl::StatusOr<std::string> path =
        named
            ? access.Confine(body["model_path"].get<std::string>(), "model_path")
            : absl::InvalidArgumentError("model_path: a checkpoint directory (string) is required");
    const absl::Status err = path.ok() ? sampler.LoadPolicy(*path) : path.status();
    if (!err.ok()) {
      res.status = HttpStatusFor(err);
      res.set_content(DumpJson(json{{"success", false}, {"message", std::string(err.message())}}),
                      kJson);
      Count("update_weights_from_disk", res.status);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      served = *path;
    }
    SPAR_LOG(Info) << "sampler http: now serving " << *path;
    res.set_content(DumpJson(json{{"success", true},
                                  {"message", absl::StrCat("serving ", *path)},
                                  {"num_paused_requests", 0}}),
                    kJson);
    Count("update_weights_from_disk", 200);
  }

  // The request's policy: the served checkpoint, when `model` names it or the served model.
  absl::StatusOr<std::string> PolicyFor(const CompletionRequest& r) const {
    const std::string now = Served();
    if (now.empty()) {
      return absl::UnavailableError(
          "no policy loaded yet: POST /update_weights_from_disk {\"model_path\": DIR} first");
    }
    if (!r.model.empty() && r.model != options.served_model_name && r.model != now) {
      return absl::NotFoundError(absl::StrCat("model: \"", r.model, "\" is not served here (",
                                              options.served_model_name, " = ", now, ")"));
    }
    return now;
  }

  json Envelope(const std::string& id) const {
    return {{"id", id},
            {"object", "text_completion"},
            {"created", absl::ToUnixSeconds(absl::Now())},
            {"model", options.served_model_name}};
  }

  void Completions(const httplib::Request& req, httplib::Response& res);
  void Stream(CompletionRequest r, std::string policy, std::string id, std::string peer,
              httplib::Response& res);
  // The endpoint's name in spar_sampler_http_requests_total.
  static const char* Endpoint(const std::string& path);
  // Before any body is read: the token (every endpoint but /health). Handled = refused.
  httplib::Server::HandlerResponse PreRouting(const httplib::Request& req, httplib::Response& res);
};

void SamplerHttpServer::Impl::Completions(const httplib::Request& req, httplib::Response& res) {
  absl::StatusOr<CompletionRequest> r = ParseCompletionRequest(req.body);
  if (!r.ok()) return Reply(res, "completions", r.status());
  absl::StatusOr<std::string> policy = PolicyFor(*r);
  if (!policy.ok()) return Reply(res, "completions", policy.status());
  std::string id;
  {
    std::lock_guard<std::mutex> lock(mu);
    id = absl::StrCat("cmpl-spar-", next_id++);
  }
  const std::string peer = ConnectionWatch::Peer(req.remote_addr, req.remote_port);
  if (r->stream) return Stream(*std::move(r), *policy, id, peer, res);
  json choices = json::array();
  int64_t prompt_tokens = 0, completion_tokens = 0;
  absl::Status st =
      sampler.Generate(*policy, r->prompts, r->params, [&](sampler::PromptSamples ps) {
        prompt_tokens += ps.prompt_tokens;
        for (const sampler::SampleOut& s : ps.samples) completion_tokens += s.token_ids.size();
        for (json& c : ChoicesJson(ps, ps.index, r->logprobs)) choices.push_back(std::move(c));
        return !stopping.load() && !watch->PeerGone(peer);  // a client that left stops the work
      });
  if (watch->PeerGone(peer)) {
    abandoned.Increment();
    SPAR_LOG(Warning) << "sampler http: " << peer << " left; its generation stopped";
    return;
  }
  if (!st.ok()) return Reply(res, "completions", st);
  json out = Envelope(id);
  out["choices"] = std::move(choices);
  out["usage"] = {{"prompt_tokens", prompt_tokens},
                  {"completion_tokens", completion_tokens},
                  {"total_tokens", prompt_tokens + completion_tokens}};
  res.set_content(DumpJson(out), kJson);
  Count("completions", 200);
}

const char* SamplerHttpServer::Impl::Endpoint(const std::string& path) {
  if (path == "/v1/completions") return "completions";
  if (path == "/v1/models") return "models";
  if (path == "/update_weights_from_disk") return "update_weights_from_disk";
  return "other";
}

httplib::Server::HandlerResponse SamplerHttpServer::Impl::PreRouting(const httplib::Request& req,
                                                                     httplib::Response& res) {
  if (req.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
  absl::Status st = Authorize(req);
  if (st.ok()) return httplib::Server::HandlerResponse::Unhandled;
  Reply(res, Endpoint(req.path), st);
  res.set_header("Connection", "close");  // its body, if any, is never read
  return httplib::Server::HandlerResponse::Handled;
}

void SamplerHttpServer::Impl::Stream(CompletionRequest r, std::string policy, std::string id,
                                     std::string peer, httplib::Response& res) {
  Count("completions", 200);  // the status line is sent before generation starts
  res.set_chunked_content_provider(
      "text/event-stream", [this, r = std::move(r), policy = std::move(policy), id = std::move(id),
                            peer = std::move(peer)](size_t /*offset*/, httplib::DataSink& sink) {
        ConnectionWatch::Busy busy(watch.get(), peer);  // generating: not a slow request
        auto event = [&](const json& j) {
          const std::string line = absl::StrCat("data: ", DumpJson(j), "\n\n");
          return sink.is_writable() && sink.write(line.data(), line.size());
        };
        int64_t prompt_tokens = 0, completion_tokens = 0;
        absl::Status st =
            sampler.Generate(policy, r.prompts, r.params, [&](sampler::PromptSamples ps) {
              prompt_tokens += ps.prompt_tokens;
              for (const sampler::SampleOut& s : ps.samples)
                completion_tokens += s.token_ids.size();
              json chunk = Envelope(id);
              chunk["choices"] = ChoicesJson(ps, ps.index, r.logprobs);
              return !stopping.load() && !watch->PeerGone(peer) && event(chunk);
            });
        if (watch->PeerGone(peer)) abandoned.Increment();
        if (!st.ok()) {
          // Mid-stream errors go out as an error event (the status line is already sent).
          if (!absl::IsCancelled(st)) event(ErrorJson(st));
          sink.done();
          return true;
        }
        if (r.include_usage) {
          json chunk = Envelope(id);
          chunk["choices"] = json::array();
          chunk["usage"] = {{"prompt_tokens", prompt_tokens},
                            {"completion_tokens", completion_tokens},
                            {"total_tokens", prompt_tokens + completion_tokens}};
          event(chunk);
        }
        static constexpr char kDone[] = "data: [DONE]\n\n";
        if (sink.is_writable()) sink.write(kDone, sizeof(kDone) - 1);
        sink.done();
        return true;
      });
}

SamplerHttpServer::SamplerHttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SamplerHttpServer::~SamplerHttpServer() { Stop(); }

absl::StatusOr<std::unique_ptr<SamplerHttpServer>> SamplerHttpServer::Start(
    sampler::Sampler& sampler, metrics::Registry& registry, AccessPolicy access,
    SamplerHttpOptions options) {
  if (options.threads < 1) {
    return absl::InvalidArgumentError(absl::StrCat("threads must be >= 1, got ", options.threads));
  }
  auto impl = std::make_unique<Impl>(sampler, registry, std::move(access), std::move(options));
  Impl* self = impl.get();
  httplib::Server& srv = impl->server;
  const int threads = self->options.threads;
  srv.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  srv.set_tcp_nodelay(true);
  srv.set_payload_max_length(self->options.max_body_bytes);
  srv.set_pre_routing_handler(
      [self](const httplib::Request& q, httplib::Response& s) { return self->PreRouting(q, s); });
  // Every handler holds its connection busy: the whole-request deadline covers reading only.
  auto serve = [self](void (*fn)(Impl*, const httplib::Request&, httplib::Response&)) {
    return [self, fn](const httplib::Request& q, httplib::Response& s) {
      ConnectionWatch::Busy busy(self->watch.get(),
                                 ConnectionWatch::Peer(q.remote_addr, q.remote_port));
      fn(self, q, s);
    };
  };
  srv.Get("/v1/models",
          serve([](Impl* i, const httplib::Request&, httplib::Response& s) { i->Models(s); }));
  srv.Post("/v1/completions", serve([](Impl* i, const httplib::Request& q, httplib::Response& s) {
             i->Completions(q, s);
           }));
  srv.Post("/update_weights_from_disk",
           serve([](Impl* i, const httplib::Request& q, httplib::Response& s) {
             i->UpdateWeights(q, s);
           }));
  srv.Get("/health", [](const httplib::Request&, httplib::Response& s) {
    s.set_content(R"({"status":"ok"})", kJson);
  });
  services::SetInternalErrorHandler(srv,
                                    [self](httplib::Response& res, const std::string& message) {
                                      self->Reply(res, "error", absl::InternalError(message));
                                    });
  const SamplerHttpOptions& o = self->options;
  if (!o.initial_policy.empty()) {
    SPAR_ASSIGN_OR_RETURN(std::string path, self->access.Confine(o.initial_policy, "http_policy"));
    SPAR_RETURN_IF_ERROR(sampler.LoadPolicy(path));
    self->served = path;
  }
  impl->port =
      o.port == 0 ? srv.bind_to_any_port(o.host) : (srv.bind_to_port(o.host, o.port) ? o.port : -1);
  if (impl->port <= 0) {
    return absl::UnavailableError(absl::StrCat("sampler http: cannot bind ", o.host, ":", o.port));
  }
  impl->watch = std::make_unique<ConnectionWatch>(ConnectionWatch::Options{
      impl->port, o.request_deadline, absl::Milliseconds(200), [self] { self->cut.Increment(); }});
  impl->thread = std::thread([self] { self->server.listen_after_bind(); });
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!srv.is_running()) {
    if (absl::Now() > deadline)
      return absl::UnavailableError("sampler http: did not start in 10 s");
    absl::SleepFor(absl::Milliseconds(1));
  }
  SPAR_LOG(Info) << "sampler http: OpenAI-compatible API on " << o.host << ":" << impl->port
                 << " (model " << o.served_model_name << ")";
  return std::unique_ptr<SamplerHttpServer>(new SamplerHttpServer(std::move(impl)));
}

int SamplerHttpServer::port() const { return impl_->port; }
std::string SamplerHttpServer::served_policy() const { return impl_->Served(); }

void SamplerHttpServer::Stop() {
  std::call_once(impl_->stop_once, [this] {
    impl_->stopping = true;
    if (impl_->thread.joinable()) {
      impl_->server.stop();
      impl_->thread.join();
    }
  });
}

}  // namespace spar::services
