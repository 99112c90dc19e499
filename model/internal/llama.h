// Llama decoder in LibTorch (HF LlamaForCausalLM semantics): RMSNorm, RoPE (rotate_half
// convention), grouped-query attention with causal + padding masks and an optional KV cache,
// SwiGLU MLP, optionally tied embeddings. Parameter names are the HF names
// (model.embed_tokens.weight, model.layers.N.self_attn.q_proj.weight, ..., lm_head.weight), so
// named_parameters() is the checkpoint layout. Private to model/, sampler/, trainer/.
// Not thread-safe; callers serialize.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "model/llama_config.h"

namespace spar::model::internal {

// Per-layer keys and values seen so far, [B, kv_heads, S_past, head_dim]; empty before the first
// forward.
struct KvCache {
  std::vector<torch::Tensor> keys;
  std::vector<torch::Tensor> values;
};

class RmsNormImpl : public torch::nn::Module {
 public:
  RmsNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(RmsNorm);

// A LoRA adapter on one projection: y += scale * B(A(dropout(x))). The A/B modules are registered
// on the projection itself, so their parameters are named "<proj>.lora_A.weight" /
// "<proj>.lora_B.weight" (PEFT's names under "base_model.model.").
struct LoraSlot {
  torch::nn::Linear a{nullptr}, b{nullptr};
  double scale = 0.0;
  double dropout = 0.0;
};

// Adds an adapter of `rank` to `linear` (A kaiming-uniform from `gen`, B zeros) and fills `slot`.
void AttachLora(torch::nn::Linear& linear, LoraSlot* slot, int64_t rank, double scale,
                double dropout, at::Generator& gen);
// linear(x) plus the adapter's update when the slot holds one.
torch::Tensor Project(torch::nn::Linear& linear, LoraSlot& slot, const torch::Tensor& x,
                      bool training);

class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const LlamaConfig& config);
  // x [B,T,H]; cos/sin [B,T,head_dim]; bias [B,1,T,S] additive mask; cache k/v may be undefined.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& bias, torch::Tensor* cache_k, torch::Tensor* cache_v);
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  RmsNorm q_norm{nullptr}, k_norm{nullptr};  // qwen3 only (per-head RMSNorm before RoPE)
  LoraSlot lora_q, lora_k, lora_v, lora_o;

 private:
  int64_t heads_, kv_heads_, head_dim_;
};
TORCH_MODULE(Attention);

class MlpImpl : public torch::nn::Module {
 public:
  explicit MlpImpl(const LlamaConfig& config);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
  LoraSlot lora_gate, lora_up, lora_down;
};
TORCH_MODULE(Mlp);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  explicit DecoderLayerImpl(const LlamaConfig& config);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& bias, torch::Tensor* cache_k, torch::Tensor* cache_v);
  Attention self_attn{nullptr};
  Mlp mlp{nullptr};
  RmsNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(DecoderLayer);

class LlamaBodyImpl : public torch::nn::Module {
 public:
  explicit LlamaBodyImpl(const LlamaConfig& config);
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RmsNorm norm{nullptr};
};
TORCH_MODULE(LlamaBody);

class LlamaForCausalLMImpl : public torch::nn::Module {
 public:
  explicit LlamaForCausalLMImpl(const LlamaConfig& config);

  // input_ids [B,T] int64; position_ids [B,T] int64 (absolute positions);
  // key_mask [B, S_past + T] (1 = real token, 0 = padding) or undefined (no padding).
  // Attention is causal over the concatenation of cached and new tokens. When `cache` is given
  // it is read and extended. Returns logits [B,T,vocab] (float32).
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& position_ids,
                        const torch::Tensor& key_mask, KvCache* cache = nullptr);

  const LlamaConfig& config() const { return config_; }

  // Activation checkpointing: while training with grad enabled (and no KV cache), each decoder
  // layer keeps only its input and recomputes its activations in backward (CheckpointedLayer in
  // llama.cc; LibTorch C++ has no torch.utils.checkpoint). Same gradients, less memory, about
  // one more forward per step.
  void set_gradient_checkpointing(bool on) { gradient_checkpointing_ = on; }
  bool gradient_checkpointing() const { return gradient_checkpointing_; }
  // The output projection (lm_head, or the embedding when tied).
  torch::Tensor OutputWeight() const;

  LlamaBody model{nullptr};
  torch::nn::Linear lm_head{nullptr};  // null when tie_word_embeddings

 private:
  LlamaConfig config_;
  bool gradient_checkpointing_ = false;
  torch::Tensor inv_freq_;  // [head_dim/2], a buffer (not saved: HF recomputes it too)
};
TORCH_MODULE(LlamaForCausalLM);

// RoPE inverse frequencies [head_dim/2] (float32) for the config's rope_theta and rope_scaling
// (none, linear, llama3), as transformers' ROPE_INIT_FUNCTIONS compute them.
torch::Tensor RopeInverseFrequencies(const LlamaConfig& config);

// Adds LoRA adapters to the named projections (q_proj ... down_proj) of every layer and freezes
// every other parameter (requires_grad = false). Precondition: no adapters yet.
void AddLoraAdapters(LlamaForCausalLM& model, int64_t rank, double scale, double dropout,
                     const std::vector<std::string>& targets, uint64_t seed);

// HF initialisation: normal(0, 0.02) for linear/embedding weights, ones for norms; from `seed`.
void InitWeights(LlamaForCausalLM& model, uint64_t seed);

// A right-padded batch of BOS + prompt + response sequences for scoring.
struct ScoreBatch {
  torch::Tensor input_ids;    // [B, T] int64: tokens 0..T-2 are fed
  torch::Tensor targets;      // [B, T-1] int64: input_ids[:, 1:]
  torch::Tensor target_mask;  // [B, T-1] float32: 1 on response tokens (the ones scored)
  int64_t num_tokens = 0;     // real (non-pad) tokens fed
};

// Builds the batch: row b = [bos] + prompts[b] + responses[b] (responses already carry their EOS
// when wanted), padded with `pad` on the right.
ScoreBatch MakeScoreBatch(const std::vector<std::vector<int32_t>>& prompts,
                          const std::vector<std::vector<int32_t>>& responses, int64_t bos,
                          int64_t pad, const torch::Device& device);
// The same with row b's leading token bos[b] (a tokenizer's prompt encoding: its first id).
ScoreBatch MakeScoreBatch(const std::vector<std::vector<int32_t>>& prompts,
                          const std::vector<std::vector<int32_t>>& responses,
                          const std::vector<int64_t>& bos, int64_t pad,
                          const torch::Device& device);

// Per-token log-probs of the targets [B, T-1] (float32), masked to the response tokens.
torch::Tensor TokenLogProbs(LlamaForCausalLM& model, const ScoreBatch& batch);
// Sum of TokenLogProbs over the response tokens: log pi(response | prompt), [B] float32.
torch::Tensor SequenceLogProbs(LlamaForCausalLM& model, const ScoreBatch& batch);

}  // namespace spar::model::internal
