// Decode throughput of the Llama decoder (KV cache, one token per step) at batch 1, 8 and 64 for
// a few model sizes, printed beside two roofline bounds and as ratios to them:
//   memory bound  = B * BW / (weight bytes + KV-cache bytes)   tokens/s (each step reads all
//                   weights once and the whole cache),
//   compute bound = FLOPS / (2 * params + attention FLOPs per token)   tokens/s.
// BW is measured on this machine as the rate of a large tensor copy (bytes read + bytes written,
// 256 MiB source, best of 5); FLOPS as the rate of a 1024^3 float32 matmul (best of 5). Both use
// the same LibTorch/thread settings as the model. Usage: spar_model_bench [--steps=32]
// spar_model_bench --load_rss=DIR writes a ~110M-parameter float32 checkpoint to DIR and prints
// the peak RSS of loading it with Policy::Load (memory-mapped) and with the former read-into-memory
// loader, each in a fresh process.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/blas_kernel.h"
#include "common/file_util.h"
#include "model/internal/llama.h"
#include "model/llama_config.h"
#include "model/policy.h"
#include "model/safetensors.h"

namespace {

using Clock = std::chrono::steady_clock;
using spar::model::LlamaConfig;
namespace internal = spar::model::internal;

double Seconds(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double MeasureBandwidth() {
  torch::Tensor src = torch::rand({64 << 20}, torch::kFloat32);  // 256 MiB
  torch::Tensor dst = torch::empty_like(src);
  dst.copy_(src);
  double best = 1e30;
  for (int i = 0; i < 5; ++i) {
    auto t = Clock::now();
    dst.copy_(src);
    best = std::min(best, Seconds(t));
  }
  return 2.0 * src.numel() * sizeof(float) / best;
}

double MeasureFlops() {
  const int64_t n = 1024;
  torch::Tensor a = torch::rand({n, n}), b = torch::rand({n, n});
  torch::Tensor c = torch::matmul(a, b);
  double best = 1e30;
  for (int i = 0; i < 5; ++i) {
    auto t = Clock::now();
    c = torch::matmul(a, b);
    best = std::min(best, Seconds(t));
  }
  return 2.0 * n * n * n / best;
}

struct Size {
  const char* name;
  int64_t hidden, layers, heads, kv_heads, intermediate, vocab;
};

// ---- load_rss: peak resident memory of loading a checkpoint ----
// Peak (VmHWM) and current anonymous (RssAnon) resident memory of this process, MiB.
void PrintRss(const char* what, double seconds) {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  char line[256];
  double hwm = 0, anon = 0;
  while (f != nullptr && std::fgets(line, sizeof(line), f) != nullptr) {
    if (std::strncmp(line, "VmHWM:", 6) == 0) hwm = std::atof(line + 6) / 1024;
    if (std::strncmp(line, "RssAnon:", 8) == 0) anon = std::atof(line + 8) / 1024;
  }
  if (f != nullptr) std::fclose(f);
  std::printf("%-44s peak RSS %8.1f MiB, anonymous RSS after %8.1f MiB, %.2f s\n", what, hwm, anon,
              seconds);
}

// Loads `dir` in a fresh process (spawned by --load_rss) and prints its peak RSS.
//   mmap: model::Policy::Load (memory-mapped safetensors, pages released tensor by tensor);
//   read: the loader before memory mapping, emulated: every file read into memory
//         (SafetensorsFile::Parse(ReadFile)), then each tensor converted into the module.
int LoadChild(const std::string& dir, const std::string& mode) {
  auto t = Clock::now();
  if (mode == "mmap") {
    auto policy = spar::model::Policy::Load(dir);
    if (!policy.ok()) {
      std::fprintf(stderr, "%s\n", policy.status().ToString().c_str());
      return 1;
    }
    PrintRss("mmap (Policy::Load)", Seconds(t));
    return 0;
  }
  auto json = spar::ReadJsonFile(spar::JoinPath(dir, "config.json"));
  auto config = spar::model::ParseLlamaConfig(*json);
  internal::LlamaForCausalLM model(*config);
  std::vector<spar::model::SafetensorsFile> files;
  for (const char* name : {"model.safetensors"}) {
    auto bytes = spar::ReadFile(spar::JoinPath(dir, name));
    files.push_back(*spar::model::SafetensorsFile::Parse(*std::move(bytes)));
  }
  torch::NoGradGuard no_grad;
  for (auto& p : model->named_parameters()) {
    const auto& file = files[0];
    const auto& entry = file.tensors().at(p.key());
    std::string_view bytes = file.Data(entry);
    p.value().copy_(
        torch::from_blob(const_cast<char*>(bytes.data()), entry.shape, torch::kFloat32));
  }
  PrintRss("read (whole file in memory, then convert)", Seconds(t));
  return 0;
}

// Writes a ~110M-parameter float32 checkpoint (one model.safetensors, ~440 MB) under `dir` and
// loads it both ways in child processes.
int LoadRss(const char* self, const std::string& dir) {
  LlamaConfig c;
  c.vocab_size = 32000;
  c.hidden_size = 768;
  c.intermediate_size = 2048;
  c.num_hidden_layers = 12;
  c.num_attention_heads = 12;
  c.num_key_value_heads = 12;
  c.tie_word_embeddings = true;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  c.pad_token_id = 0;
  {
    auto policy = spar::model::Policy::CreateRandom(c, 1);
    if (!policy.ok() || !(*policy)->Save(dir).ok()) return 1;
    std::printf("checkpoint: %.1fM parameters, float32, %s\n", (*policy)->NumParameters() / 1e6,
                dir.c_str());
    std::fflush(stdout);
  }
  for (const char* mode : {"read", "mmap"}) {
    const std::string cmd = std::string(self) + " --load_child=" + dir + " --mode=" + mode;
    if (std::system(cmd.c_str()) != 0) return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int steps = 32;
  std::string load_rss, load_child, mode;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--steps=", 8) == 0) steps = std::atoi(argv[i] + 8);
    if (std::strncmp(argv[i], "--load_rss=", 11) == 0) load_rss = argv[i] + 11;
    if (std::strncmp(argv[i], "--load_child=", 13) == 0) load_child = argv[i] + 13;
    if (std::strncmp(argv[i], "--mode=", 7) == 0) mode = argv[i] + 7;
  }
  if (!load_child.empty()) return LoadChild(load_child, mode);
  if (!load_rss.empty()) return LoadRss(argv[0], load_rss);
  torch::NoGradGuard no_grad;
  c10::InferenceMode inference;
  const double bw = MeasureBandwidth();
  const double flops = MeasureFlops();
  std::printf(
      "machine: copy bandwidth %.2f GB/s (256 MiB tensor copy, read+write), "
      "matmul %.1f GFLOP/s (1024^3 f32), %d torch threads\n",
      bw / 1e9, flops / 1e9, at::get_num_threads());
  const spar::BlasKernelChoice blas = spar::CurrentBlasKernelChoice();
  std::printf("blas kernel: %s (%s), cpu: %s\n", blas.kernel.c_str(), blas.how.c_str(),
              spar::CpuCapability().c_str());
  std::printf("decode: prompt 16 tokens, %d steps of 1 token with the KV cache, float32 CPU\n\n",
              steps);
  std::printf("%-6s %9s %4s %12s %12s %12s %8s %8s\n", "model", "params", "B", "tok/s", "mem-bound",
              "cmp-bound", "mem%", "cmp%");
  const std::vector<Size> sizes = {{"S", 256, 4, 4, 2, 704, 32000},
                                   {"M", 512, 8, 8, 4, 1408, 32000},
                                   {"L", 1024, 8, 16, 8, 2816, 32000}};
  const int64_t prompt = 16;
  for (const Size& s : sizes) {
    LlamaConfig c;
    c.vocab_size = s.vocab;
    c.hidden_size = s.hidden;
    c.intermediate_size = s.intermediate;
    c.num_hidden_layers = s.layers;
    c.num_attention_heads = s.heads;
    c.num_key_value_heads = s.kv_heads;
    c.max_position_embeddings = 4096;
    c.tie_word_embeddings = false;
    c.bos_token_id = 1;
    c.eos_token_id = 2;
    c.pad_token_id = 0;
    internal::LlamaForCausalLM model(c);
    internal::InitWeights(model, 1);
    model->eval();
    int64_t params = 0;
    for (const auto& p : model->parameters()) params += p.numel();
    // The embedding table is gathered (B rows per step), not streamed.
    const double weight_bytes = 4.0 * (params - s.vocab * s.hidden);
    for (int64_t b : {1, 8, 64}) {
      torch::Tensor ids = torch::randint(3, s.vocab, {b, prompt}, torch::kInt64);
      torch::Tensor pos = torch::arange(prompt, torch::kInt64).unsqueeze(0).expand({b, prompt});
      internal::KvCache cache;
      torch::Tensor logits = model->forward(ids, pos, torch::Tensor(), &cache);
      torch::Tensor next = logits.select(1, prompt - 1).argmax(-1, true);
      auto t = Clock::now();
      for (int step = 0; step < steps; ++step) {
        torch::Tensor p = torch::full({b, 1}, prompt + step, torch::kInt64);
        logits = model->forward(next, p, torch::Tensor(), &cache);
        next = logits.select(1, 0).argmax(-1, true);
      }
      const double elapsed = Seconds(t);
      const double tok_s = b * steps / elapsed;
      // Average context over the timed steps; K and V, float32, every layer.
      const double ctx = prompt + steps / 2.0;
      const double kv_bytes = 2.0 * 4.0 * s.layers * s.kv_heads * (s.hidden / s.heads) * ctx * b;
      const double mem_bound = b * bw / (weight_bytes + kv_bytes);
      const double flops_per_token =
          2.0 * (params - s.vocab * s.hidden) + 4.0 * s.layers * s.hidden * ctx;
      const double cmp_bound = flops / flops_per_token;
      std::printf("%-6s %8.1fM %4lld %12.1f %12.1f %12.1f %7.1f%% %7.1f%%\n", s.name, params / 1e6,
                  static_cast<long long>(b), tok_s, mem_bound, cmp_bound, 100 * tok_s / mem_bound,
                  100 * tok_s / cmp_bound);
    }
  }
  return 0;
}
