#include "model/internal/llama.h"

#include <algorithm>
#include <cmath>
#include <string>

#include <ATen/CPUGeneratorImpl.h>

namespace spar::model::internal {
namespace {

torch::Tensor RotateHalf(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  torch::Tensor x1 = x.narrow(-1, 0, half);
  torch::Tensor x2 = x.narrow(-1, half, half);
  return torch::cat({-x2, x1}, -1);
}

// Large finite negative instead of -inf so that fully masked rows (left padding) stay finite.
constexpr double kMaskValue = -1e9;

}  // namespace

RmsNormImpl::RmsNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor RmsNormImpl::forward(const torch::Tensor& x) {
  torch::Tensor xf = x.to(torch::kFloat32);
  torch::Tensor variance = xf.pow(2).mean(-1, /*keepdim=*/true);
  xf = xf * torch::rsqrt(variance + eps_);
  return weight * xf.to(x.scalar_type());
}

AttentionImpl::AttentionImpl(const LlamaConfig& c)
    : heads_(c.num_attention_heads), kv_heads_(c.num_key_value_heads), head_dim_(c.head_dim()) {
  auto linear = [](int64_t in, int64_t out) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
  };
  q_proj = register_module("q_proj", linear(c.hidden_size, heads_ * head_dim_));
  k_proj = register_module("k_proj", linear(c.hidden_size, kv_heads_ * head_dim_));
  v_proj = register_module("v_proj", linear(c.hidden_size, kv_heads_ * head_dim_));
  o_proj = register_module("o_proj", linear(heads_ * head_dim_, c.hidden_size));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                     const torch::Tensor& sin, const torch::Tensor& bias,
                                     torch::Tensor* cache_k, torch::Tensor* cache_v) {
  const int64_t b = x.size(0), t = x.size(1);
  torch::Tensor q = q_proj(x).view({b, t, heads_, head_dim_}).transpose(1, 2);
  torch::Tensor k = k_proj(x).view({b, t, kv_heads_, head_dim_}).transpose(1, 2);
  torch::Tensor v = v_proj(x).view({b, t, kv_heads_, head_dim_}).transpose(1, 2);
  torch::Tensor c = cos.unsqueeze(1), s = sin.unsqueeze(1);
  q = q * c + RotateHalf(q) * s;
  k = k * c + RotateHalf(k) * s;
  if (cache_k != nullptr) {
    if (cache_k->defined()) {
      k = torch::cat({*cache_k, k}, 2);
      v = torch::cat({*cache_v, v}, 2);
    }
    *cache_k = k;
    *cache_v = v;
  }
  if (kv_heads_ != heads_) {
    // HF repeat_kv: query head h uses kv head h / n_rep.
    const int64_t rep = heads_ / kv_heads_;
    const int64_t s_len = k.size(2);
    k = k.unsqueeze(2).expand({b, kv_heads_, rep, s_len, head_dim_}).reshape(
        {b, heads_, s_len, head_dim_});
    v = v.unsqueeze(2).expand({b, kv_heads_, rep, s_len, head_dim_}).reshape(
        {b, heads_, s_len, head_dim_});
  }
  torch::Tensor scores = torch::matmul(q, k.transpose(2, 3)) / std::sqrt(double(head_dim_));
  scores = scores + bias;
  torch::Tensor probs = torch::softmax(scores.to(torch::kFloat32), -1).to(q.scalar_type());
  torch::Tensor out = torch::matmul(probs, v).transpose(1, 2).reshape({b, t, heads_ * head_dim_});
  return o_proj(out);
}

MlpImpl::MlpImpl(const LlamaConfig& c) {
  auto linear = [](int64_t in, int64_t out) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
  };
  gate_proj = register_module("gate_proj", linear(c.hidden_size, c.intermediate_size));
  up_proj = register_module("up_proj", linear(c.hidden_size, c.intermediate_size));
  down_proj = register_module("down_proj", linear(c.intermediate_size, c.hidden_size));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  return down_proj(torch::silu(gate_proj(x)) * up_proj(x));
}

DecoderLayerImpl::DecoderLayerImpl(const LlamaConfig& c) {
  self_attn = register_module("self_attn", Attention(c));
  mlp = register_module("mlp", Mlp(c));
  input_layernorm = register_module("input_layernorm", RmsNorm(c.hidden_size, c.rms_norm_eps));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RmsNorm(c.hidden_size, c.rms_norm_eps));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                        const torch::Tensor& sin, const torch::Tensor& bias,
                                        torch::Tensor* cache_k, torch::Tensor* cache_v) {
  torch::Tensor h = x + self_attn(input_layernorm(x), cos, sin, bias, cache_k, cache_v);
  return h + mlp(post_attention_layernorm(h));
}

LlamaBodyImpl::LlamaBodyImpl(const LlamaConfig& c) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(DecoderLayer(c));
  norm = register_module("norm", RmsNorm(c.hidden_size, c.rms_norm_eps));
}

LlamaForCausalLMImpl::LlamaForCausalLMImpl(const LlamaConfig& c) : config_(c) {
  model = register_module("model", LlamaBody(c));
  if (!c.tie_word_embeddings) {
    lm_head = register_module(
        "lm_head", torch::nn::Linear(torch::nn::LinearOptions(c.hidden_size, c.vocab_size).bias(false)));
  }
  const int64_t d = c.head_dim();
  torch::Tensor exponents = torch::arange(0, d, 2, torch::kInt64).to(torch::kFloat64) / double(d);
  inv_freq_ = register_buffer("inv_freq",
                              (1.0 / torch::pow(torch::full({}, c.rope_theta, torch::kFloat64),
                                                exponents)).to(torch::kFloat32));
}

torch::Tensor LlamaForCausalLMImpl::OutputWeight() const {
  return config_.tie_word_embeddings ? model->embed_tokens->weight : lm_head->weight;
}

torch::Tensor LlamaForCausalLMImpl::forward(const torch::Tensor& input_ids,
                                            const torch::Tensor& position_ids,
                                            const torch::Tensor& key_mask, KvCache* cache) {
  const int64_t b = input_ids.size(0), t = input_ids.size(1);
  const int64_t n_layers = config_.num_hidden_layers;
  if (cache != nullptr && cache->keys.empty()) {
    cache->keys.resize(n_layers);
    cache->values.resize(n_layers);
  }
  const int64_t past =
      (cache != nullptr && cache->keys[0].defined()) ? cache->keys[0].size(2) : 0;
  const int64_t s_len = past + t;
  const auto dev = input_ids.device();

  // RoPE tables for these positions: [B,T,head_dim].
  torch::Tensor freqs = position_ids.to(torch::kFloat32).unsqueeze(-1) * inv_freq_.to(dev);
  torch::Tensor emb = torch::cat({freqs, freqs}, -1);
  torch::Tensor cos = emb.cos(), sin = emb.sin();

  // Additive mask [B,1,T,S]: query t (absolute index past+t) sees keys s <= past+t that are real.
  torch::Tensor q_idx = torch::arange(past, s_len, torch::TensorOptions().dtype(torch::kInt64).device(dev));
  torch::Tensor k_idx = torch::arange(0, s_len, torch::TensorOptions().dtype(torch::kInt64).device(dev));
  torch::Tensor allowed = k_idx.unsqueeze(0) <= q_idx.unsqueeze(1);  // [T,S]
  allowed = allowed.unsqueeze(0).unsqueeze(0).expand({b, 1, t, s_len});
  if (key_mask.defined()) {
    allowed = allowed.logical_and(key_mask.to(torch::kBool).view({b, 1, 1, s_len}));
  }
  torch::Tensor bias = torch::zeros({b, 1, t, s_len}, torch::TensorOptions().device(dev))
                           .masked_fill(allowed.logical_not(), kMaskValue);

  torch::Tensor h = model->embed_tokens(input_ids);
  for (int64_t i = 0; i < n_layers; ++i) {
    auto layer = model->layers->ptr<DecoderLayerImpl>(i);
    h = layer->forward(h, cos, sin, bias, cache ? &cache->keys[i] : nullptr,
                       cache ? &cache->values[i] : nullptr);
  }
  h = model->norm(h);
  return torch::matmul(h, OutputWeight().t());
}

void InitWeights(LlamaForCausalLM& model, uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  for (auto& p : model->named_parameters()) {
    const std::string& name = p.key();
    torch::Tensor& w = p.value();
    if (name.find("norm") != std::string::npos) {
      w.fill_(1.0);
    } else {
      torch::Tensor init = at::normal(0.0, 0.02, w.sizes(), gen);
      w.copy_(init);
    }
  }
}

ScoreBatch MakeScoreBatch(const std::vector<std::vector<int32_t>>& prompts,
                          const std::vector<std::vector<int32_t>>& responses, int64_t bos,
                          int64_t pad, const torch::Device& device) {
  const int64_t n = static_cast<int64_t>(prompts.size());
  int64_t max_len = 2;
  for (int64_t i = 0; i < n; ++i) {
    max_len = std::max<int64_t>(max_len, 1 + prompts[i].size() + responses[i].size());
  }
  std::vector<int64_t> ids(n * max_len, pad);
  std::vector<float> mask(n * (max_len - 1), 0.0f);
  ScoreBatch batch;
  for (int64_t i = 0; i < n; ++i) {
    int64_t* row = ids.data() + i * max_len;
    int64_t pos = 0;
    row[pos++] = bos;
    for (int32_t tok : prompts[i]) row[pos++] = tok;
    const int64_t response_start = pos;
    for (int32_t tok : responses[i]) row[pos++] = tok;
    // Target j predicts token j+1: response tokens are targets response_start-1 .. pos-2.
    for (int64_t j = response_start - 1; j < pos - 1; ++j) mask[i * (max_len - 1) + j] = 1.0f;
    batch.num_tokens += pos;
  }
  torch::Tensor all = torch::from_blob(ids.data(), {n, max_len}, torch::kInt64).clone();
  batch.input_ids = all.to(device);
  batch.targets = batch.input_ids.narrow(1, 1, max_len - 1);
  batch.target_mask =
      torch::from_blob(mask.data(), {n, max_len - 1}, torch::kFloat32).clone().to(device);
  return batch;
}

torch::Tensor TokenLogProbs(LlamaForCausalLM& model, const ScoreBatch& batch) {
  const int64_t b = batch.input_ids.size(0), t = batch.input_ids.size(1);
  torch::Tensor inputs = batch.input_ids.narrow(1, 0, t - 1);
  torch::Tensor positions =
      torch::arange(0, t - 1, torch::TensorOptions().dtype(torch::kInt64).device(inputs.device()))
          .unsqueeze(0)
          .expand({b, t - 1});
  // Right padding: causal masking alone keeps pads out of every real token's context.
  torch::Tensor logits = model->forward(inputs, positions, torch::Tensor());
  torch::Tensor logp = torch::log_softmax(logits.to(torch::kFloat32), -1);
  torch::Tensor picked = logp.gather(-1, batch.targets.unsqueeze(-1)).squeeze(-1);
  return picked * batch.target_mask;
}

torch::Tensor SequenceLogProbs(LlamaForCausalLM& model, const ScoreBatch& batch) {
  return TokenLogProbs(model, batch).sum(-1);
}

}  // namespace spar::model::internal
