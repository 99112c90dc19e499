// Spar's sampler behind the OpenAI-compatible HTTP API that generation engines speak
// (`spar serve --role=sampler --http_port=N`), so the orchestrator's engine backend
// (orchestrator/engine_sampler_port.h) drives Spar exactly as it drives vLLM or SGLang:
//   GET  /v1/models                 the served model: id (served_model_name), root (the checkpoint
//                                   directory now served; "" before the first load)
//   POST /v1/completions            completions_codec.h; "stream": true answers server-sent
//                                   events, one per prompt as its samples are done, then [DONE]
//   POST /update_weights_from_disk  {"model_path": DIR} (SGLang's endpoint): loads DIR and
//                                   serves it from then on; {"success", "message"}
//   GET  /health                    200 once listening
// Paths are confined like the gRPC service's (data root, runs dir); with an api_token every
// endpoint but /health needs "Authorization: Bearer <token>", checked on the headers before any
// body is read. Bodies are limited (max_body_bytes), reading a request has a whole-request
// deadline, and a generation whose client has gone stops. Errors are OpenAI error bodies naming
// the field. Metrics: spar_sampler_http_requests_total{endpoint,code}. Thread-safe; Stop
// (or the destructor) ends in-flight streams and joins the server.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/metrics/registry.h"
#include "sampler/sampler.h"
#include "services/common/access.h"

namespace spar::services {

struct SamplerHttpOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0 = any free port (see port())
  std::string served_model_name = "spar-policy";
  int threads = 8;  // concurrent HTTP requests (generation itself is serialized by the Sampler)
  // Reading one request (headers and body) may take at most this long; a slower connection is
  // cut (services/common/connection_watch.h). Answers take as long as generation needs.
  absl::Duration request_deadline = absl::Seconds(30);
  // The largest request body; a longer one is refused (413) without being kept in memory.
  size_t max_body_bytes = size_t{64} << 20;
  // Loaded and served before the server listens ("" = nothing until /update_weights_from_disk),
  // as `vllm serve MODEL` does: an engine Spar supervises starts on the round's checkpoint.
  std::string initial_policy;
};

class SamplerHttpServer {
 public:
  static absl::StatusOr<std::unique_ptr<SamplerHttpServer>> Start(sampler::Sampler& sampler,
                                                                  metrics::Registry& registry,
                                                                  AccessPolicy access,
                                                                  SamplerHttpOptions options);
  ~SamplerHttpServer();
  int port() const;
  // The checkpoint directory served now ("" before the first update).
  std::string served_policy() const;
  void Stop();

  struct Impl;

 private:
  explicit SamplerHttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace spar::services
