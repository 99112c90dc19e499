#include "model/policy.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <map>
#include <numeric>
#include <string_view>

#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "model/byte_tokenizer.h"
#include "model/internal/llama.h"
#include "model/internal/policy_internal.h"
#include "model/internal/torch_call.h"
#include "model/internal/torch_compat.h"
#include "model/safetensors.h"

namespace spar::model {
namespace {

using internal::TorchCall;

constexpr char kConfigFile[] = "config.json";
constexpr char kWeightsFile[] = "model.safetensors";
constexpr char kTokenizerConfigFile[] = "tokenizer_config.json";

absl::StatusOr<torch::ScalarType> ToTorchType(SafetensorsDType dtype) {
  switch (dtype) {
    case SafetensorsDType::kF64: return torch::kFloat64;
    case SafetensorsDType::kF32: return torch::kFloat32;
    case SafetensorsDType::kF16: return torch::kFloat16;
    case SafetensorsDType::kBF16: return torch::kBFloat16;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "dtype ", std::string(SafetensorsDTypeName(dtype)), " is not a floating point weight type"));
  }
}

absl::Status CheckVocab(const LlamaConfig& config) {
  if (config.vocab_size < ByteTokenizer::kVocabSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.vocab_size must be >= ", ByteTokenizer::kVocabSize,
                     " for the byte tokenizer, got ", config.vocab_size));
  }
  return absl::OkStatus();
}

std::unique_ptr<Policy::Impl> MakeImpl(const LlamaConfig& config) {
  auto impl = std::make_unique<Policy::Impl>();
  impl->config = config;
  impl->module = internal::LlamaForCausalLM(config);
  impl->device = internal::DefaultDevice();
  return impl;
}

// Counter-based uniform in [0, 1): a function of (seed, prompt, sample, step) only, so samples do
// not depend on how rows are batched.
uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

double CounterUniform(uint64_t seed, uint64_t prompt, uint64_t sample, uint64_t step) {
  uint64_t h = SplitMix64(seed);
  h = SplitMix64(h ^ prompt);
  h = SplitMix64(h ^ (sample * 0xD6E8FEB86659FD93ULL));
  h = SplitMix64(h ^ (step + 0x632BE59BD9B4E019ULL));
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

// Picks a token from one row of logits (double). temperature 0 = argmax (lowest id on ties);
// otherwise inverse-CDF sampling of softmax(logits / T) restricted to the top-p nucleus.
int32_t PickToken(const double* logits, int64_t vocab, double temperature, double top_p, double u) {
  if (temperature <= 0.0) {
    return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
  }
  const double max = *std::max_element(logits, logits + vocab);
  std::vector<double> probs(vocab);
  for (int64_t k = 0; k < vocab; ++k) probs[k] = std::exp((logits[k] - max) / temperature);
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  int64_t kept = vocab;
  double total = 0.0;
  if (top_p < 1.0) {
    std::stable_sort(order.begin(), order.end(),
                     [&](int32_t a, int32_t b) { return probs[a] > probs[b]; });
    const double sum = std::accumulate(probs.begin(), probs.end(), 0.0);
    kept = 0;
    // Keep the smallest prefix whose mass reaches top_p (the first token always).
    while (kept < vocab && (kept == 0 || total < top_p * sum)) total += probs[order[kept++]];
  } else {
    total = std::accumulate(probs.begin(), probs.end(), 0.0);
  }
  const double target = u * total;
  double cum = 0.0;
  int32_t last_positive = order[0];
  for (int64_t k = 0; k < kept; ++k) {
    const double p = probs[order[k]];
    if (p <= 0.0) continue;
    last_positive = order[k];
    cum += p;
    if (cum > target) return order[k];
  }
  return last_positive;
}

absl::StatusOr<std::unique_ptr<Policy::Impl>> LoadImpl(const std::string& dir) {
  const std::string config_path = JoinPath(dir, kConfigFile);
  const std::string weights_path = JoinPath(dir, kWeightsFile);
  if (!IsDirectory(dir)) {
    return absl::NotFoundError(absl::StrCat("checkpoint directory ", dir, " does not exist"));
  }
  if (!PathExists(config_path)) {
    return absl::NotFoundError(absl::StrCat(config_path, ": no such file"));
  }
  if (!PathExists(weights_path)) {
    return absl::NotFoundError(absl::StrCat(
        weights_path, ": no such file (sharded checkpoints are not supported)"));
  }
  SPAR_ASSIGN_OR_RETURN(nlohmann::json config_json, ReadJsonFile(config_path));
  absl::StatusOr<LlamaConfig> config = ParseLlamaConfig(config_json);
  if (!config.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": ", config.status().message()));
  }
  SPAR_RETURN_IF_ERROR(CheckVocab(*config));
  SPAR_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Read(weights_path));
  std::unique_ptr<Policy::Impl> impl = MakeImpl(*config);
  torch::NoGradGuard no_grad;
  std::map<std::string, bool> used;
  for (auto& p : impl->module->named_parameters()) {
    const std::string& name = p.key();
    auto it = file.tensors().find(name);
    if (it == file.tensors().end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(weights_path, ": missing tensor \"", name, "\""));
    }
    const SafetensorsEntry& entry = it->second;
    if (entry.shape != p.value().sizes().vec()) {
      return absl::InvalidArgumentError(absl::StrCat(
          weights_path, ": tensor \"", name, "\" has shape [",
          absl::StrJoin(entry.shape, ","), "], config needs [",
          absl::StrJoin(p.value().sizes().vec(), ","), "]"));
    }
    absl::StatusOr<torch::ScalarType> type = ToTorchType(entry.dtype);
    if (!type.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(weights_path, ": tensor \"", name, "\": ", type.status().message()));
    }
    std::string_view bytes = file.Data(entry);
    torch::Tensor src =
        torch::from_blob(const_cast<char*>(bytes.data()), entry.shape, *type).clone();
    p.value().copy_(src.to(torch::kFloat32));
    used[name] = true;
  }
  for (const auto& [name, entry] : file.tensors()) {
    if (used.count(name) > 0) continue;
    if (absl::EndsWith(name, "rotary_emb.inv_freq")) continue;
    if (name == "lm_head.weight" && config->tie_word_embeddings) continue;
    return absl::InvalidArgumentError(
        absl::StrCat(weights_path, ": unexpected tensor \"", name, "\""));
  }
  impl->module->to(impl->device);
  impl->module->eval();
  return impl;
}

}  // namespace

absl::Status Validate(const GenerationParams& p) {
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature)) {
    return absl::InvalidArgumentError(absl::StrCat("temperature must be >= 0, got ", p.temperature));
  }
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", p.top_p));
  }
  if (p.max_new_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_new_tokens must be >= 1, got ", p.max_new_tokens));
  }
  if (p.num_samples < 1) {
    return absl::InvalidArgumentError(absl::StrCat("num_samples must be >= 1, got ", p.num_samples));
  }
  if (p.first_prompt_index < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("first_prompt_index must be >= 0, got ", p.first_prompt_index));
  }
  if (p.max_batch_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_batch_size must be >= 1, got ", p.max_batch_size));
  }
  return absl::OkStatus();
}

Policy::Policy(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Policy::~Policy() = default;

absl::StatusOr<std::unique_ptr<Policy>> Policy::Load(const std::string& checkpoint_dir) {
  return TorchCall("Policy::Load", [&]() -> absl::StatusOr<std::unique_ptr<Policy>> {
    SPAR_ASSIGN_OR_RETURN(std::unique_ptr<Impl> impl, LoadImpl(checkpoint_dir));
    return std::unique_ptr<Policy>(new Policy(std::move(impl)));
  });
}

absl::StatusOr<std::unique_ptr<Policy>> Policy::CreateRandom(const LlamaConfig& config,
                                                             uint64_t seed) {
  SPAR_RETURN_IF_ERROR(Validate(config));
  SPAR_RETURN_IF_ERROR(CheckVocab(config));
  return TorchCall("Policy::CreateRandom", [&]() -> absl::StatusOr<std::unique_ptr<Policy>> {
    std::unique_ptr<Impl> impl = MakeImpl(config);
    internal::InitWeights(impl->module, seed);
    impl->module->to(impl->device);
    impl->module->eval();
    return std::unique_ptr<Policy>(new Policy(std::move(impl)));
  });
}

absl::Status Policy::Save(const std::string& checkpoint_dir) const {
  return TorchCall("Policy::Save", [&]() -> absl::Status {
    std::string dir = checkpoint_dir;
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    const std::string parent = Dirname(dir);
    const std::string base = dir.substr(dir.find_last_of('/') == std::string::npos
                                            ? 0
                                            : dir.find_last_of('/') + 1);
    SPAR_RETURN_IF_ERROR(MakeDirs(parent.empty() ? "." : parent));
    static std::atomic<uint64_t> counter{0};
    const std::string suffix = absl::StrCat(
        base, "-", ::getpid(), "-", counter.fetch_add(1),
        "-", std::chrono::steady_clock::now().time_since_epoch().count());
    const std::string tmp = JoinPath(parent, absl::StrCat("tmp-", suffix));
    SPAR_RETURN_IF_ERROR(MakeDirs(tmp));

    // Tensors in HF order (named_parameters order), float32 little-endian.
    std::vector<torch::Tensor> keep;
    std::vector<SafetensorsTensorRef> refs;
    {
      torch::NoGradGuard no_grad;
      for (const auto& p : impl_->module->named_parameters()) {
        torch::Tensor t = p.value().detach().to(torch::kCPU, torch::kFloat32).contiguous();
        keep.push_back(t);
        SafetensorsTensorRef ref;
        ref.name = p.key();
        ref.dtype = SafetensorsDType::kF32;
        ref.shape = t.sizes().vec();
        ref.data = std::string_view(static_cast<const char*>(t.data_ptr()),
                                    static_cast<size_t>(t.numel()) * sizeof(float));
        refs.push_back(std::move(ref));
      }
    }
    SPAR_RETURN_IF_ERROR(WriteJsonFileAtomic(JoinPath(tmp, kConfigFile), ToJson(impl_->config)));
    SPAR_RETURN_IF_ERROR(
        WriteSafetensors(JoinPath(tmp, kWeightsFile), refs, {{"format", "pt"}}));
    SPAR_RETURN_IF_ERROR(WriteJsonFileAtomic(
        JoinPath(tmp, kTokenizerConfigFile),
        nlohmann::json{{"tokenizer_class", "SparByteTokenizer"},
                       {"bos_token_id", ByteTokenizer::kBos},
                       {"eos_token_id", ByteTokenizer::kEos},
                       {"pad_token_id", ByteTokenizer::kPad},
                       {"vocab_size", ByteTokenizer::kVocabSize}}));
    if (PathExists(dir)) {
      // rename(2) cannot replace a non-empty directory: move the old one aside first.
      const std::string old = JoinPath(parent, absl::StrCat("tmp-old-", suffix));
      SPAR_RETURN_IF_ERROR(RenameDurable(dir, old));
      SPAR_RETURN_IF_ERROR(RenameDurable(tmp, dir));
      return RemoveAll(old);
    }
    return RenameDurable(tmp, dir);
  });
}

absl::StatusOr<std::vector<Generation>> Policy::Generate(const std::vector<std::string>& prompts,
                                                         const GenerationParams& params) {
  SPAR_RETURN_IF_ERROR(Validate(params));
  const LlamaConfig& cfg = impl_->config;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (1 + static_cast<int64_t>(prompts[i].size()) + params.max_new_tokens >
        cfg.max_position_embeddings) {
      return absl::InvalidArgumentError(absl::StrCat(
          "prompts[", i, "] is ", prompts[i].size(), " bytes: with BOS and max_new_tokens=",
          params.max_new_tokens, " it exceeds max_position_embeddings=",
          cfg.max_position_embeddings));
    }
  }
  return TorchCall("Policy::Generate", [&]() -> absl::StatusOr<std::vector<Generation>> {
    internal::InferenceGuard guard;
    auto& module = impl_->module;
    module->eval();
    const torch::Device device = impl_->device;
    const int64_t k = params.num_samples;
    const int64_t total = static_cast<int64_t>(prompts.size()) * k;
    std::vector<Generation> out(prompts.size());
    std::vector<std::vector<int32_t>> encoded(prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
      out[i].prompt = prompts[i];
      out[i].texts.resize(k);
      out[i].token_ids.resize(k);
      out[i].logprobs.resize(k);
      out[i].finished.resize(k);
      encoded[i] = ByteTokenizer::Encode(prompts[i]);
    }
    const auto long_opts = torch::TensorOptions().dtype(torch::kInt64);
    const int64_t vocab = cfg.vocab_size;
    for (int64_t start = 0; start < total; start += params.max_batch_size) {
      const int64_t b = std::min<int64_t>(params.max_batch_size, total - start);
      int64_t max_len = 0;
      for (int64_t r = 0; r < b; ++r) {
        max_len = std::max<int64_t>(max_len, 1 + encoded[(start + r) / k].size());
      }
      // Left padding so every row's next token sits in the last column.
      std::vector<int64_t> ids(b * max_len, cfg.pad_token_id), mask(b * max_len, 0),
          pos(b * max_len, 0);
      std::vector<int64_t> next_pos(b);
      for (int64_t r = 0; r < b; ++r) {
        const auto& toks = encoded[(start + r) / k];
        const int64_t len = 1 + toks.size(), off = max_len - len;
        for (int64_t t = 0; t < len; ++t) {
          ids[r * max_len + off + t] = t == 0 ? cfg.bos_token_id : toks[t - 1];
          mask[r * max_len + off + t] = 1;
          pos[r * max_len + off + t] = t;
        }
        next_pos[r] = len;
      }
      auto to_dev = [&](std::vector<int64_t>& v, int64_t cols) {
        return torch::from_blob(v.data(), {b, cols}, long_opts).clone().to(device);
      };
      torch::Tensor key_mask = to_dev(mask, max_len);
      internal::KvCache cache;
      torch::Tensor logits =
          module->forward(to_dev(ids, max_len), to_dev(pos, max_len), key_mask, &cache)
              .select(1, max_len - 1);
      std::vector<char> done(b, 0);
      int64_t remaining = b;
      for (int step = 0; step < params.max_new_tokens && remaining > 0; ++step) {
        torch::Tensor row_logits = logits.to(torch::kCPU).to(torch::kFloat64).contiguous();
        torch::Tensor logp = torch::log_softmax(row_logits, -1).contiguous();
        const double* lg = row_logits.data_ptr<double>();
        const double* lp = logp.data_ptr<double>();
        std::vector<int64_t> next(b, cfg.pad_token_id);
        for (int64_t r = 0; r < b; ++r) {
          if (done[r]) continue;
          const int64_t row = start + r, i = row / k, j = row % k;
          const double u =
              CounterUniform(params.seed, params.first_prompt_index + i, j, step);
          const int32_t tok =
              PickToken(lg + r * vocab, vocab, params.temperature, params.top_p, u);
          out[i].token_ids[j].push_back(tok);
          out[i].logprobs[j] += lp[r * vocab + tok];
          next[r] = tok;
          if (tok == cfg.eos_token_id) {
            out[i].finished[j] = true;
            done[r] = 1;
            --remaining;
          }
        }
        if (remaining == 0 || step + 1 == params.max_new_tokens) break;
        std::vector<int64_t> step_pos(b);
        for (int64_t r = 0; r < b; ++r) step_pos[r] = next_pos[r]++;
        key_mask = torch::cat({key_mask, torch::ones({b, 1}, long_opts.device(device))}, 1);
        logits = module
                     ->forward(to_dev(next, 1), to_dev(step_pos, 1), key_mask, &cache)
                     .select(1, 0);
      }
    }
    for (auto& g : out) {
      for (int64_t j = 0; j < k; ++j) g.texts[j] = ByteTokenizer::Decode(g.token_ids[j]);
    }
    return out;
  });
}

absl::StatusOr<std::vector<double>> Policy::ScoreResponses(
    const std::vector<std::pair<std::string, std::string>>& prompt_response, int max_batch_size) {
  if (max_batch_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_batch_size must be >= 1, got ", max_batch_size));
  }
  const LlamaConfig& cfg = impl_->config;
  for (size_t i = 0; i < prompt_response.size(); ++i) {
    const size_t len = 2 + prompt_response[i].first.size() + prompt_response[i].second.size();
    if (static_cast<int64_t>(len) > cfg.max_position_embeddings) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt_response[", i, "] is ", len,
                       " tokens, over max_position_embeddings=", cfg.max_position_embeddings));
    }
  }
  return TorchCall("Policy::ScoreResponses", [&]() -> absl::StatusOr<std::vector<double>> {
    internal::InferenceGuard guard;
    impl_->module->eval();
    std::vector<double> out;
    out.reserve(prompt_response.size());
    for (size_t start = 0; start < prompt_response.size(); start += max_batch_size) {
      const size_t end = std::min(prompt_response.size(), start + max_batch_size);
      std::vector<std::vector<int32_t>> prompts, responses;
      for (size_t i = start; i < end; ++i) {
        prompts.push_back(ByteTokenizer::Encode(prompt_response[i].first));
        responses.push_back(ByteTokenizer::Encode(prompt_response[i].second));
        responses.back().push_back(static_cast<int32_t>(cfg.eos_token_id));
      }
      internal::ScoreBatch batch = internal::MakeScoreBatch(
          prompts, responses, cfg.bos_token_id, cfg.pad_token_id, impl_->device);
      torch::Tensor lp = internal::SequenceLogProbs(impl_->module, batch)
                             .to(torch::kCPU)
                             .to(torch::kFloat64)
                             .contiguous();
      const double* p = lp.data_ptr<double>();
      out.insert(out.end(), p, p + lp.numel());
    }
    return out;
  });
}

int64_t Policy::NumParameters() const {
  int64_t n = 0;
  for (const auto& p : impl_->module->parameters()) n += p.numel();
  return n;
}

const LlamaConfig& Policy::config() const { return impl_->config; }

}  // namespace spar::model
