// Policy's construction and checkpoint IO: Load (config.json + safetensors, one file or shards),
// CreateRandom, Save (atomic: built in a sibling tmp directory, then renamed into place) and
// SaveLoraAdapter (PEFT's adapter files).
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <numeric>
#include <optional>
#include <string_view>

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
#include "model/policy.h"
#include "model/safetensors.h"

namespace spar::model {

using internal::TorchCall;
namespace {

constexpr char kConfigFile[] = "config.json";
constexpr char kWeightsFile[] = "model.safetensors";
constexpr char kWeightsIndexFile[] = "model.safetensors.index.json";
constexpr char kTokenizerConfigFile[] = "tokenizer_config.json";
constexpr char kTokenizerFile[] = "tokenizer.json";
// Files copied from the source checkpoint on Save (when present).
constexpr const char* kCopiedFiles[] = {"tokenizer.json",          "tokenizer_config.json",
                                        "special_tokens_map.json", "generation_config.json",
                                        "chat_template.jinja",     "tokenizer.model"};
constexpr int64_t kDefaultMaxShardBytes = int64_t{5} << 30;  // save_pretrained's "5GB"

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

absl::StatusOr<torch::ScalarType> ToTorchType(SafetensorsDType dtype) {
  switch (dtype) {
    case SafetensorsDType::kF64:
      return torch::kFloat64;
    case SafetensorsDType::kF32:
      return torch::kFloat32;
    case SafetensorsDType::kF16:
      return torch::kFloat16;
    case SafetensorsDType::kBF16:
      return torch::kBFloat16;
    default:
      return absl::InvalidArgumentError(absl::StrCat("dtype ",
                                                     std::string(SafetensorsDTypeName(dtype)),
                                                     " is not a floating point weight type"));
  }
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

// Copies every parameter of `impl`'s module from the checkpoint's tensors (converting the dtype),
// and refuses missing, misshapen and unexpected tensors.
absl::Status CopyWeights(const std::string& dir, const WeightFiles& weights, Policy::Impl* impl) {
  const LlamaConfig* config = &impl->config;
  torch::NoGradGuard no_grad;
  std::map<std::string, bool> used;
  for (auto& p : impl->module->named_parameters()) {
    const std::string& name = p.key();
    auto it = weights.where.find(name);
    if (it == weights.where.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(dir, ": missing tensor \"", name,
                       "\" (needed by config.model_type=", config->model_type, ")"));
    }
    const SafetensorsFile& file = weights.files[it->second];
    const std::string& weights_path = weights.paths[it->second];
    const SafetensorsEntry& entry = file.tensors().at(name);
    if (entry.shape != p.value().sizes().vec()) {
      return absl::InvalidArgumentError(absl::StrCat(
          weights_path, ": tensor \"", name, "\" has shape [", absl::StrJoin(entry.shape, ","),
          "], config needs [", absl::StrJoin(p.value().sizes().vec(), ","), "]"));
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
    return absl::InvalidArgumentError(absl::StrCat(weights.paths[index], ": unexpected tensor \"",
                                                   name, "\" (not in a ", config->model_type,
                                                   " model with this config)"));
  }
  return absl::OkStatus();
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
      return absl::InvalidArgumentError(absl::StrCat(dir, ": tokenizer has ", tok->vocab_size(),
                                                     " ids, config.vocab_size is only ",
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
  SPAR_RETURN_IF_ERROR(CopyWeights(dir, weights, impl.get()));
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

// The tensors Save writes, in HF order (named_parameters order), LoRA adapters merged into their
// weights, converted to the disk dtype, cut into shards of at most max_shard_bytes (a larger
// tensor gets a shard of its own).
struct SaveTensors {
  std::vector<torch::Tensor> keep;  // owns the bytes the refs point into
  std::vector<std::vector<SafetensorsTensorRef>> shards{1};
  int64_t total_bytes = 0;
};

SaveTensors CollectSaveTensors(const Policy::Impl& impl, SafetensorsDType disk_type,
                               int64_t max_shard_bytes) {
  const torch::ScalarType torch_type = disk_type == SafetensorsDType::kBF16  ? torch::kBFloat16
                                       : disk_type == SafetensorsDType::kF16 ? torch::kFloat16
                                                                             : torch::kFloat32;
  SaveTensors out;
  int64_t shard_bytes = 0;
  torch::NoGradGuard no_grad;
  const auto params = impl.module->named_parameters();
  for (const auto& p : params) {
    if (absl::StrContains(p.key(), ".lora_")) continue;  // merged below
    torch::Tensor value = p.value().detach();
    if (impl.lora && absl::EndsWith(p.key(), ".weight")) {
      const std::string stem = p.key().substr(0, p.key().size() - 7);
      const torch::Tensor* a = params.find(stem + ".lora_A.weight");
      const torch::Tensor* b = params.find(stem + ".lora_B.weight");
      if (a != nullptr && b != nullptr) {
        value = value + torch::matmul(*b, *a) * impl.lora->scaling();
      }
    }
    torch::Tensor t = value.to(torch::kCPU, torch_type).contiguous();
    out.keep.push_back(t);
    SafetensorsTensorRef ref;
    ref.name = p.key();
    ref.dtype = disk_type;
    ref.shape = t.sizes().vec();
    const int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
    ref.data = std::string_view(static_cast<const char*>(t.data_ptr()), bytes);
    if (!out.shards.back().empty() && shard_bytes + bytes > max_shard_bytes) {
      out.shards.emplace_back();
      shard_bytes = 0;
    }
    out.shards.back().push_back(std::move(ref));
    shard_bytes += bytes;
    out.total_bytes += bytes;
  }
  return out;
}

// model.safetensors, or model-0000i-of-0000n.safetensors shards and their index.
absl::Status WriteWeightFiles(const std::string& tmp, const SaveTensors& tensors) {
  const auto& shards = tensors.shards;
  if (shards.size() == 1) {
    return WriteSafetensors(JoinPath(tmp, kWeightsFile), shards[0], {{"format", "pt"}});
  }
  nlohmann::json weight_map = nlohmann::json::object();
  const size_t n = shards.size();
  for (size_t i = 0; i < n; ++i) {
    char name[64];
    std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", i + 1, n);
    for (const SafetensorsTensorRef& ref : shards[i]) weight_map[ref.name] = name;
    SPAR_RETURN_IF_ERROR(WriteSafetensors(JoinPath(tmp, name), shards[i], {{"format", "pt"}}));
  }
  return WriteJsonFileAtomic(JoinPath(tmp, kWeightsIndexFile),
                             nlohmann::json{{"metadata", {{"total_size", tensors.total_bytes}}},
                                            {"weight_map", weight_map}});
}

// The source checkpoint's tokenizer files, or the byte tokenizer's tokenizer_config.json.
absl::Status WriteTokenizerFiles(const Policy::Impl& impl, const std::string& tmp) {
  bool copied_tokenizer = false;
  if (impl.tokenizer != nullptr && !impl.source_dir.empty()) {
    for (const char* file : kCopiedFiles) {
      const std::string from = JoinPath(impl.source_dir, file);
      if (!PathExists(from)) continue;
      SPAR_ASSIGN_OR_RETURN(std::string contents, ReadFile(from));
      SPAR_RETURN_IF_ERROR(WriteFileAtomic(JoinPath(tmp, file), contents));
      copied_tokenizer = true;
    }
  }
  if (copied_tokenizer) return absl::OkStatus();
  return WriteJsonFileAtomic(JoinPath(tmp, kTokenizerConfigFile),
                             nlohmann::json{{"tokenizer_class", "SparByteTokenizer"},
                                            {"bos_token_id", ByteTokenizer::kBos},
                                            {"eos_token_id", ByteTokenizer::kEos},
                                            {"pad_token_id", ByteTokenizer::kPad},
                                            {"vocab_size", ByteTokenizer::kVocabSize}});
}

// Where Save builds a checkpoint before renaming it into place: a fresh sibling of `dir`.
struct SaveTarget {
  std::string dir;     // without trailing slashes
  std::string parent;  // Dirname(dir)
  std::string suffix;  // unique per save: base name, pid, counter, clock
  std::string tmp;     // parent/tmp-<suffix>
};

absl::StatusOr<SaveTarget> MakeSaveTarget(const std::string& checkpoint_dir) {
  SaveTarget t;
  t.dir = checkpoint_dir;
  while (t.dir.size() > 1 && t.dir.back() == '/') t.dir.pop_back();
  t.parent = Dirname(t.dir);
  const std::string base =
      t.dir.substr(t.dir.find_last_of('/') == std::string::npos ? 0 : t.dir.find_last_of('/') + 1);
  SPAR_RETURN_IF_ERROR(MakeDirs(t.parent.empty() ? "." : t.parent));
  static std::atomic<uint64_t> counter{0};
  t.suffix = absl::StrCat(base, "-", ::getpid(), "-", counter.fetch_add(1), "-",
                          std::chrono::steady_clock::now().time_since_epoch().count());
  t.tmp = JoinPath(t.parent, absl::StrCat("tmp-", t.suffix));
  SPAR_RETURN_IF_ERROR(MakeDirs(t.tmp));
  return t;
}

// Renames the finished tmp directory into place, replacing an older Spar checkpoint there.
absl::Status InstallCheckpoint(const SaveTarget& t) {
  if (PathExists(t.dir) && !IsSparCheckpoint(t.dir)) {
    RemoveAll(t.tmp).IgnoreError();  // ours: the half-built new checkpoint
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint_dir: \"", t.dir, "\" exists and is not a checkpoint written by Spar (no ",
        Policy::kSparCheckpointMarker, "); refusing to replace it"));
  }
  if (PathExists(t.dir)) {
    // rename(2) cannot replace a non-empty directory: move the old one aside first.
    const std::string old = JoinPath(t.parent, absl::StrCat("tmp-old-", t.suffix));
    SPAR_RETURN_IF_ERROR(RenameDurable(t.dir, old));
    SPAR_RETURN_IF_ERROR(RenameDurable(t.tmp, t.dir));
    return RemoveAll(old);
  }
  return RenameDurable(t.tmp, t.dir);
}

}  // namespace

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
    SPAR_ASSIGN_OR_RETURN(SaveTarget target, MakeSaveTarget(checkpoint_dir));
    // Whatever fails below (a full disk, most likely) takes the half-written directory with it;
    // after the rename into place there is nothing left to remove.
    auto remove_tmp = absl::MakeCleanup([&target] { (void)RemoveAll(target.tmp); });
    const SaveTensors tensors = CollectSaveTensors(*impl_, disk_type, max_shard_bytes);
    SPAR_RETURN_IF_ERROR(
        WriteJsonFileAtomic(JoinPath(target.tmp, kConfigFile), ToJson(impl_->config)));
    SPAR_RETURN_IF_ERROR(WriteWeightFiles(target.tmp, tensors));
    SPAR_RETURN_IF_ERROR(WriteTokenizerFiles(*impl_, target.tmp));
    SPAR_RETURN_IF_ERROR(WriteFileAtomic(JoinPath(target.tmp, kSparCheckpointMarker), "spar\n"));
    return InstallCheckpoint(target);
  });
}

bool IsSparCheckpoint(const std::string& dir) {
  return PathExists(JoinPath(dir, Policy::kSparCheckpointMarker));
}

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
    SPAR_RETURN_IF_ERROR(
        WriteSafetensors(JoinPath(dir, "adapter_model.safetensors"), refs, {{"format", "pt"}}));
    return WriteJsonFileAtomic(JoinPath(dir, "adapter_config.json"),
                               ToPeftAdapterConfig(*impl_->lora, base_model));
  });
}

}  // namespace spar::model
