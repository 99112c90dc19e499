#include "model/internal/llama.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "model/internal/torch_compat.h"

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

// A decoder layer under activation checkpointing: forward runs without autograd (the Function
// machinery disables grad mode) and saves only the layer's inputs and the RNG state; backward
// restores the RNG, recomputes the layer with grad enabled and differentiates it with
// torch::autograd::grad. The layer's trainable parameters are passed as inputs so the output
// requires grad even when x does not (frozen embeddings under LoRA), and their gradients flow
// back through the Function like any other input's.
class CheckpointedLayer : public torch::autograd::Function<CheckpointedLayer> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& cos, const torch::Tensor& sin,
                               const torch::Tensor& bias, int64_t layer_address,
                               torch::TensorList params) {
    auto* layer = reinterpret_cast<DecoderLayerImpl*>(layer_address);
    ctx->saved_data["layer"] = layer_address;
    ctx->saved_data["rng"] = GetRngState(x.device());
    ctx->saved_data["x_requires_grad"] = x.requires_grad();
    ctx->saved_data["autocast"] = CudaAutocastEnabled();  // replayed in the recomputation
    ctx->save_for_backward({x, cos, sin, bias});
    return layer->forward(x, cos, sin, bias, nullptr, nullptr);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto* layer = reinterpret_cast<DecoderLayerImpl*>(ctx->saved_data["layer"].toInt());
    torch::autograd::variable_list saved = ctx->get_saved_variables();
    const bool x_grad = ctx->saved_data["x_requires_grad"].toBool();
    torch::Tensor x = saved[0].detach().requires_grad_(x_grad);
    std::vector<torch::Tensor> params;
    for (const torch::Tensor& p : layer->parameters()) {
      if (p.requires_grad()) params.push_back(p);
    }
    torch::Tensor out;
    {
      // Recompute with the RNG as it was in forward, then put the current state back.
      const torch::Device device = x.device();
      torch::Tensor now = GetRngState(device);
      SetRngState(device, ctx->saved_data["rng"].toTensor());
      torch::AutoGradMode grad(true);
      CudaAutocast autocast(ctx->saved_data["autocast"].toBool());
      out = layer->forward(x, saved[1], saved[2], saved[3], nullptr, nullptr);
      SetRngState(device, now);
    }
    std::vector<torch::Tensor> inputs;
    if (x_grad) inputs.push_back(x);
    inputs.insert(inputs.end(), params.begin(), params.end());
    torch::autograd::variable_list grads =
        torch::autograd::grad({out}, inputs, {grad_out[0]}, /*retain_graph=*/false,
                              /*create_graph=*/false, /*allow_unused=*/true);
    // One gradient per forward argument: x, cos, sin, bias, layer, then each parameter.
    torch::autograd::variable_list result = {x_grad ? grads[0] : torch::Tensor(), torch::Tensor(),
                                             torch::Tensor(), torch::Tensor(), torch::Tensor()};
    result.insert(result.end(), grads.begin() + (x_grad ? 1 : 0), grads.end());
    return result;
  }
};

}  // namespace

void AttachLora(torch::nn::Linear& linear, LoraSlot* slot, int64_t rank, double scale,
                double dropout, at::Generator& gen) {
  const int64_t in = linear->options.in_features(), out = linear->options.out_features();
  torch::Device device = linear->weight.device();
  slot->a = linear->register_module(
      "lora_A", torch::nn::Linear(torch::nn::LinearOptions(in, rank).bias(false)));
  slot->b = linear->register_module(
      "lora_B", torch::nn::Linear(torch::nn::LinearOptions(rank, out).bias(false)));
  torch::NoGradGuard no_grad;
  // PEFT: A ~ kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)); B = 0.
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  slot->a->weight.copy_(at::empty({rank, in}).uniform_(-bound, bound, gen));
  slot->b->weight.zero_();
  slot->a->to(device);
  slot->b->to(device);
  slot->scale = scale;
  slot->dropout = dropout;
}

torch::Tensor Project(torch::nn::Linear& linear, LoraSlot& slot, const torch::Tensor& x,
                      bool training) {
  torch::Tensor y = linear(x);
  if (slot.a.is_empty()) return y;
  torch::Tensor in = slot.dropout > 0 ? torch::dropout(x, slot.dropout, training) : x;
  return y + slot.b(slot.a(in)) * slot.scale;
}

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
  auto linear = [](int64_t in, int64_t out, bool bias) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
  };
  q_proj = register_module("q_proj", linear(c.hidden_size, heads_ * head_dim_, c.qkv_bias));
  k_proj = register_module("k_proj", linear(c.hidden_size, kv_heads_ * head_dim_, c.qkv_bias));
  v_proj = register_module("v_proj", linear(c.hidden_size, kv_heads_ * head_dim_, c.qkv_bias));
  o_proj = register_module("o_proj", linear(heads_ * head_dim_, c.hidden_size, c.o_bias));
  if (c.qk_norm) {
    q_norm = register_module("q_norm", RmsNorm(head_dim_, c.rms_norm_eps));
    k_norm = register_module("k_norm", RmsNorm(head_dim_, c.rms_norm_eps));
  }
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                     const torch::Tensor& sin, const torch::Tensor& bias,
                                     torch::Tensor* cache_k, torch::Tensor* cache_v) {
  const int64_t b = x.size(0), t = x.size(1);
  const bool train = is_training();
  torch::Tensor q =
      Project(q_proj, lora_q, x, train).view({b, t, heads_, head_dim_}).transpose(1, 2);
  torch::Tensor k =
      Project(k_proj, lora_k, x, train).view({b, t, kv_heads_, head_dim_}).transpose(1, 2);
  torch::Tensor v =
      Project(v_proj, lora_v, x, train).view({b, t, kv_heads_, head_dim_}).transpose(1, 2);
  if (!q_norm.is_empty()) {
    q = q_norm(q);
    k = k_norm(k);
  }
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
    k = k.unsqueeze(2)
            .expand({b, kv_heads_, rep, s_len, head_dim_})
            .reshape({b, heads_, s_len, head_dim_});
    v = v.unsqueeze(2)
            .expand({b, kv_heads_, rep, s_len, head_dim_})
            .reshape({b, heads_, s_len, head_dim_});
  }
  torch::Tensor out =
      ScaledDotProductAttention(q, k, v, bias).transpose(1, 2).reshape({b, t, heads_ * head_dim_});
  return Project(o_proj, lora_o, out, train);
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
  const bool train = is_training();
  return Project(
      down_proj, lora_down,
      torch::silu(Project(gate_proj, lora_gate, x, train)) * Project(up_proj, lora_up, x, train),
      train);
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
        "lm_head",
        torch::nn::Linear(torch::nn::LinearOptions(c.hidden_size, c.vocab_size).bias(false)));
  }
  inv_freq_ = register_buffer("inv_freq", RopeInverseFrequencies(c));
}

torch::Tensor RopeInverseFrequencies(const LlamaConfig& c) {
  const int64_t d = c.head_dim();
  // Computed in float64 and rounded once (transformers uses float32; they differ by an ulp).
  torch::Tensor exponents = torch::arange(0, d, 2, torch::kInt64).to(torch::kFloat64) / double(d);
  torch::Tensor inv_freq =
      1.0 / torch::pow(torch::full({}, c.rope_theta, torch::kFloat64), exponents);
  if (c.rope_scaling_type == "linear") {
    // Linear scaling divides positions by the factor, i.e. the frequencies.
    inv_freq = inv_freq / c.rope_scaling_factor;
  } else if (c.rope_scaling_type == "llama3") {
    const double factor = c.rope_scaling_factor;
    const double old_len = static_cast<double>(c.rope_original_max_position_embeddings);
    const double low_wavelen = old_len / c.rope_low_freq_factor;
    const double high_wavelen = old_len / c.rope_high_freq_factor;
    torch::Tensor wavelen = 2 * M_PI / inv_freq;
    torch::Tensor scaled = torch::where(wavelen > low_wavelen, inv_freq / factor, inv_freq);
    torch::Tensor smooth = (old_len / wavelen - c.rope_low_freq_factor) /
                           (c.rope_high_freq_factor - c.rope_low_freq_factor);
    torch::Tensor smoothed = (1 - smooth) * scaled / factor + smooth * scaled;
    torch::Tensor medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
    inv_freq = torch::where(medium, smoothed, scaled);
  }
  return inv_freq.to(torch::kFloat32);
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
  const int64_t past = (cache != nullptr && cache->keys[0].defined()) ? cache->keys[0].size(2) : 0;
  const int64_t s_len = past + t;
  const auto dev = input_ids.device();

  // RoPE tables for these positions: [B,T,head_dim].
  torch::Tensor freqs = position_ids.to(torch::kFloat32).unsqueeze(-1) * inv_freq_.to(dev);
  torch::Tensor emb = torch::cat({freqs, freqs}, -1);
  torch::Tensor cos = emb.cos(), sin = emb.sin();

  // Additive mask [B,1,T,S]: query t (absolute index past+t) sees keys s <= past+t that are real.
  torch::Tensor q_idx =
      torch::arange(past, s_len, torch::TensorOptions().dtype(torch::kInt64).device(dev));
  torch::Tensor k_idx =
      torch::arange(0, s_len, torch::TensorOptions().dtype(torch::kInt64).device(dev));
  torch::Tensor allowed = k_idx.unsqueeze(0) <= q_idx.unsqueeze(1);  // [T,S]
  if (config_.sliding_window > 0) {
    // Mistral's window: as transformers' sliding_window_overlay, kv_idx > q_idx - window.
    allowed = allowed.logical_and(k_idx.unsqueeze(0) > q_idx.unsqueeze(1) - config_.sliding_window);
  }
  allowed = allowed.unsqueeze(0).unsqueeze(0).expand({b, 1, t, s_len});
  if (key_mask.defined()) {
    allowed = allowed.logical_and(key_mask.to(torch::kBool).view({b, 1, 1, s_len}));
  }
  torch::Tensor bias = torch::zeros({b, 1, t, s_len}, torch::TensorOptions().device(dev))
                           .masked_fill(allowed.logical_not(), kMaskValue);

  torch::Tensor h = model->embed_tokens(input_ids);
  for (int64_t i = 0; i < n_layers; ++i) {
    auto layer = model->layers->ptr<DecoderLayerImpl>(i);
    if (gradient_checkpointing_ && cache == nullptr && is_training() &&
        torch::GradMode::is_enabled()) {
      std::vector<torch::Tensor> trainable;
      for (const torch::Tensor& p : layer->parameters()) {
        if (p.requires_grad()) trainable.push_back(p);
      }
      if (h.requires_grad() || !trainable.empty()) {
        h = CheckpointedLayer::apply(h, cos, sin, bias, reinterpret_cast<int64_t>(layer.get()),
                                     torch::TensorList(trainable));
        continue;
      }
    }
    h = layer->forward(h, cos, sin, bias, cache ? &cache->keys[i] : nullptr,
                       cache ? &cache->values[i] : nullptr);
  }
  h = model->norm(h);
  return torch::matmul(h, OutputWeight().t());
}

void AddLoraAdapters(LlamaForCausalLM& model, int64_t rank, double scale, double dropout,
                     const std::vector<std::string>& targets, uint64_t seed) {
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  at::Generator gen = at::detail::createCPUGenerator(seed);
  auto wants = [&](const char* name) {
    return std::find(targets.begin(), targets.end(), name) != targets.end();
  };
  for (size_t i = 0; i < model->model->layers->size(); ++i) {
    auto layer = model->model->layers->ptr<DecoderLayerImpl>(i);
    AttentionImpl& attn = *layer->self_attn;
    MlpImpl& mlp = *layer->mlp;
    const std::pair<torch::nn::Linear*, LoraSlot*> slots[] = {
        {&attn.q_proj, &attn.lora_q},     {&attn.k_proj, &attn.lora_k},
        {&attn.v_proj, &attn.lora_v},     {&attn.o_proj, &attn.lora_o},
        {&mlp.gate_proj, &mlp.lora_gate}, {&mlp.up_proj, &mlp.lora_up},
        {&mlp.down_proj, &mlp.lora_down}};
    const char* names[] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                           "gate_proj", "up_proj", "down_proj"};
    for (size_t j = 0; j < 7; ++j) {
      if (wants(names[j])) AttachLora(*slots[j].first, slots[j].second, rank, scale, dropout, gen);
    }
  }
}

void InitWeights(LlamaForCausalLM& model, uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  for (auto& p : model->named_parameters()) {
    const std::string& name = p.key();
    torch::Tensor& w = p.value();
    if (name.find("norm") != std::string::npos) {
      w.fill_(1.0);
    } else if (name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0) {
      w.zero_();
    } else {
      torch::Tensor init = at::normal(0.0, 0.02, w.sizes(), gen);
      w.copy_(init);
    }
  }
}

ScoreBatch MakeScoreBatch(const std::vector<std::vector<int32_t>>& prompts,
                          const std::vector<std::vector<int32_t>>& responses, int64_t bos,
                          int64_t pad, const torch::Device& device) {
  return MakeScoreBatch(prompts, responses, std::vector<int64_t>(prompts.size(), bos), pad, device);
}

ScoreBatch MakeScoreBatch(const std::vector<std::vector<int32_t>>& prompts,
                          const std::vector<std::vector<int32_t>>& responses,
                          const std::vector<int64_t>& bos, int64_t pad,
                          const torch::Device& device) {
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
    row[pos++] = bos[i];
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
