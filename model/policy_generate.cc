// Policy::Generate: batched, KV-cached decoding with left padding; what a sample is depends on
// (seed, prompt index, sample index, step) only (internal/token_sampling.h), never on batching.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/byte_tokenizer.h"
#include "model/chat_template_setting.h"
#include "model/internal/llama.h"
#include "model/internal/policy_internal.h"
#include "model/internal/token_sampling.h"
#include "model/internal/torch_call.h"
#include "model/internal/torch_compat.h"
#include "model/policy.h"

namespace spar::model {
namespace {

// When a sequence ends: a stop token (params.stop_token_ids, eos, the extra eos ids) or a stop
// string in its decoded text; and the text it ends with.
class StopRules {
 public:
  StopRules(const LlamaConfig& cfg, const GenerationParams& params, const HfTokenizer* tokenizer)
      : stop_ids_(params.stop_token_ids),
        stop_strings_(params.stop_strings),
        tokenizer_(tokenizer) {
    stop_ids_.push_back(static_cast<int32_t>(cfg.eos_token_id));
    for (int64_t id : cfg.extra_eos_token_ids) stop_ids_.push_back(static_cast<int32_t>(id));
  }

  // Whether `ids`, whose last token was just sampled, ends the sequence.
  bool Ends(const std::vector<int32_t>& ids) const {
    if (IsStopToken(ids.back())) return true;
    return !stop_strings_.empty() && StopAt(Decode(ids)) != std::string::npos;
  }

  // The text of a finished or cut-off sequence: without its stop token, cut at a stop string.
  std::string FinalText(std::vector<int32_t> ids) const {
    if (!ids.empty() && IsStopToken(ids.back())) ids.pop_back();
    std::string text = Decode(ids);
    if (!stop_strings_.empty()) {
      const size_t at = StopAt(text);
      if (at != std::string::npos) text.resize(at);
    }
    return text;
  }

 private:
  bool IsStopToken(int32_t tok) const {
    return std::find(stop_ids_.begin(), stop_ids_.end(), tok) != stop_ids_.end();
  }

  // Where the first stop string starts in `text`, or npos.
  size_t StopAt(const std::string& text) const {
    size_t at = std::string::npos;
    for (const std::string& stop : stop_strings_) {
      if (!stop.empty()) at = std::min(at, text.find(stop));
    }
    return at;
  }

  std::string Decode(const std::vector<int32_t>& ids) const {
    if (tokenizer_ == nullptr) return ByteTokenizer::Decode(ids);
    DecodeOptions options;
    options.skip_special_tokens = true;
    absl::StatusOr<std::string> text = tokenizer_->Decode(ids, options);
    return text.ok() ? *text : std::string();
  }

  std::vector<int32_t> stop_ids_;
  const std::vector<std::string>& stop_strings_;
  const HfTokenizer* tokenizer_;
};

// One batch of rows (row = prompt index * k + sample index) decoded together.
struct Batch {
  int64_t start = 0;  // first row
  int64_t size = 0;   // rows
  int64_t k = 1;      // samples per prompt
};

// Left-padded prompt tokens of a batch, so every row's next token sits in the last column.
struct PaddedPrompts {
  int64_t max_len = 0;
  std::vector<int64_t> ids, mask, pos;
  std::vector<int64_t> next_pos;  // per row: the position of its first new token
};

PaddedPrompts LeftPad(const std::vector<std::vector<int32_t>>& encoded, const Batch& batch,
                      int64_t pad_token_id) {
  PaddedPrompts p;
  const int64_t b = batch.size;
  for (int64_t r = 0; r < b; ++r) {
    p.max_len = std::max<int64_t>(p.max_len, encoded[(batch.start + r) / batch.k].size());
  }
  p.ids.assign(b * p.max_len, pad_token_id);
  p.mask.assign(b * p.max_len, 0);
  p.pos.assign(b * p.max_len, 0);
  p.next_pos.resize(b);
  for (int64_t r = 0; r < b; ++r) {
    const auto& toks = encoded[(batch.start + r) / batch.k];
    const int64_t len = toks.size(), off = p.max_len - len;
    for (int64_t t = 0; t < len; ++t) {
      p.ids[r * p.max_len + off + t] = toks[t];
      p.mask[r * p.max_len + off + t] = 1;
      p.pos[r * p.max_len + off + t] = t;
    }
    p.next_pos[r] = len;
  }
  return p;
}

// The decoding state of one batch between steps.
struct BatchState {
  std::vector<char> done;
  int64_t remaining = 0;
};

// Samples step `step`'s token for every unfinished row from `logits` ([rows, vocab]), appends it
// to its generation and marks rows that end; returns the next input ids (pad for ended rows).
std::vector<int64_t> SampleStep(const torch::Tensor& logits, int step, const Batch& batch,
                                const GenerationParams& params, const LlamaConfig& cfg,
                                const StopRules& rules, BatchState* state,
                                std::vector<Generation>* out) {
  torch::Tensor row_logits = logits.to(torch::kCPU).to(torch::kFloat64).contiguous();
  torch::Tensor logp = torch::log_softmax(row_logits, -1).contiguous();
  const double* lg = row_logits.data_ptr<double>();
  const double* lp = logp.data_ptr<double>();
  const int64_t vocab = cfg.vocab_size;
  std::vector<int64_t> next(batch.size, cfg.pad_token_id);
  for (int64_t r = 0; r < batch.size; ++r) {
    if (state->done[r]) continue;
    const int64_t row = batch.start + r, i = row / batch.k, j = row % batch.k;
    const double u = internal::CounterUniform(params.seed, params.first_prompt_index + i, j, step);
    const int32_t tok = internal::PickToken(lg + r * vocab, vocab, params.temperature, params.top_p,
                                            u, params.top_k, params.min_p);
    Generation& g = (*out)[i];
    g.token_ids[j].push_back(tok);
    g.logprobs[j] += lp[r * vocab + tok];
    g.token_logprobs[j].push_back(lp[r * vocab + tok]);
    next[r] = tok;
    if (rules.Ends(g.token_ids[j])) {
      g.finished[j] = true;
      state->done[r] = 1;
      --state->remaining;
    }
  }
  return next;
}

// Decodes one batch: prefill the padded prompts, then one token per step until every row ended
// or max_new_tokens.
void DecodeBatch(Policy::Impl& impl, const std::vector<std::vector<int32_t>>& encoded,
                 const Batch& batch, const GenerationParams& params, const StopRules& rules,
                 std::vector<Generation>* out) {
  const LlamaConfig& cfg = impl.config;
  const int64_t b = batch.size;
  const auto long_opts = torch::TensorOptions().dtype(torch::kInt64);
  auto to_dev = [&](std::vector<int64_t>& v, int64_t cols) {
    return torch::from_blob(v.data(), {b, cols}, long_opts).clone().to(impl.device);
  };
  PaddedPrompts p = LeftPad(encoded, batch, cfg.pad_token_id);
  torch::Tensor key_mask = to_dev(p.mask, p.max_len);
  internal::KvCache cache;
  torch::Tensor logits =
      impl.module->forward(to_dev(p.ids, p.max_len), to_dev(p.pos, p.max_len), key_mask, &cache)
          .select(1, p.max_len - 1);
  BatchState state;
  state.done.assign(b, 0);
  state.remaining = b;
  for (int step = 0; step < params.max_new_tokens && state.remaining > 0; ++step) {
    std::vector<int64_t> next = SampleStep(logits, step, batch, params, cfg, rules, &state, out);
    if (state.remaining == 0 || step + 1 == params.max_new_tokens) break;
    std::vector<int64_t> step_pos(b);
    for (int64_t r = 0; r < b; ++r) step_pos[r] = p.next_pos[r]++;
    key_mask = torch::cat({key_mask, torch::ones({b, 1}, long_opts.device(impl.device))}, 1);
    logits =
        impl.module->forward(to_dev(next, 1), to_dev(step_pos, 1), key_mask, &cache).select(1, 0);
  }
}

}  // namespace

absl::Status Validate(const GenerationParams& p) {
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature)) {
    return absl::InvalidArgumentError(
        absl::StrCat("temperature must be >= 0, got ", p.temperature));
  }
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", p.top_p));
  }
  if (p.max_new_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_new_tokens must be >= 1, got ", p.max_new_tokens));
  }
  if (p.num_samples < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_samples must be >= 1, got ", p.num_samples));
  }
  if (p.first_prompt_index < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("first_prompt_index must be >= 0, got ", p.first_prompt_index));
  }
  if (p.max_batch_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_batch_size must be >= 1, got ", p.max_batch_size));
  }
  if (absl::Status st = ValidateChatTemplateSetting(p.chat_template); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("chat_template: ", st.message()));
  }
  return absl::OkStatus();
}

namespace {

// Every prompt's ids as the model reads them; each must leave room for max_new_tokens.
absl::StatusOr<std::vector<std::vector<int32_t>>> EncodePrompts(
    const Policy& policy, const std::vector<std::string>& prompts, const GenerationParams& params) {
  const LlamaConfig& cfg = policy.config();
  std::vector<std::vector<int32_t>> encoded(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    SPAR_ASSIGN_OR_RETURN(encoded[i], policy.EncodePrompt(prompts[i], params.chat_template));
    if (static_cast<int64_t>(encoded[i].size()) + params.max_new_tokens >
        cfg.max_position_embeddings) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompts[", i, "] is ", encoded[i].size(),
                       " tokens (BOS included): with max_new_tokens=", params.max_new_tokens,
                       " it exceeds max_position_embeddings=", cfg.max_position_embeddings));
    }
  }
  return encoded;
}

}  // namespace

absl::StatusOr<std::vector<Generation>> Policy::Generate(const std::vector<std::string>& prompts,
                                                         const GenerationParams& params) {
  SPAR_RETURN_IF_ERROR(Validate(params));
  SPAR_ASSIGN_OR_RETURN(std::vector<std::vector<int32_t>> encoded,
                        EncodePrompts(*this, prompts, params));
  const StopRules rules(impl_->config, params, impl_->tokenizer.get());
  return internal::TorchCall("Policy::Generate", [&]() -> absl::StatusOr<std::vector<Generation>> {
    internal::InferenceGuard guard;
    impl_->module->eval();
    const int64_t k = params.num_samples;
    const int64_t total = static_cast<int64_t>(prompts.size()) * k;
    std::vector<Generation> out(prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
      out[i].prompt = prompts[i];
      out[i].texts.resize(k);
      out[i].token_ids.resize(k);
      out[i].logprobs.resize(k);
      out[i].token_logprobs.resize(k);
      out[i].finished.resize(k);
      out[i].prompt_ids = encoded[i];
    }
    for (int64_t start = 0; start < total; start += params.max_batch_size) {
      const Batch batch{start, std::min<int64_t>(params.max_batch_size, total - start), k};
      DecodeBatch(*impl_, encoded, batch, params, rules, &out);
    }
    for (Generation& g : out) {
      for (int64_t j = 0; j < k; ++j) g.texts[j] = rules.FinalText(g.token_ids[j]);
    }
    return out;
  });
}

}  // namespace spar::model
