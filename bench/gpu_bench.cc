// spar_gpu_bench: the benchmarks of scripts/gpu-check (docs/gpu-check.md). One JSON object per
// line on stdout: a "setup" line (device, model size), then one line per measurement.
//   spar_gpu_bench [--size=1b|tiny] [--device=cuda|cpu] [--train_steps=N] [--decode_steps=N]
//                  [--train_batch=N] [--batches=1,64,256] [--only=train|decode]
// Exit 2 on a bad flag or a CUDA device asked for but absent; 1 when a measurement fails.
#include "bench/gpu_bench.h"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace spar::bench {
namespace {

// The "~1B" config of issue 13: TinyLlama-1.1B's shape with 16 layers instead of 22; 0.85B
// parameters, 0.79B of them in matmuls (the embedding table is the rest).
model::LlamaConfig OneB() {
  model::LlamaConfig c;
  c.vocab_size = 32000;
  c.hidden_size = 2048;
  c.intermediate_size = 5632;
  c.num_hidden_layers = 16;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 8;
  c.max_position_embeddings = 4096;
  c.tie_word_embeddings = false;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  c.pad_token_id = 0;
  return c;
}

// A few-MB model with the same structure (GQA, untied head), for CPU dry runs.
model::LlamaConfig Tiny() {
  model::LlamaConfig c = OneB();
  c.vocab_size = 512;
  c.hidden_size = 64;
  c.intermediate_size = 176;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  return c;
}

bool ParseFlag(const char* arg, GpuBenchOptions& o, std::string& only) {
  auto value = [&](const char* name) -> const char* {
    const size_t n = std::strlen(name);
    return std::strncmp(arg, name, n) == 0 ? arg + n : nullptr;
  };
  const char* v = nullptr;
  int n = 0;
  if ((v = value("--size="))) {
    if (std::strcmp(v, "1b") == 0) return (o.config = OneB(), true);
    if (std::strcmp(v, "tiny") != 0) return false;
    o.config = Tiny();
    o.train_seq = 64, o.train_batch = 2, o.prompt = 8, o.lora_rank = 4;
    return true;
  }
  if ((v = value("--device="))) return (o.device = torch::Device(v), true);
  if ((v = value("--train_steps="))) return absl::SimpleAtoi(v, &o.train_steps);
  if ((v = value("--decode_steps="))) return absl::SimpleAtoi(v, &o.decode_steps);
  if ((v = value("--train_batch="))) return absl::SimpleAtoi(v, &n) && (o.train_batch = n) > 0;
  if ((v = value("--only="))) return (only = v, only == "train" || only == "decode");
  if ((v = value("--batches="))) {
    o.decode_batches.clear();
    for (absl::string_view s : absl::StrSplit(v, ',')) {
      if (!absl::SimpleAtoi(s, &n) || n <= 0) return false;
      o.decode_batches.push_back(n);
    }
    return !o.decode_batches.empty();
  }
  return false;
}

void Emit(const nlohmann::json& line) {
  std::printf("%s\n", line.dump().c_str());
  std::fflush(stdout);
}

}  // namespace

double SyncedSeconds(const torch::Device& device, std::chrono::steady_clock::time_point t0) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index() < 0 ? 0 : device.index());
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace spar::bench

int main(int argc, char** argv) {
  using namespace spar::bench;
  GpuBenchOptions o;
  o.config = OneB();
  std::string only;
  try {
    for (int i = 1; i < argc; ++i) {
      if (!ParseFlag(argv[i], o, only)) {
        std::fprintf(stderr, "spar_gpu_bench: bad flag %s (see the header of gpu_bench.cc)\n",
                     argv[i]);
        return 2;
      }
    }
  } catch (const std::exception& e) {  // torch::Device("...") on a bad name
    std::fprintf(stderr, "spar_gpu_bench: %s\n", e.what());
    return 2;
  }
  if (o.device.is_cuda() && !torch::cuda::is_available()) {
    std::fprintf(stderr, "spar_gpu_bench: --device=cuda but no CUDA device is visible\n");
    return 2;
  }
  Emit({{"kind", "setup"},
        {"device", o.device.str()},
        {"hidden", o.config.hidden_size},
        {"layers", o.config.num_hidden_layers},
        {"heads", o.config.num_attention_heads},
        {"kv_heads", o.config.num_key_value_heads},
        {"vocab", o.config.vocab_size}});
  int rc = 0;
  // One failed measurement (e.g. CUDA out of memory at batch 256) is reported, not fatal.
  auto guarded = [&](const char* kind, nlohmann::json extra, auto&& measure) {
    try {
      Emit(measure());
    } catch (const std::exception& e) {  // c10::Error
      extra["kind"] = kind;
      extra["error"] = std::string(e.what()).substr(0, 400);
      Emit(extra);
      rc = 1;
    }
  };
  if (only != "decode") {
    for (bool lora : {false, true}) {
      guarded("train", {{"mode", lora ? "lora" : "full"}},
              [&] { return MeasureTraining(o, lora); });
    }
  }
  if (only != "train") {
    spar::model::internal::LlamaForCausalLM decode_model{nullptr};
    guarded("decode", {{"batch", 0}}, [&] {
      decode_model = MakeDecodeModel(o);
      return nlohmann::json{{"kind", "decode_model"},
                            {"dtype", o.device.is_cuda() ? "bf16" : "float32"}};
    });
    for (int64_t b : o.decode_batches) {
      if (decode_model.is_empty()) break;
      guarded("decode", {{"batch", b}}, [&] { return MeasureDecode(o, decode_model, b); });
    }
  }
  return rc;
}
