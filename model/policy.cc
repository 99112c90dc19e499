#include "model/policy.h"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <atomic>
#include <chrono>
#include <cmath>
#include <map>
#include <numeric>
#include <string_view>

#include <unistd.h>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "model/byte_tokenizer.h"
#include "model/chat_template.h"
#include "model/chat_template_setting.h"
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
constexpr char kWeightsIndexFile[] = "model.safetensors.index.json";
constexpr char kTokenizerConfigFile[] = "tokenizer_config.json";
constexpr char kTokenizerFile[] = "tokenizer.json";
// Files copied from the source checkpoint on Save (when present).
constexpr const char* kCopiedFiles[] = {"tokenizer.json", "tokenizer_config.json",
                                        "special_tokens_map.json", "generation_config.json",
                                        "chat_template.jinja", "tokenizer.model"};
constexpr int64_t kDefaultMaxShardBytes = int64_t{5} << 30;  // save_pretrained's "5GB"

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
int32_t PickToken(const double* logits, int64_t vocab, double temperature, double top_p, double u,
                  int top_k = 0, double min_p = 0.0) {
  if (temperature <= 0.0) {
    return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
  }
  const double max = *std::max_element(logits, logits + vocab);
  std::vector<double> probs(vocab);
  for (int64_t k = 0; k < vocab; ++k) probs[k] = std::exp((logits[k] - max) / temperature);
  // min-p: relative to the most likely token (whose unnormalised probability is 1 here).
  if (min_p > 0.0) {
    for (int64_t k = 0; k < vocab; ++k) {
      if (probs[k] < min_p) probs[k] = 0.0;
    }
  }
  // top-k: the k largest (lowest id first among ties).
  if (top_k > 0 && top_k < vocab) {
    std::vector<int32_t> idx(vocab);
    std::iota(idx.begin(), idx.end(), 0);
    std::nth_element(idx.begin(), idx.begin() + (top_k - 1), idx.end(), [&](int32_t a, int32_t b) {
      return probs[a] != probs[b] ? probs[a] > probs[b] : a < b;
    });
    const int32_t kth = idx[top_k - 1];
    for (int64_t k = 0; k < vocab; ++k) {
      if (probs[k] < probs[kth] || (probs[k] == probs[kth] && k > kth)) probs[k] = 0.0;
    }
  }
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

// The safetensors files of a checkpoint: model.safetensors, or the shards named by
// model.safetensors.index.json. Maps each tensor name to its file.
struct WeightFiles {
  std::vector<SafetensorsFile> files;
  std::vector<std::string> paths;
  std::map<std::string, size_t> where;  // tensor name -> index into files
};

absl::StatusOr<WeightFiles> ReadWeights(const std::string& dir) {
  WeightFiles w;
  const std::string single = JoinPath(dir, kWeightsFile);
  const std::string index = JoinPath(dir, kWeightsIndexFile);
  std::vector<std::string> names;
  if (PathExists(single)) {
    names.push_back(kWeightsFile);
  } else if (PathExists(index)) {
    SPAR_ASSIGN_OR_RETURN(nlohmann::json j, ReadJsonFile(index));
    if (!j.contains("weight_map") || !j["weight_map"].is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(index, ": no \"weight_map\" object"));
    }
    for (const auto& [tensor, file] : j["weight_map"].items()) {
      if (!file.is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(index, ": weight_map[\"", tensor, "\"] is not a file name"));
      }
      std::string f = file.get<std::string>();
      if (std::find(names.begin(), names.end(), f) == names.end()) names.push_back(f);
    }
  } else {
    return absl::NotFoundError(
        absl::StrCat(dir, ": neither ", kWeightsFile, " nor ", kWeightsIndexFile));
  }
  for (const std::string& name : names) {
    const std::string path = JoinPath(dir, name);
    SPAR_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Read(path));
    for (const auto& [tensor, entry] : file.tensors()) {
      if (w.where.count(tensor) > 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": tensor \"", tensor, "\" also in ", w.paths[w.where[tensor]]));
      }
      w.where[tensor] = w.files.size();
    }
    w.files.push_back(std::move(file));
    w.paths.push_back(path);
  }
  return w;
}

absl::StatusOr<std::unique_ptr<Policy::Impl>> LoadImpl(const std::string& dir) {
  const std::string config_path = JoinPath(dir, kConfigFile);
  if (!IsDirectory(dir)) {
    return absl::NotFoundError(absl::StrCat("checkpoint directory ", dir, " does not exist"));
  }
  if (!PathExists(config_path)) {
    return absl::NotFoundError(absl::StrCat(config_path, ": no such file"));
  }
  if (!PathExists(JoinPath(dir, kWeightsFile)) && !PathExists(JoinPath(dir, kWeightsIndexFile))) {
    return absl::NotFoundError(
        absl::StrCat(dir, ": neither ", kWeightsFile, " nor ", kWeightsIndexFile));
  }
  SPAR_ASSIGN_OR_RETURN(nlohmann::json config_json, ReadJsonFile(config_path));
  absl::StatusOr<LlamaConfig> config = ParseLlamaConfig(config_json);
  if (!config.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": ", config.status().message()));
  }
  std::shared_ptr<const HfTokenizer> tokenizer;
  if (PathExists(JoinPath(dir, kTokenizerFile))) {
    SPAR_ASSIGN_OR_RETURN(std::unique_ptr<HfTokenizer> tok, HfTokenizer::Load(dir));
    if (tok->vocab_size() > config->vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          dir, ": tokenizer has ", tok->vocab_size(), " ids, config.vocab_size is only ",
          config->vocab_size));
    }
    tokenizer = std::move(tok);
  } else {
    SPAR_RETURN_IF_ERROR(CheckVocab(*config));
  }
  SPAR_ASSIGN_OR_RETURN(WeightFiles weights, ReadWeights(dir));
  std::unique_ptr<Policy::Impl> impl = MakeImpl(*config);
  impl->tokenizer = std::move(tokenizer);
  impl->source_dir = dir;
  torch::NoGradGuard no_grad;
  std::map<std::string, bool> used;
  for (auto& p : impl->module->named_parameters()) {
    const std::string& name = p.key();
    auto it = weights.where.find(name);
    if (it == weights.where.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(dir, ": missing tensor \"", name, "\" (needed by config.model_type=",
                       config->model_type, ")"));
    }
    const SafetensorsFile& file = weights.files[it->second];
    const std::string& weights_path = weights.paths[it->second];
    const SafetensorsEntry& entry = file.tensors().at(name);
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
    // copy_ converts the on-disk dtype straight from the mapped file into the float32 parameter
    // (no copy of the file in memory); then the tensor's pages leave our resident set.
    p.value().copy_(torch::from_blob(const_cast<char*>(bytes.data()), entry.shape, *type));
    file.Release(entry);
    used[name] = true;
  }
  for (const auto& [name, index] : weights.where) {
    if (used.count(name) > 0) continue;
    if (absl::EndsWith(name, "rotary_emb.inv_freq")) continue;
    if (name == "lm_head.weight" && config->tie_word_embeddings) continue;
    return absl::InvalidArgumentError(absl::StrCat(
        weights.paths[index], ": unexpected tensor \"", name, "\" (not in a ",
        config->model_type, " model with this config)"));
  }
  impl->module->to(impl->device);
  impl->module->eval();
  return impl;
}

absl::StatusOr<SafetensorsDType> DiskType(const std::string& torch_dtype) {
  if (torch_dtype == "float32") return SafetensorsDType::kF32;
  if (torch_dtype == "bfloat16") return SafetensorsDType::kBF16;
  if (torch_dtype == "float16") return SafetensorsDType::kF16;
  return absl::InvalidArgumentError(
      absl::StrCat("config.torch_dtype: cannot save as \"", torch_dtype, "\""));
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
  if (absl::Status st = ValidateChatTemplateSetting(p.chat_template); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("chat_template: ", st.message()));
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
  return Save(checkpoint_dir, kDefaultMaxShardBytes);
}

absl::Status Policy::Save(const std::string& checkpoint_dir, int64_t max_shard_bytes) const {
  if (max_shard_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_shard_bytes must be > 0, got ", max_shard_bytes));
  }
  SPAR_ASSIGN_OR_RETURN(SafetensorsDType disk_type, DiskType(impl_->config.torch_dtype));
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
    // Whatever fails below (a full disk, most likely) takes the half-written directory with it;
    // after the rename into place there is nothing left to remove.
    auto remove_tmp = absl::MakeCleanup([&tmp] { (void)RemoveAll(tmp); });

    // Tensors in HF order (named_parameters order), little-endian, in the config's dtype.
    const torch::ScalarType torch_type = disk_type == SafetensorsDType::kBF16  ? torch::kBFloat16
                                         : disk_type == SafetensorsDType::kF16 ? torch::kFloat16
                                                                               : torch::kFloat32;
    std::vector<torch::Tensor> keep;
    std::vector<std::vector<SafetensorsTensorRef>> shards(1);
    int64_t shard_bytes = 0, total_bytes = 0;
    {
      torch::NoGradGuard no_grad;
      const auto params = impl_->module->named_parameters();
      for (const auto& p : params) {
        if (absl::StrContains(p.key(), ".lora_")) continue;  // merged below
        torch::Tensor value = p.value().detach();
        if (impl_->lora && absl::EndsWith(p.key(), ".weight")) {
          const std::string stem = p.key().substr(0, p.key().size() - 7);
          const torch::Tensor* a = params.find(stem + ".lora_A.weight");
          const torch::Tensor* b = params.find(stem + ".lora_B.weight");
          if (a != nullptr && b != nullptr) {
            value = value + torch::matmul(*b, *a) * impl_->lora->scaling();
          }
        }
        torch::Tensor t = value.to(torch::kCPU, torch_type).contiguous();
        keep.push_back(t);
        SafetensorsTensorRef ref;
        ref.name = p.key();
        ref.dtype = disk_type;
        ref.shape = t.sizes().vec();
        const int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
        ref.data = std::string_view(static_cast<const char*>(t.data_ptr()), bytes);
        if (!shards.back().empty() && shard_bytes + bytes > max_shard_bytes) {
          shards.emplace_back();
          shard_bytes = 0;
        }
        shards.back().push_back(std::move(ref));
        shard_bytes += bytes;
        total_bytes += bytes;
      }
    }
    SPAR_RETURN_IF_ERROR(WriteJsonFileAtomic(JoinPath(tmp, kConfigFile), ToJson(impl_->config)));
    if (shards.size() == 1) {
      SPAR_RETURN_IF_ERROR(
          WriteSafetensors(JoinPath(tmp, kWeightsFile), shards[0], {{"format", "pt"}}));
    } else {
      nlohmann::json weight_map = nlohmann::json::object();
      const size_t n = shards.size();
      for (size_t i = 0; i < n; ++i) {
        char name[64];
        std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", i + 1, n);
        for (const SafetensorsTensorRef& ref : shards[i]) weight_map[ref.name] = name;
        SPAR_RETURN_IF_ERROR(WriteSafetensors(JoinPath(tmp, name), shards[i], {{"format", "pt"}}));
      }
      SPAR_RETURN_IF_ERROR(WriteJsonFileAtomic(
          JoinPath(tmp, kWeightsIndexFile),
          nlohmann::json{{"metadata", {{"total_size", total_bytes}}},
                         {"weight_map", weight_map}}));
    }
    bool copied_tokenizer = false;
    if (impl_->tokenizer != nullptr && !impl_->source_dir.empty()) {
      for (const char* file : kCopiedFiles) {
        const std::string from = JoinPath(impl_->source_dir, file);
        if (!PathExists(from)) continue;
        SPAR_ASSIGN_OR_RETURN(std::string contents, ReadFile(from));
        SPAR_RETURN_IF_ERROR(WriteFileAtomic(JoinPath(tmp, file), contents));
        copied_tokenizer = true;
      }
    }
    if (!copied_tokenizer) {
      SPAR_RETURN_IF_ERROR(WriteJsonFileAtomic(
          JoinPath(tmp, kTokenizerConfigFile),
          nlohmann::json{{"tokenizer_class", "SparByteTokenizer"},
                         {"bos_token_id", ByteTokenizer::kBos},
                         {"eos_token_id", ByteTokenizer::kEos},
                         {"pad_token_id", ByteTokenizer::kPad},
                         {"vocab_size", ByteTokenizer::kVocabSize}}));
    }
    SPAR_RETURN_IF_ERROR(WriteFileAtomic(JoinPath(tmp, kSparCheckpointMarker), "spar\n"));
    if (PathExists(dir) && !IsSparCheckpoint(dir)) {
      RemoveAll(tmp).IgnoreError();  // ours: the half-built new checkpoint
      return absl::FailedPreconditionError(absl::StrCat(
          "checkpoint_dir: \"", dir, "\" exists and is not a checkpoint written by Spar (no ",
          kSparCheckpointMarker, "); refusing to replace it"));
    }
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

const HfTokenizer* Policy::tokenizer() const { return impl_->tokenizer.get(); }

bool IsSparCheckpoint(const std::string& dir) {
  return PathExists(JoinPath(dir, Policy::kSparCheckpointMarker));
}

absl::Status Policy::AddLora(const LoraConfig& config) {
  SPAR_RETURN_IF_ERROR(Validate(config));
  if (impl_->lora) return absl::FailedPreconditionError("LoRA adapters are already attached");
  return TorchCall("Policy::AddLora", [&]() -> absl::Status {
    internal::AddLoraAdapters(impl_->module, config.rank, config.scaling(), config.dropout,
                              config.target_modules, config.seed);
    impl_->lora = config;
    return absl::OkStatus();
  });
}

bool Policy::has_lora() const { return impl_->lora.has_value(); }

absl::Status Policy::SaveLoraAdapter(const std::string& dir, const std::string& base_model) const {
  if (!impl_->lora) return absl::FailedPreconditionError("no LoRA adapters attached");
  return TorchCall("Policy::SaveLoraAdapter", [&]() -> absl::Status {
    SPAR_RETURN_IF_ERROR(MakeDirs(dir));
    std::vector<torch::Tensor> keep;
    std::vector<SafetensorsTensorRef> refs;
    torch::NoGradGuard no_grad;
    for (const auto& p : impl_->module->named_parameters()) {
      if (!absl::StrContains(p.key(), ".lora_")) continue;
      torch::Tensor t = p.value().detach().to(torch::kCPU, torch::kFloat32).contiguous();
      keep.push_back(t);
      SafetensorsTensorRef ref;
      ref.name = absl::StrCat("base_model.model.", p.key());
      ref.dtype = SafetensorsDType::kF32;
      ref.shape = t.sizes().vec();
      ref.data = std::string_view(static_cast<const char*>(t.data_ptr()),
                                  static_cast<size_t>(t.numel()) * sizeof(float));
      refs.push_back(std::move(ref));
    }
    SPAR_RETURN_IF_ERROR(WriteSafetensors(JoinPath(dir, "adapter_model.safetensors"), refs,
                                          {{"format", "pt"}}));
    return WriteJsonFileAtomic(JoinPath(dir, "adapter_config.json"),
                               ToPeftAdapterConfig(*impl_->lora, base_model));
  });
}

namespace {

// The template family a chat_template setting selects for a checkpoint's tokenizer (null: none,
// byte tokenizer), or nullopt for raw text.
absl::StatusOr<std::optional<ChatTemplateKind>> ResolveChatTemplateKind(
    const HfTokenizer* tok, const std::string& chat_template) {
  return ResolveChatTemplateSetting(chat_template, tok != nullptr,
                                    tok != nullptr ? tok->chat_template() : std::string());
}

}  // namespace

absl::StatusOr<std::string> Policy::ResolveChatTemplate(const std::string& chat_template) const {
  SPAR_ASSIGN_OR_RETURN(std::optional<ChatTemplateKind> kind,
                        ResolveChatTemplateKind(impl_->tokenizer.get(), chat_template));
  return kind ? std::string(ChatTemplateName(*kind)) : std::string();
}

absl::StatusOr<std::vector<int32_t>> Policy::EncodePrompt(const std::string& prompt,
                                                          const std::string& chat_template) const {
  const LlamaConfig& cfg = impl_->config;
  SPAR_ASSIGN_OR_RETURN(std::optional<ChatTemplateKind> kind,
                        ResolveChatTemplateKind(impl_->tokenizer.get(), chat_template));
  if (kind) {
    const HfTokenizer& tok = *impl_->tokenizer;
    ChatRenderOptions render;
    render.add_generation_prompt = true;
    render.bos_token = tok.bos_token().value_or("");
    render.eos_token = tok.eos_token().value_or("");
    SPAR_ASSIGN_OR_RETURN(std::string text, RenderChat(*kind, {{"user", prompt}}, render));
    // As transformers' apply_chat_template(tokenize=True): the specials are in the text.
    return tok.Encode(text, EncodeOptions{});
  }
  if (chat_template == kVerbatimPrompt) {
    // Text a template rendered (an engine request): its specials are in the text already.
    std::vector<int32_t> ids;
    if (impl_->tokenizer == nullptr) {
      ids = ByteTokenizer::Encode(prompt);
    } else {
      SPAR_ASSIGN_OR_RETURN(ids, impl_->tokenizer->Encode(prompt, EncodeOptions{}));
    }
    if (ids.empty()) ids.push_back(static_cast<int32_t>(cfg.bos_token_id));
    return ids;
  }
  if (impl_->tokenizer == nullptr) {
    std::vector<int32_t> ids = {static_cast<int32_t>(cfg.bos_token_id)};
    std::vector<int32_t> bytes = ByteTokenizer::Encode(prompt);
    ids.insert(ids.end(), bytes.begin(), bytes.end());
    return ids;
  }
  const HfTokenizer& tok = *impl_->tokenizer;
  EncodeOptions options;
  // A chat-rendered prompt already starts with the BOS text: do not add a second one.
  std::optional<std::string> bos = tok.bos_token();
  options.add_special_tokens = !(bos && !bos->empty() && absl::StartsWith(prompt, *bos));
  SPAR_ASSIGN_OR_RETURN(std::vector<int32_t> ids, tok.Encode(prompt, options));
  if (ids.empty()) {
    // Nothing to condition on: start from BOS (or the configured one).
    ids.push_back(static_cast<int32_t>(tok.bos_token_id().value_or(cfg.bos_token_id)));
  }
  return ids;
}

absl::StatusOr<std::vector<int32_t>> Policy::EncodeResponse(const std::string& response,
                                                            bool finished) const {
  std::vector<int32_t> ids;
  if (impl_->tokenizer == nullptr) {
    ids = ByteTokenizer::Encode(response);
  } else {
    SPAR_ASSIGN_OR_RETURN(ids, impl_->tokenizer->Encode(response));
  }
  if (finished) ids.push_back(static_cast<int32_t>(impl_->config.eos_token_id));
  return ids;
}

std::string Policy::TokenizerFingerprint() const {
  // FNV-1a: stable across processes.
  uint64_t h = 14695981039346656037ULL;
  auto add = [&h](std::string_view s) {
    for (unsigned char ch : s) {
      h ^= ch;
      h *= 1099511628211ULL;
    }
    h ^= 0xff;
    h *= 1099511628211ULL;
  };
  const LlamaConfig& cfg = impl_->config;
  const std::string ids = absl::StrCat(cfg.bos_token_id, "/", cfg.eos_token_id, "/",
                                       cfg.pad_token_id);
  const HfTokenizer* tok = impl_->tokenizer.get();
  if (tok == nullptr) return absl::StrCat("byte/", ids);
  for (int32_t id = 0; id < tok->vocab_size(); ++id) {
    std::optional<std::string> t = tok->IdToToken(id);
    add(t ? *t : std::string("\x01unused"));
    add(tok->IsSpecial(id) ? "s" : "-");
  }
  add(absl::StrCat(tok->bos_token_id().value_or(-1), "/", tok->eos_token_id().value_or(-1), "/",
                   tok->pad_token_id().value_or(-1)));
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
  return absl::StrCat("hf/", tok->vocab_size(), "/", ids, "/", hex);
}

std::string Policy::TokenizerDescription() const {
  const LlamaConfig& cfg = impl_->config;
  if (impl_->tokenizer == nullptr) {
    return absl::StrCat("byte tokenizer (eos ", cfg.eos_token_id, ")");
  }
  return absl::StrCat("tokenizer.json with ", impl_->tokenizer->vocab_size(), " ids (eos ",
                      cfg.eos_token_id, ")");
}

absl::StatusOr<std::vector<Generation>> Policy::Generate(const std::vector<std::string>& prompts,
                                                         const GenerationParams& params) {
  SPAR_RETURN_IF_ERROR(Validate(params));
  const LlamaConfig& cfg = impl_->config;
  std::vector<std::vector<int32_t>> encoded(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    SPAR_ASSIGN_OR_RETURN(encoded[i], EncodePrompt(prompts[i], params.chat_template));
    if (static_cast<int64_t>(encoded[i].size()) + params.max_new_tokens >
        cfg.max_position_embeddings) {
      return absl::InvalidArgumentError(absl::StrCat(
          "prompts[", i, "] is ", encoded[i].size(), " tokens (BOS included): with max_new_tokens=",
          params.max_new_tokens, " it exceeds max_position_embeddings=",
          cfg.max_position_embeddings));
    }
  }
  std::vector<int32_t> stop_ids = params.stop_token_ids;
  stop_ids.push_back(static_cast<int32_t>(cfg.eos_token_id));
  for (int64_t id : cfg.extra_eos_token_ids) stop_ids.push_back(static_cast<int32_t>(id));
  const HfTokenizer* tokenizer = impl_->tokenizer.get();
  auto decode = [&](const std::vector<int32_t>& ids) -> std::string {
    if (tokenizer == nullptr) return ByteTokenizer::Decode(ids);
    DecodeOptions options;
    options.skip_special_tokens = true;
    absl::StatusOr<std::string> text = tokenizer->Decode(ids, options);
    return text.ok() ? *text : std::string();
  };
  auto is_stop = [&](int32_t tok) {
    return std::find(stop_ids.begin(), stop_ids.end(), tok) != stop_ids.end();
  };
  // Where the first stop string starts in `text`, or npos.
  auto stop_at = [&](const std::string& text) {
    size_t at = std::string::npos;
    for (const std::string& stop : params.stop_strings) {
      if (!stop.empty()) at = std::min(at, text.find(stop));
    }
    return at;
  };
  return TorchCall("Policy::Generate", [&]() -> absl::StatusOr<std::vector<Generation>> {
    internal::InferenceGuard guard;
    auto& module = impl_->module;
    module->eval();
    const torch::Device device = impl_->device;
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
    const auto long_opts = torch::TensorOptions().dtype(torch::kInt64);
    const int64_t vocab = cfg.vocab_size;
    for (int64_t start = 0; start < total; start += params.max_batch_size) {
      const int64_t b = std::min<int64_t>(params.max_batch_size, total - start);
      int64_t max_len = 0;
      for (int64_t r = 0; r < b; ++r) {
        max_len = std::max<int64_t>(max_len, encoded[(start + r) / k].size());
      }
      // Left padding so every row's next token sits in the last column.
      std::vector<int64_t> ids(b * max_len, cfg.pad_token_id), mask(b * max_len, 0),
          pos(b * max_len, 0);
      std::vector<int64_t> next_pos(b);
      for (int64_t r = 0; r < b; ++r) {
        const auto& toks = encoded[(start + r) / k];
        const int64_t len = toks.size(), off = max_len - len;
        for (int64_t t = 0; t < len; ++t) {
          ids[r * max_len + off + t] = toks[t];
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
          const int32_t tok = PickToken(lg + r * vocab, vocab, params.temperature, params.top_p,
                                        u, params.top_k, params.min_p);
          out[i].token_ids[j].push_back(tok);
          out[i].logprobs[j] += lp[r * vocab + tok];
          out[i].token_logprobs[j].push_back(lp[r * vocab + tok]);
          next[r] = tok;
          bool stop = is_stop(tok);
          if (!stop && !params.stop_strings.empty()) {
            stop = stop_at(decode(out[i].token_ids[j])) != std::string::npos;
          }
          if (stop) {
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
      for (int64_t j = 0; j < k; ++j) {
        std::vector<int32_t> ids = g.token_ids[j];
        if (!ids.empty() && is_stop(ids.back())) ids.pop_back();
        g.texts[j] = decode(ids);
        if (!params.stop_strings.empty()) {
          const size_t at = stop_at(g.texts[j]);
          if (at != std::string::npos) g.texts[j].resize(at);
        }
      }
    }
    return out;
  });
}

absl::StatusOr<std::vector<double>> Policy::ScoreResponses(
    const std::vector<std::pair<std::string, std::string>>& prompt_response, int max_batch_size,
    const std::string& chat_template) {
  const LlamaConfig& cfg = impl_->config;
  std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> tokens;
  tokens.reserve(prompt_response.size());
  for (size_t i = 0; i < prompt_response.size(); ++i) {
    SPAR_ASSIGN_OR_RETURN(std::vector<int32_t> prompt,
                          EncodePrompt(prompt_response[i].first, chat_template));
    SPAR_ASSIGN_OR_RETURN(std::vector<int32_t> response, EncodeResponse(prompt_response[i].second));
    const size_t len = prompt.size() + response.size();
    if (static_cast<int64_t>(len) > cfg.max_position_embeddings) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt_response[", i, "] is ", len,
                       " tokens, over max_position_embeddings=", cfg.max_position_embeddings));
    }
    tokens.emplace_back(std::move(prompt), std::move(response));
  }
  return ScoreTokens(tokens, max_batch_size);
}

absl::StatusOr<std::vector<double>> Policy::ScoreTokens(
    const std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>>& prompt_response,
    int max_batch_size) {
  if (max_batch_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_batch_size must be >= 1, got ", max_batch_size));
  }
  const LlamaConfig& cfg = impl_->config;
  for (size_t i = 0; i < prompt_response.size(); ++i) {
    const auto& [prompt, response] = prompt_response[i];
    if (prompt.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("prompt_response[", i, "]: empty prompt"));
    }
    if (static_cast<int64_t>(prompt.size() + response.size()) > cfg.max_position_embeddings) {
      return absl::InvalidArgumentError(absl::StrCat(
          "prompt_response[", i, "] is ", prompt.size() + response.size(),
          " tokens, over max_position_embeddings=", cfg.max_position_embeddings));
    }
    for (const auto* ids : {&prompt, &response}) {
      for (int32_t id : *ids) {
        if (id < 0 || id >= cfg.vocab_size) {
          return absl::InvalidArgumentError(absl::StrCat(
              "prompt_response[", i, "]: token id ", id, " out of range [0, ", cfg.vocab_size, ")"));
        }
      }
    }
  }
  return TorchCall("Policy::ScoreTokens", [&]() -> absl::StatusOr<std::vector<double>> {
    internal::InferenceGuard guard;
    impl_->module->eval();
    std::vector<double> out;
    out.reserve(prompt_response.size());
    for (size_t start = 0; start < prompt_response.size(); start += max_batch_size) {
      const size_t end = std::min(prompt_response.size(), start + max_batch_size);
      // MakeScoreBatch puts one leading token per row: rows start with their own first token,
      // so the rest of the prompt follows it. Rows are right-padded with pad_token_id.
      std::vector<std::vector<int32_t>> prompts, responses;
      std::vector<int64_t> first;
      for (size_t i = start; i < end; ++i) {
        const auto& prompt = prompt_response[i].first;
        first.push_back(prompt[0]);
        prompts.emplace_back(prompt.begin() + 1, prompt.end());
        responses.push_back(prompt_response[i].second);
      }
      internal::ScoreBatch batch = internal::MakeScoreBatch(
          prompts, responses, first[0], cfg.pad_token_id, impl_->device);
      // Rows whose first token differs from row 0's.
      torch::Tensor firsts = torch::tensor(first, torch::kInt64).to(impl_->device);
      batch.input_ids.select(1, 0).copy_(firsts);
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
