// The sample stage through an engine (issue 14 item 5): tokens/s of the engine backend
// (orchestrator/engine_sampler_port.h, preset spar: Spar's sampler behind its OpenAI-compatible
// HTTP API) against the native gRPC sampler on the same model and request, measured in the same
// run, and the hand-off time of a new checkpoint (POST /update_weights_from_disk, then the check
// of what the engine serves). The engine/native ratio shows the HTTP + JSON + SSE overhead; both
// paths compute the same samples. On a GPU host, spar_gpu_bench gives the native CUDA sampler's
// decode tokens/s at batch 64/256 next to the HBM bound.
//   spar_engine_bench [--prompts=64] [--samples=4] [--max_new_tokens=32] [--repeats=3]
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/metrics/registry.h"
#include "model/byte_tokenizer.h"
#include "model/policy.h"
#include "orchestrator/engine_sampler_port.h"
#include "orchestrator/grpc_ports.h"
#include "services/app/app.h"
#include "services/common/server_runner.h"

namespace {

using spar::JoinPath;

int Flag(int argc, char** argv, const char* name, int fallback) {
  const size_t n = std::strlen(name);
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], name, n) == 0 && argv[i][n] == '=') return std::atoi(argv[i] + n + 1);
  }
  return fallback;
}

std::string SavePolicy(const std::string& dir, uint64_t seed) {
  spar::model::LlamaConfig c;
  c.vocab_size = spar::model::ByteTokenizer::kVocabSize;
  c.hidden_size = 256;
  c.intermediate_size = 704;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 512;
  auto p = spar::model::Policy::CreateRandom(c, seed);
  if (!p.ok() || !(*p)->Save(dir).ok()) {
    std::fprintf(stderr, "cannot write %s\n", dir.c_str());
    std::exit(1);
  }
  return dir;
}

// Parameters of SavePolicy's model (byte vocabulary, untied embeddings).
double Params() {
  const double v = spar::model::ByteTokenizer::kVocabSize, h = 256, f = 704, layers = 4;
  const double kv = h / 4 * 2;  // 2 key-value heads of 64
  return 2 * v * h + layers * (h * h * 2 + h * kv * 2 + 3 * h * f + 2 * h) + h;
}

// Wall seconds and response tokens of one Generate call.
std::pair<double, int64_t> Time(spar::orchestrator::SamplerPort& port,
                                const spar::v1::GenerateRequest& req) {
  int64_t tokens = 0;
  const absl::Time t0 = absl::Now();
  absl::Status st = port.Generate(
      req,
      [&](const spar::v1::GenerateResponse& r) {
        for (const auto& s : r.samples()) tokens += s.token_ids_size();
        return absl::OkStatus();
      },
      nullptr);
  if (!st.ok()) {
    std::fprintf(stderr, "generate: %s\n", std::string(st.message()).c_str());
    std::exit(1);
  }
  return {absl::ToDoubleSeconds(absl::Now() - t0), tokens};
}

}  // namespace

int main(int argc, char** argv) {
  const int prompts = Flag(argc, argv, "--prompts", 64);
  const int samples = Flag(argc, argv, "--samples", 4);
  const int max_new = Flag(argc, argv, "--max_new_tokens", 32);
  const int repeats = Flag(argc, argv, "--repeats", 3);
  char tmpl[] = "/tmp/spar_engine_bench_XXXXXX";
  const std::string root = mkdtemp(tmpl);
  const std::string a = SavePolicy(JoinPath(root, "a"), 1);
  spar::services::AppConfig ac;
  ac.roles = {"sampler"};
  ac.data_root = root;
  ac.runs_dir = JoinPath(root, "runs");
  ac.metrics_port = -1;
  ac.sampler_http_port = 0;
  auto app = spar::services::App::Start(ac);
  if (!app.ok()) {
    std::fprintf(stderr, "%s\n", std::string(app.status().message()).c_str());
    return 1;
  }
  spar::orchestrator::GrpcPortsConfig pc;
  auto native =
      spar::orchestrator::MakeGrpcSamplerPort(spar::services::MakeChannel((*app)->address()), pc);
  spar::orchestrator::EngineConfig ec;
  ec.engine = "spar";
  ec.url = absl::StrCat("http://127.0.0.1:", (*app)->sampler_http_port(), "/v1");
  spar::metrics::Registry registry;
  auto engine = spar::orchestrator::MakeEngineSamplerPort(ec, &registry);

  spar::v1::GenerateRequest req;
  req.set_policy(a);
  for (int i = 0; i < prompts; ++i) req.add_prompts(absl::StrCat(i % 90 + 10, "+", i % 7 + 3, "="));
  req.mutable_params()->set_num_samples(samples);
  req.mutable_params()->set_max_new_tokens(max_new);
  req.mutable_params()->set_temperature(1.0f);
  req.mutable_params()->set_seed(7);
  Time(*native, req);  // warm-up: loads the policy, first allocations
  Time(*engine, req);  // warm-up and the first hand-off
  double native_s = 0, engine_s = 0;
  int64_t native_tok = 0, engine_tok = 0;
  for (int r = 0; r < repeats; ++r) {
    auto [ns, nt] = Time(*native, req);
    auto [es, et] = Time(*engine, req);
    native_s += ns, native_tok += nt, engine_s += es, engine_tok += et;
  }
  // Hand-offs: a new checkpoint each time (not in the sampler's policy cache), so every Generate
  // of one prompt pays a reload from disk + the check of what the engine serves.
  spar::v1::GenerateRequest one = req;
  one.clear_prompts();
  one.add_prompts("1+1=");
  one.mutable_params()->set_max_new_tokens(1);
  one.mutable_params()->set_num_samples(1);
  double handoff_s = 0;
  const int handoffs = 4;
  for (int h = 0; h < handoffs; ++h) {
    one.set_policy(SavePolicy(JoinPath(root, absl::StrCat("handoff-", h)), 10 + h));
    handoff_s += Time(*engine, one).first;
  }
  const double native_tps = native_tok / native_s, engine_tps = engine_tok / engine_s;
  std::printf(
      "sample stage: %d prompts x K=%d, max_new_tokens %d, 4-layer 256-wide byte model, "
      "%d repeats (CPU)\n",
      prompts, samples, max_new, repeats);
  std::printf("%-22s %10s %10s %8s\n", "path", "tok/s", "s/call", "ratio");
  std::printf("%-22s %10.0f %10.3f %8s\n", "native gRPC", native_tps, native_s / repeats, "1.00");
  std::printf("%-22s %10.0f %10.3f %8.2f\n", "engine (HTTP, spar)", engine_tps, engine_s / repeats,
              engine_tps / native_tps);
  std::printf(
      "hand-off (reload from disk + check + 1-token call): %.3f s per checkpoint (%d, "
      "%.1f M parameters)\n",
      handoff_s / handoffs, handoffs, Params() / 1e6);
  std::printf(
      "{\"bench\":\"engine\",\"native_tokens_per_s\":%.1f,\"engine_tokens_per_s\":%.1f,"
      "\"engine_over_native\":%.3f,\"handoff_s\":%.4f}\n",
      native_tps, engine_tps, engine_tps / native_tps, handoff_s / handoffs);
  (*app)->Shutdown();
  spar::RemoveAll(root).IgnoreError();
  return 0;
}
