// The GPU check's benchmarks (spar_gpu_bench, run by scripts/gpu-check): shared settings and the
// two measurements. Each prints one JSON object per line to stdout; scripts/gpu_check/report.py
// turns them into the table (MFU against the card's bf16 peak, decode against its HBM bound).
// Private to bench/.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <vector>

#include "model/internal/llama.h"
#include "model/llama_config.h"
#include "nlohmann/json.hpp"

namespace spar::bench {

struct GpuBenchOptions {
  model::LlamaConfig config;  // the model measured (1b: 0.85B Llama; tiny: for CPU runs)
  torch::Device device{torch::kCPU};
  int64_t train_batch = 4;   // sequences per training step
  int64_t train_seq = 1024;  // tokens per sequence
  int train_steps = 8;       // timed steps, after 2 warm-up steps
  int64_t lora_rank = 16;    // LoRA on all seven projections, alpha = 2 * rank
  int64_t prompt = 128;      // decode: prompt tokens before the timed steps
  int decode_steps = 64;     // decode: timed steps of one token each
  std::vector<int64_t> decode_batches = {1, 64, 256};
};

// Seconds since `t0` after the device's queued work has finished.
double SyncedSeconds(const torch::Device& device, std::chrono::steady_clock::time_point t0);

// bf16-autocast training steps (next-token cross-entropy, AdamW) of the full model or of LoRA
// adapters: {"kind":"train","mode":..., "tokens_per_s", "flops_per_token", "achieved_flops", ...}.
nlohmann::json MeasureTraining(const GpuBenchOptions& options, bool lora);

// The model for MeasureDecode on options.device, in bf16 there when it is CUDA (float32 on CPU);
// weights as the constructors draw them (values do not change the timing).
model::internal::LlamaForCausalLM MakeDecodeModel(const GpuBenchOptions& options);

// Greedy decode with the KV cache at `batch`: {"kind":"decode","batch", "tokens_per_s",
// "bytes_per_step" (weights + KV cache read per step), ...}.
nlohmann::json MeasureDecode(const GpuBenchOptions& options,
                             model::internal::LlamaForCausalLM& model, int64_t batch);

}  // namespace spar::bench
