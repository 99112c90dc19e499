#include "trainer/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "model/byte_tokenizer.h"
#include "model/chat_template.h"
#include "model/internal/policy_internal.h"
#include "model/internal/torch_call.h"
#include "model/internal/torch_compat.h"
#include "model/policy.h"
#include "trainer/internal/distributed.h"
#include "trainer/internal/train_util.h"
#include "trainer/losses.h"
#include "trainer/process_group.h"

namespace spar::trainer {
namespace internal {

TokenizedExample Tokenize(const std::string& prompt, const std::string& response, int32_t eos) {
  TokenizedExample ex;
  ex.first = model::ByteTokenizer::kBos;
  ex.prompt = model::ByteTokenizer::Encode(prompt);
  ex.response = model::ByteTokenizer::Encode(response);
  ex.response.push_back(eos);
  return ex;
}

void Truncate(TokenizedExample& ex, int max_prompt_length, int max_length) {
  if (max_prompt_length > 0 && ex.prompt.size() > static_cast<size_t>(max_prompt_length)) {
    ex.prompt.erase(ex.prompt.begin(), ex.prompt.end() - max_prompt_length);  // keep the end
  }
  if (max_length > 0 && ex.prompt.size() + ex.response.size() > static_cast<size_t>(max_length)) {
    // At least one response token survives: cut the prompt's start first if it alone is too long.
    const size_t max_prompt = static_cast<size_t>(max_length - 1);
    if (ex.prompt.size() > max_prompt) {
      ex.prompt.erase(ex.prompt.begin(), ex.prompt.end() - max_prompt);
    }
    ex.response.resize(static_cast<size_t>(max_length) - ex.prompt.size());  // keep the start
  }
}

std::vector<size_t> Permutation(size_t n, std::mt19937_64& rng) {
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
  return order;
}

std::vector<std::vector<size_t>> EpochBatches(const std::vector<size_t>& lengths,
                                              size_t batch_size, bool bucketing,
                                              std::mt19937_64& rng) {
  const size_t n = lengths.size();
  std::vector<size_t> order = Permutation(n, rng);
  std::vector<std::vector<size_t>> batches;
  if (!bucketing) {
    for (size_t s = 0; s < n; s += batch_size) {
      batches.emplace_back(order.begin() + s, order.begin() + std::min(n, s + batch_size));
    }
    return batches;
  }
  // Sort within mega-batches of kBucketBatches batches (longest first, ties by index), cut into
  // batches, then shuffle the batch order: similar lengths share a batch, the order stays random.
  constexpr size_t kBucketBatches = 16;
  const size_t mega = batch_size * kBucketBatches;
  for (size_t s = 0; s < n; s += mega) {
    std::vector<size_t> chunk(order.begin() + s, order.begin() + std::min(n, s + mega));
    std::stable_sort(chunk.begin(), chunk.end(), [&](size_t a, size_t b) {
      return lengths[a] != lengths[b] ? lengths[a] > lengths[b] : a < b;
    });
    for (size_t k = 0; k < chunk.size(); k += batch_size) {
      batches.emplace_back(chunk.begin() + k,
                           chunk.begin() + std::min(chunk.size(), k + batch_size));
    }
  }
  std::vector<size_t> batch_order = Permutation(batches.size(), rng);
  std::vector<std::vector<size_t>> shuffled;
  shuffled.reserve(batches.size());
  for (size_t i : batch_order) shuffled.push_back(std::move(batches[i]));
  return shuffled;
}

double LrFactor(const std::string& schedule, int step, int total_steps, int warmup_steps) {
  if (step < warmup_steps) return static_cast<double>(step) / std::max(1, warmup_steps);
  const double decay_steps = std::max(1, total_steps - warmup_steps);
  const double progress = (step - warmup_steps) / decay_steps;
  if (schedule == "linear") return std::max(0.0, 1.0 - progress);
  if (schedule == "cosine") return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));
  return 1.0;
}

SftLossOutput SftLoss(model::internal::LlamaForCausalLM& module,
                      const model::internal::ScoreBatch& batch) {
  torch::Tensor token_logps = model::internal::TokenLogProbs(module, batch);
  torch::Tensor seq = token_logps.sum(-1);
  torch::Tensor lens = batch.target_mask.sum(-1).clamp_min(1.0);
  SftLossOutput out;
  out.loss = (-seq / lens).mean();
  out.seq_logps = seq.detach();
  return out;
}

std::unique_ptr<torch::optim::AdamW> MakeOptimizer(model::internal::LlamaForCausalLM& module,
                                                   double learning_rate, double weight_decay) {
  return std::make_unique<torch::optim::AdamW>(
      module->parameters(),
      torch::optim::AdamWOptions(learning_rate).weight_decay(weight_decay));
}

}  // namespace internal

namespace {

using model::internal::TorchCall;
using Clock = std::chrono::steady_clock;
using internal::TokenizedExample;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// Averages named values over steps.
class MetricMeans {
 public:
  void Add(const std::map<std::string, double>& values, double weight) {
    for (const auto& [k, v] : values) {
      sums_[k] += v * weight;
      weights_[k] += weight;
    }
  }
  std::map<std::string, double> Means() const {
    std::map<std::string, double> out;
    for (const auto& [k, v] : sums_) out[k] = v / weights_.at(k);
    return out;
  }
  void Clear() {
    sums_.clear();
    weights_.clear();
  }

 private:
  std::map<std::string, double> sums_, weights_;
};

absl::Status CheckText(const std::string& text, const char* list, size_t i, const char* field) {
  if (text.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(list, "[", i, "].", field, " is empty"));
  }
  return absl::OkStatus();
}

absl::Status CheckProbability(const std::optional<double>& v, size_t i, const char* field) {
  if (v.has_value() && !(*v >= 0 && *v <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("pairs[", i, "].", field, " must be in [0, 1], got ", *v));
  }
  return absl::OkStatus();
}

// A SentencePiece tokenizer.model without tokenizer.json would be read as the byte tokenizer:
// refused before loading.
absl::Status CheckTokenizerFiles(const std::string& dir, const char* field) {
  if (PathExists(JoinPath(dir, "tokenizer.model")) && !PathExists(JoinPath(dir, "tokenizer.json"))) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": checkpoint \"", dir, "\" has tokenizer.model but no tokenizer.json; only "
        "tokenizer.json tokenizers are supported (transformers' save_pretrained writes one)"));
  }
  return absl::OkStatus();
}

// Policy::Load with errors prefixed by the request field (e.g. a tokenizer with more ids than
// config.vocab_size: "init_checkpoint: <dir>: tokenizer has N ids, config.vocab_size is only M").
absl::StatusOr<std::unique_ptr<model::Policy>> LoadCheckpoint(const std::string& dir,
                                                              const char* field) {
  absl::StatusOr<std::unique_ptr<model::Policy>> policy = model::Policy::Load(dir);
  if (!policy.ok()) {
    return absl::Status(policy.status().code(),
                        absl::StrCat(field, ": ", policy.status().message()));
  }
  return policy;
}

// A checkpoint without tokenizer.json uses the byte tokenizer: its config's special ids must be
// the byte tokenizer's.
absl::Status CheckTokenizer(const std::string& dir, const model::Policy& policy,
                            const char* field) {
  if (policy.tokenizer() != nullptr) return absl::OkStatus();
  const model::LlamaConfig& c = policy.config();
  if (c.vocab_size < model::ByteTokenizer::kVocabSize ||
      c.bos_token_id != model::ByteTokenizer::kBos ||
      c.eos_token_id != model::ByteTokenizer::kEos ||
      c.pad_token_id != model::ByteTokenizer::kPad) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": checkpoint \"", dir, "\" does not match the byte tokenizer (vocab_size ",
        c.vocab_size, ", bos/eos/pad ", c.bos_token_id, "/", c.eos_token_id, "/", c.pad_token_id,
        "; want vocab_size >= ", model::ByteTokenizer::kVocabSize, ", bos/eos/pad ",
        model::ByteTokenizer::kBos, "/", model::ByteTokenizer::kEos, "/",
        model::ByteTokenizer::kPad, ")"));
  }
  return absl::OkStatus();
}

// FNV-1a over a string: stable across processes (absl::Hash is seeded per process).
class Fingerprint {
 public:
  void Add(const std::string& s) {
    for (unsigned char ch : s) {
      h_ ^= ch;
      h_ *= 1099511628211ULL;
    }
    h_ ^= 0xff;
    h_ *= 1099511628211ULL;
  }
  void Add(double v) { Add(absl::StrFormat("%.17g", v)); }
  void Add(const std::optional<double>& v) { Add(v ? absl::StrFormat("%.17g", *v) : "-"); }
  std::string Hex() const { return absl::StrFormat("%016x", h_); }

 private:
  uint64_t h_ = 14695981039346656037ULL;
};

std::string RequestFingerprint(const std::string& init, const std::vector<PreferencePair>& pairs,
                               const TrainConfig& c) {
  Fingerprint f;
  f.Add(init);
  f.Add(c.loss);
  for (double v : {c.beta, c.learning_rate, c.weight_decay, static_cast<double>(c.epochs),
                   static_cast<double>(c.batch_size), c.max_grad_norm, c.nll_weight,
                   static_cast<double>(c.seed), c.label_smoothing, c.simpo_gamma, c.mpo_alpha,
                   c.mpo_eta, c.warmup_ratio, static_cast<double>(c.warmup_steps),
                   static_cast<double>(c.gradient_accumulation_steps),
                   static_cast<double>(c.max_prompt_length), static_cast<double>(c.max_length),
                   c.length_bucketing ? 1.0 : 0.0}) {
    f.Add(v);
  }
  f.Add(c.magnet_checkpoint);
  if (c.mixed_precision != "no") f.Add(c.mixed_precision);  // absent before bf16 existed
  f.Add(c.optimizer);
  f.Add(c.lr_scheduler);
  if (!c.chat_template.empty()) f.Add(c.chat_template);
  for (const PreferencePair& p : pairs) {
    f.Add(p.prompt);
    f.Add(p.chosen);
    f.Add(p.rejected);
    f.Add(p.p);
    f.Add(p.chosen_win_rate);
    f.Add(p.rejected_win_rate);
    // Only when unfinished: the fingerprints of earlier requests stay the same.
    if (!p.chosen_finished || !p.rejected_finished) {
      f.Add(absl::StrCat("finished:", p.chosen_finished ? "1" : "0",
                         p.rejected_finished ? "1" : "0"));
    }
  }
  return f.Hex();
}

// Log-probs of every example under a frozen model: sequence sums [n] and, when `tokens`,
// per-token values of each response concatenated (row i at offsets[i]).
struct FrozenLogps {
  torch::Tensor chosen, rejected;                // [n] float32 CPU
  torch::Tensor token_chosen, token_rejected;    // flat float32 CPU; undefined unless needed
};

// Token offsets of each example's response in a flat per-token buffer.
std::vector<int64_t> Offsets(const std::vector<TokenizedExample>& rows) {
  std::vector<int64_t> off(rows.size() + 1, 0);
  for (size_t i = 0; i < rows.size(); ++i) off[i + 1] = off[i] + rows[i].response.size();
  return off;
}

void ScoreFrozen(model::internal::LlamaForCausalLM& module, const model::LlamaConfig& cfg,
                 const torch::Device& device, const std::vector<TokenizedExample>& rows,
                 bool tokens, bool bf16, torch::Tensor* seq_out, torch::Tensor* token_out) {
  torch::NoGradGuard no_grad;
  module->eval();
  const size_t n = rows.size();
  std::vector<float> seq(n);
  const std::vector<int64_t> off = Offsets(rows);
  std::vector<float> flat(tokens ? off[n] : 0);
  constexpr size_t kChunk = 64;
  for (size_t s = 0; s < n; s += kChunk) {
    std::vector<std::vector<int32_t>> prompts, responses;
    std::vector<int64_t> firsts;
    for (size_t i = s; i < std::min(n, s + kChunk); ++i) {
      firsts.push_back(rows[i].first);
      prompts.push_back(rows[i].prompt);
      responses.push_back(rows[i].response);
    }
    model::internal::ScoreBatch batch = model::internal::MakeScoreBatch(
        prompts, responses, firsts, cfg.pad_token_id, device);
    torch::Tensor tok;
    {
      model::internal::CudaAutocast autocast(bf16);
      tok = model::internal::TokenLogProbs(module, batch);
    }
    tok = tok.to(torch::kCPU, torch::kFloat32).contiguous();
    torch::Tensor sums = tok.sum(-1).contiguous();
    const float* sp = sums.data_ptr<float>();
    const auto acc = tok.accessor<float, 2>();
    for (size_t k = 0; k < prompts.size(); ++k) {
      const size_t i = s + k;
      seq[i] = sp[k];
      if (tokens) {
        const int64_t start = static_cast<int64_t>(rows[i].prompt.size());
        for (size_t j = 0; j < rows[i].response.size(); ++j) {
          flat[off[i] + j] = acc[k][start + j];
        }
      }
    }
  }
  *seq_out = torch::tensor(seq);
  if (tokens) *token_out = torch::tensor(flat);
}

// Per-token values of rows `idx` laid out like a ScoreBatch's targets [R, width] (0 off-response).
torch::Tensor GatherTokens(const torch::Tensor& flat, const std::vector<int64_t>& off,
                           const std::vector<TokenizedExample>& rows,
                           const std::vector<size_t>& idx, int64_t width) {
  torch::Tensor out = torch::zeros({static_cast<int64_t>(idx.size()), width});
  auto acc = out.accessor<float, 2>();
  const float* src = flat.data_ptr<float>();
  for (size_t k = 0; k < idx.size(); ++k) {
    const size_t i = idx[k];
    const int64_t start = static_cast<int64_t>(rows[i].prompt.size());
    for (size_t j = 0; j < rows[i].response.size(); ++j) acc[k][start + j] = src[off[i] + j];
  }
  return out;
}

torch::Tensor Select(const torch::Tensor& t, const std::vector<size_t>& idx,
                     const torch::Device& device) {
  std::vector<int64_t> i64(idx.begin(), idx.end());
  return t.index_select(0, torch::tensor(i64)).to(device);
}

std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(model::internal::LlamaForCausalLM& module,
                                                       const TrainConfig& c) {
  if (c.optimizer == "rmsprop") {
    return std::make_unique<torch::optim::RMSprop>(
        module->parameters(),
        torch::optim::RMSpropOptions(c.learning_rate).weight_decay(c.weight_decay));
  }
  return std::make_unique<torch::optim::AdamW>(
      module->parameters(),
      torch::optim::AdamWOptions(c.learning_rate).weight_decay(c.weight_decay));
}

// Everything a run needs to continue after a kill: written to <dir>/state.pt via a temporary
// file and an atomic rename.
struct TrainState {
  int64_t step = 0;                // optimizer steps done
  std::string epoch_rng;           // the shuffle RNG at the start of the current epoch
  torch::Tensor torch_rng;         // torch's CPU generator
  FrozenLogps ref, magnet;
};

// The cached reference/magnet log-probs in train_state, by archive key (one list for save and load).
// (A template so save reads through const and load writes through non-const pointers.)
template <typename State>
std::vector<std::pair<const char*, decltype(&std::declval<State&>().ref.chosen)>> FrozenTensors(
    State& s) {
  return {{"ref_chosen", &s.ref.chosen},
          {"ref_rejected", &s.ref.rejected},
          {"ref_token_chosen", &s.ref.token_chosen},
          {"ref_token_rejected", &s.ref.token_rejected},
          {"magnet_chosen", &s.magnet.chosen},
          {"magnet_rejected", &s.magnet.rejected},
          {"magnet_token_chosen", &s.magnet.token_chosen},
          {"magnet_token_rejected", &s.magnet.token_rejected}};
}

// Serialized through our own checked writer, never save_to(path): LibTorch's file writer throws
// from its destructor when a write fails (a full disk), which terminates the process. Ours keeps
// accepting bytes after a failure and reports it on Commit (ResourceExhausted on ENOSPC), and the
// temporary is removed, so the last good state.pt stays for a resume.
absl::Status SaveTrainState(const std::string& dir, const std::string& fingerprint,
                            const TrainState& s, model::internal::LlamaForCausalLM& module,
                            torch::optim::Optimizer& opt) {
  SPAR_RETURN_IF_ERROR(MakeDirs(dir));
  SPAR_ASSIGN_OR_RETURN(std::unique_ptr<AtomicFileWriter> file,
                        AtomicFileWriter::Create(JoinPath(dir, "state.pt")));
  SPAR_RETURN_IF_ERROR(TorchCall("save train_state", [&]() -> absl::Status {
    torch::serialize::OutputArchive ar;
    torch::serialize::OutputArchive model_ar, opt_ar;
    module->save(model_ar);
    opt.save(opt_ar);
    ar.write("model", model_ar);
    ar.write("optimizer", opt_ar);
    ar.write("fingerprint", c10::IValue(fingerprint));
    ar.write("step", c10::IValue(s.step));
    ar.write("epoch_rng", c10::IValue(s.epoch_rng));
    ar.write("torch_rng", s.torch_rng);
    for (const auto& [key, tensor] : FrozenTensors(s)) {
      if (tensor->defined()) ar.write(key, *tensor);
    }
    ar.save_to([&](const void* data, size_t n) { return file->Write(data, n); });
    return absl::OkStatus();
  }));
  return file->Commit();
}

// Loads <dir>/state.pt when present and written for the same request; false otherwise.
absl::StatusOr<bool> LoadTrainState(const std::string& dir, const std::string& fingerprint,
                                    TrainState& s, model::internal::LlamaForCausalLM& module,
                                    torch::optim::Optimizer& opt) {
  const std::string path = JoinPath(dir, "state.pt");
  if (!PathExists(path)) return false;
  return TorchCall("load train_state", [&]() -> absl::StatusOr<bool> {
    torch::serialize::InputArchive ar;
    ar.load_from(path);
    c10::IValue v;
    ar.read("fingerprint", v);
    if (v.toStringRef() != fingerprint) {
      SPAR_LOG(Warning) << "train_state at " << dir
                        << " was written for a different request; starting from scratch";
      return false;
    }
    torch::serialize::InputArchive model_ar, opt_ar;
    ar.read("model", model_ar);
    ar.read("optimizer", opt_ar);
    module->load(model_ar);
    opt.load(opt_ar);
    ar.read("step", v);
    s.step = v.toInt();
    ar.read("epoch_rng", v);
    s.epoch_rng = v.toStringRef();
    ar.read("torch_rng", s.torch_rng);
    for (const auto& [key, tensor] : FrozenTensors(s)) {
      torch::Tensor x;
      if (ar.try_read(key, x)) *tensor = x;
    }
    return true;
  });
}

torch::Tensor GetTorchRng() {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}
void SetTorchRng(const torch::Tensor& state) {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

// Judge data → the per-pair targets of the losses (see PreferencePair).
PairTargets TargetsOf(const PreferencePair& pair) {
  return TargetsFromJudgeData(pair.p, pair.chosen_win_rate, pair.rejected_win_rate);
}

constexpr char kBf16NeedsCuda[] =
    "train.mixed_precision: \"bf16\" uses CUDA autocast and this trainer runs on CPU (no CUDA "
    "device); use \"no\"";

// One training run over pairs (SFT: `rejected` unused). Called by TrainDpo and TrainSft after
// input checks.
// FailedPrecondition "non-finite weights after step N" when an update left any parameter NaN or
// infinite (e.g. weight_decay or nll_weight = inf). One device sync per step.
absl::Status CheckFiniteWeights(const std::vector<torch::Tensor>& params, int step) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> finite;
  finite.reserve(params.size());
  for (const torch::Tensor& p : params) finite.push_back(torch::isfinite(p).all());
  if (finite.empty() || torch::stack(finite).all().item<bool>()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "non-finite weights after step ", step,
      ": check training.weight_decay, learning_rate, nll_weight and max_grad_norm"));
}

absl::StatusOr<TrainResult> Run(const char* what, const std::string& init_checkpoint,
                                const std::vector<PreferencePair>& pairs, const TrainConfig& config,
                                const std::string& out_checkpoint,
                                const ProgressCallback& on_progress) {
  SPAR_ASSIGN_OR_RETURN(const LossKind kind, ParseLossKind(config.loss));
  const DistributedConfig& dist = config.distributed;
  // The group: the caller's (the Trainer service keeps one), or one joined for this run.
  std::unique_ptr<internal::Communicator> owned_comm;
  internal::Communicator* comm = nullptr;
  if (dist.group != nullptr) {
    comm = dist.group->communicator();
    if (!comm->healthy()) {
      return absl::FailedPreconditionError(
          "distributed.group is broken (a collective failed earlier); restart every rank");
    }
  } else if (dist.world_size > 1) {
    SPAR_ASSIGN_OR_RETURN(owned_comm, internal::Communicator::Create(dist));
    comm = owned_comm.get();
  }
  const bool writer = comm == nullptr || comm->rank() == 0;
  const bool bf16 = config.mixed_precision == "bf16";
  const bool uses_magnet = kind == LossKind::kMpo || kind == LossKind::kMpoPg;
  std::unique_ptr<model::Policy> policy, magnet;
  const bool pairwise_kind = IsPairwise(kind);
  const size_t num_pairs = pairs.size();
  std::vector<TokenizedExample> chosen(num_pairs), rejected(pairwise_kind ? num_pairs : 0);
  absl::Status setup = [&]() -> absl::Status {
    SPAR_RETURN_IF_ERROR(CheckTokenizerFiles(init_checkpoint, "init_checkpoint"));
    SPAR_ASSIGN_OR_RETURN(policy, LoadCheckpoint(init_checkpoint, "init_checkpoint"));
    SPAR_RETURN_IF_ERROR(CheckTokenizer(init_checkpoint, *policy, "init_checkpoint"));
    if (bf16 && !policy->impl().device.is_cuda()) {
      return absl::InvalidArgumentError(kBf16NeedsCuda);
    }
    if (uses_magnet && !config.magnet_checkpoint.empty()) {
      SPAR_RETURN_IF_ERROR(CheckTokenizerFiles(config.magnet_checkpoint, "magnet_checkpoint"));
      SPAR_ASSIGN_OR_RETURN(magnet,
                            LoadCheckpoint(config.magnet_checkpoint, "train.magnet_checkpoint"));
      SPAR_RETURN_IF_ERROR(CheckTokenizer(config.magnet_checkpoint, *magnet, "magnet_checkpoint"));
      // The magnet scores the sequences tokenized by π_t's tokenizer: the ids must mean the same.
      if (magnet->TokenizerFingerprint() != policy->TokenizerFingerprint()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "train.magnet_checkpoint: mismatched tokenizer: \"", config.magnet_checkpoint,
            "\" has ", magnet->TokenizerDescription(), ", init_checkpoint \"", init_checkpoint,
            "\" has ", policy->TokenizerDescription(),
            " (token strings or special ids differ; both must use the same tokenizer)"));
      }
    }
    // Every example through π_t's own tokenizer, exactly as the sampler feeds prompts
    // (Policy::EncodePrompt) and ScoreResponses scores responses (Policy::EncodeResponse).
    if (absl::StatusOr<std::string> t = policy->ResolveChatTemplate(config.chat_template); !t.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("train.chat_template: ", t.status().message()));
    }
    {
      const int64_t vocab = policy->config().vocab_size;
      auto tokenize = [&](size_t i, const std::string& response, bool finished,
                          const char* field, TokenizedExample* ex) -> absl::Status {
        absl::StatusOr<std::vector<int32_t>> prompt =
            policy->EncodePrompt(pairs[i].prompt, config.chat_template);
        if (!prompt.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat("pairs[", i, "].prompt: ", prompt.status().message()));
        }
        absl::StatusOr<std::vector<int32_t>> resp = policy->EncodeResponse(response, finished);
        if (!resp.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat("pairs[", i, "].", field, ": ", resp.status().message()));
        }
        if (resp->empty()) {  // only an unfinished response has no EOS to fall back on
          return absl::InvalidArgumentError(
              absl::StrCat("pairs[", i, "].", field, ": encodes to no tokens"));
        }
        for (const auto* ids : {&*prompt, &*resp}) {
          for (int32_t id : *ids) {
            if (id < 0 || id >= vocab) {
              return absl::InvalidArgumentError(absl::StrCat(
                  "pairs[", i, "]: token id ", id, " is outside init_checkpoint's config.vocab_size ",
                  vocab, " (mismatched tokenizer)"));
            }
          }
        }
        ex->first = prompt->front();
        ex->prompt.assign(prompt->begin() + 1, prompt->end());
        ex->response = *std::move(resp);
        internal::Truncate(*ex, config.max_prompt_length, config.max_length);
        return absl::OkStatus();
      };
      for (size_t i = 0; i < num_pairs; ++i) {
        SPAR_RETURN_IF_ERROR(
            tokenize(i, pairs[i].chosen, pairs[i].chosen_finished, "chosen", &chosen[i]));
        if (pairwise_kind) {
          SPAR_RETURN_IF_ERROR(tokenize(i, pairs[i].rejected, pairs[i].rejected_finished,
                                        "rejected", &rejected[i]));
        }
      }
    }
    return absl::OkStatus();
  }();
  if (comm) {
    // Every rank learns whether any rank failed to set up, so all return before the training
    // collectives and the group stays in step.
    SPAR_ASSIGN_OR_RETURN(
        const double failed, TorchCall("setup agreement", [&]() -> absl::StatusOr<double> {
          torch::Tensor f = torch::tensor({setup.ok() ? 0.0 : 1.0}, torch::kFloat64);
          comm->AllReduceSum(f);
          return f.item<double>();
        }));
    if (setup.ok() && failed > 0) {
      return absl::InternalError(absl::StrCat(
          failed, " other rank(s) failed to load or check the run's inputs (see their logs)"));
    }
  }
  SPAR_RETURN_IF_ERROR(setup);
  const bool save_state = config.save_every_steps > 0;
  const std::string state_dir = !config.train_state_dir.empty()
                                    ? config.train_state_dir
                                    : absl::StrCat(out_checkpoint, ".train_state");
  const std::string fingerprint = RequestFingerprint(init_checkpoint, pairs, config);

  absl::StatusOr<TrainResult> result = TorchCall(what, [&]() -> absl::StatusOr<TrainResult> {
    const auto t0 = Clock::now();
    torch::manual_seed(config.seed);
    model::Policy::Impl& impl = policy->impl();
    auto& module = impl.module;
    const auto& cfg = impl.config;
    const torch::Device device = impl.device;
    const bool pairwise = pairwise_kind;
    const size_t n = num_pairs;
    std::vector<size_t> lengths(n);
    std::vector<float> p(n), win_c(n), win_r(n), adv_c(n), adv_r(n);
    for (size_t i = 0; i < n; ++i) {
      lengths[i] = chosen[i].prompt.size() + chosen[i].response.size();
      if (pairwise) {
        lengths[i] = std::max(lengths[i], rejected[i].prompt.size() + rejected[i].response.size());
      }
      const PairTargets targets = TargetsOf(pairs[i]);
      p[i] = static_cast<float>(targets.p);
      win_c[i] = static_cast<float>(targets.win_chosen);
      win_r[i] = static_cast<float>(targets.win_rejected);
      adv_c[i] = static_cast<float>(targets.adv_chosen);
      adv_r[i] = static_cast<float>(targets.adv_rejected);
    }
    const std::vector<int64_t> off_c = Offsets(chosen), off_r = Offsets(rejected);
    const torch::Tensor p_t = torch::tensor(p), win_c_t = torch::tensor(win_c),
                        win_r_t = torch::tensor(win_r), adv_c_t = torch::tensor(adv_c),
                        adv_r_t = torch::tensor(adv_r);

    auto optimizer = MakeOptimizer(module, config);
    TrainState state;
    bool resumed = false;
    if (save_state) {
      SPAR_ASSIGN_OR_RETURN(resumed, LoadTrainState(state_dir, fingerprint, state, module,
                                                    *optimizer));
    }
    const int resumed_from_step = resumed ? static_cast<int>(state.step) : 0;
    const bool token_level = kind == LossKind::kMpoPg;
    if (!resumed) {
      // Reference (π_t) log-probs once, before any update; the magnet's from its frozen
      // checkpoint (then freed), or π_t's when no magnet is given.
      if (NeedsReference(kind)) {
        ScoreFrozen(module, cfg, device, chosen, token_level, bf16, &state.ref.chosen,
                    &state.ref.token_chosen);
        ScoreFrozen(module, cfg, device, rejected, token_level, bf16, &state.ref.rejected,
                    &state.ref.token_rejected);
      }
      if (uses_magnet && magnet) {
        model::Policy::Impl& mi = magnet->impl();
        ScoreFrozen(mi.module, mi.config, mi.device, chosen, token_level, bf16,
                    &state.magnet.chosen, &state.magnet.token_chosen);
        ScoreFrozen(mi.module, mi.config, mi.device, rejected, token_level, bf16,
                    &state.magnet.rejected, &state.magnet.token_rejected);
      } else if (uses_magnet) {
        state.magnet = state.ref;
      }
    } else {
      SetTorchRng(state.torch_rng);
    }
    magnet.reset();
    if (comm) comm->Barrier();  // every rank has read the state before rank 0 may rewrite it

    module->train();
    module->set_gradient_checkpointing(config.gradient_checkpointing);
    std::mt19937_64 rng(config.seed);
    const size_t global_batch = static_cast<size_t>(config.batch_size);
    const int steps_per_epoch = static_cast<int>((n + global_batch - 1) / global_batch);
    const int total_steps = steps_per_epoch * config.epochs;
    const int warmup = config.warmup_steps > 0
                           ? config.warmup_steps
                           : static_cast<int>(std::ceil(config.warmup_ratio * total_steps));
    const LossParams params{config.beta,      config.label_smoothing, config.simpo_gamma,
                            config.mpo_alpha, config.mpo_eta,         config.nll_weight};
    const int world = comm ? comm->world_size() : 1;
    const int rank = comm ? comm->rank() : 0;
    std::vector<torch::Tensor> params_list = module->parameters();

    TrainResult result;
    result.num_parameters = policy->NumParameters();
    MetricMeans epoch_means;
    int step = static_cast<int>(state.step);
    const int start_epoch = step / steps_per_epoch;
    if (resumed) {
      std::istringstream in(state.epoch_rng);
      in >> rng;
    } else {
      // Skip to the start epoch (fresh runs start at 0).
      for (int e = 0; e < start_epoch; ++e) internal::EpochBatches(lengths, global_batch,
                                                                   config.length_bucketing, rng);
    }
    for (int epoch = start_epoch; epoch < config.epochs; ++epoch) {
      epoch_means.Clear();
      std::ostringstream rng_at_epoch;
      rng_at_epoch << rng;
      const std::vector<std::vector<size_t>> batches =
          internal::EpochBatches(lengths, global_batch, config.length_bucketing, rng);
      for (size_t bi = step - epoch * steps_per_epoch; bi < batches.size(); ++bi) {
        const auto step_t0 = Clock::now();
        const std::vector<size_t>& global_idx = batches[bi];
        const double global_count = static_cast<double>(global_idx.size());
        // This rank's share, then micro-batches.
        const size_t per_rank = (global_idx.size() + world - 1) / world;
        const size_t lo = std::min(global_idx.size(), rank * per_rank);
        const size_t hi = std::min(global_idx.size(), lo + per_rank);
        const size_t local = hi - lo;
        const size_t accum = static_cast<size_t>(config.gradient_accumulation_steps);
        const size_t micro = std::max<size_t>(1, (local + accum - 1) / accum);
        optimizer->zero_grad();
        std::vector<double> sums(11, 0.0);
        for (size_t m = lo; m < hi; m += micro) {
          std::vector<size_t> idx(global_idx.begin() + m,
                                  global_idx.begin() + std::min(hi, m + micro));
          const int64_t b = static_cast<int64_t>(idx.size());
          std::vector<std::vector<int32_t>> prompts, responses;
          std::vector<int64_t> firsts;
          for (size_t i : idx) {
            firsts.push_back(chosen[i].first);
            prompts.push_back(chosen[i].prompt);
            responses.push_back(chosen[i].response);
          }
          if (pairwise) {
            for (size_t i : idx) {
              firsts.push_back(rejected[i].first);
              prompts.push_back(rejected[i].prompt);
              responses.push_back(rejected[i].response);
            }
          }
          // Chosen rows first, then rejected: one padded forward for both.
          model::internal::ScoreBatch batch = model::internal::MakeScoreBatch(
              prompts, responses, firsts, cfg.pad_token_id, device);
          torch::Tensor token_logps;
          {
            model::internal::CudaAutocast autocast(bf16);  // forward only; backward in float32
            token_logps = model::internal::TokenLogProbs(module, batch).to(torch::kFloat32);
          }
          torch::Tensor seq = token_logps.sum(-1);
          torch::Tensor lens = batch.target_mask.sum(-1).clamp_min(1.0);
          PairLossInputs in;
          in.policy_chosen = seq.narrow(0, 0, b);
          in.chosen_len = lens.narrow(0, 0, b);
          if (pairwise) {
            in.policy_rejected = seq.narrow(0, b, b);
            in.rejected_len = lens.narrow(0, b, b);
          }
          if (NeedsReference(kind)) {
            in.ref_chosen = Select(state.ref.chosen, idx, device);
            in.ref_rejected = Select(state.ref.rejected, idx, device);
          }
          if (uses_magnet) {
            in.magnet_chosen = Select(state.magnet.chosen, idx, device);
            in.magnet_rejected = Select(state.magnet.rejected, idx, device);
          }
          in.p = Select(p_t, idx, device);
          in.win_chosen = Select(win_c_t, idx, device);
          in.win_rejected = Select(win_r_t, idx, device);
          in.adv_chosen = Select(adv_c_t, idx, device);
          in.adv_rejected = Select(adv_r_t, idx, device);
          if (token_level) {
            const int64_t width = token_logps.size(1);
            in.token_policy_chosen = token_logps.narrow(0, 0, b);
            in.token_policy_rejected = token_logps.narrow(0, b, b);
            in.token_ref_chosen =
                GatherTokens(state.ref.token_chosen, off_c, chosen, idx, width).to(device);
            in.token_ref_rejected =
                GatherTokens(state.ref.token_rejected, off_r, rejected, idx, width).to(device);
            in.token_magnet_chosen =
                GatherTokens(state.magnet.token_chosen, off_c, chosen, idx, width).to(device);
            in.token_magnet_rejected =
                GatherTokens(state.magnet.token_rejected, off_r, rejected, idx, width).to(device);
          }
          PairLossOutput out = PairLoss(kind, in, params);  // NLL term included
          const torch::Tensor& losses = out.losses;
          // Sum over this micro-batch / global batch size: the gradients summed over micro-batches
          // and ranks are the gradient of the global batch mean.
          (losses.sum() / global_count).backward();
          torch::Tensor margins = out.chosen_rewards - out.rejected_rewards;
          sums[0] += losses.detach().sum().item<double>();
          sums[1] += out.chosen_rewards.sum().item<double>();
          sums[2] += out.rejected_rewards.sum().item<double>();
          sums[3] += (margins > 0).to(torch::kFloat64).sum().item<double>();
          sums[4] += in.policy_chosen.detach().sum().item<double>();
          if (pairwise) sums[5] += in.policy_rejected.detach().sum().item<double>();
          sums[6] += static_cast<double>(b);
          sums[7] += in.chosen_len.sum().item<double>();
          sums[8] += -in.policy_chosen.detach().sum().item<double>();
          sums[9] += static_cast<double>(batch.num_tokens);
        }
        for (torch::Tensor& prm : params_list) {
          if (!prm.grad().defined()) prm.mutable_grad() = torch::zeros_like(prm);
        }
        if (comm) {
          // One flat all-reduce of every gradient (fp32; CPU over Gloo, CUDA over NCCL), copied
          // back.
          std::vector<torch::Tensor> flat_parts;
          for (torch::Tensor& prm : params_list) {
            flat_parts.push_back(
                prm.grad().reshape({-1}).to(comm->gradient_device(), torch::kFloat32));
          }
          torch::Tensor flat = torch::cat(flat_parts);
          comm->AllReduceSum(flat);
          int64_t o = 0;
          for (torch::Tensor& prm : params_list) {
            const int64_t k = prm.numel();
            prm.mutable_grad().copy_(flat.narrow(0, o, k).view(prm.sizes()));
            o += k;
          }
          torch::Tensor s = torch::tensor(sums, torch::kFloat64);
          comm->AllReduceSum(s);
          for (size_t k = 0; k < sums.size(); ++k) sums[k] = s[k].item<double>();
        }
        // A diverged step fails the run: nothing non-finite is ever applied or saved (#12).
        if (!std::isfinite(sums[0])) {
          return absl::FailedPreconditionError(absl::StrCat(
              "non-finite loss at step ", step + 1, " (", sums[0] / std::max(1.0, sums[6]),
              "): check training.beta, learning_rate, nll_weight and the data"));
        }
        const double lr =
            config.learning_rate * internal::LrFactor(config.lr_scheduler, step, total_steps, warmup);
        for (auto& group : optimizer->param_groups()) group.options().set_lr(lr);
        if (config.max_grad_norm > 0) {
          torch::nn::utils::clip_grad_norm_(params_list, config.max_grad_norm);
        }
        optimizer->step();
        ++step;
        SPAR_RETURN_IF_ERROR(CheckFiniteWeights(params_list, step));

        const double count = std::max(1.0, sums[6]);
        std::map<std::string, double> m;
        m["loss"] = sums[0] / count;
        m["logps/chosen"] = sums[4] / count;
        if (pairwise) {
          m["rewards/chosen"] = sums[1] / count;
          m["rewards/rejected"] = sums[2] / count;
          m["rewards/margins"] = (sums[1] - sums[2]) / count;
          m["rewards/accuracies"] = sums[3] / count;
          m["logps/rejected"] = sums[5] / count;
        } else {
          m["nll/token"] = sums[8] / std::max(1.0, sums[7]);
        }
        epoch_means.Add(m, count);
        if (save_state && step % config.save_every_steps == 0 && step < total_steps && writer) {
          state.step = step;
          state.epoch_rng = rng_at_epoch.str();
          state.torch_rng = GetTorchRng();
          SPAR_RETURN_IF_ERROR(SaveTrainState(state_dir, fingerprint, state, module, *optimizer));
        }
        bool cancel = false;
        if (on_progress) {
          TrainProgress progress;
          progress.step = step;
          progress.total_steps = total_steps;
          progress.loss = m["loss"];
          progress.tokens_per_second = sums[9] / std::max(1e-9, Seconds(step_t0));
          progress.metrics = m;
          progress.metrics["tokens"] = sums[9];
          progress.metrics["learning_rate"] = lr;
          progress.resumed_from_step = resumed_from_step;
          cancel = !on_progress(progress);
        }
        if (comm) {
          torch::Tensor c = torch::tensor({cancel ? 1.0 : 0.0}, torch::kFloat64);
          comm->AllReduceSum(c);
          cancel = c.item<double>() > 0;
        }
        if (cancel) return absl::CancelledError(absl::StrCat("training cancelled at step ", step));
      }
    }
    result.steps = step;
    result.resumed_from_step = resumed_from_step;
    result.metrics = epoch_means.Means();
    // What the examples were tokenized into (first id included): how a caller checks the
    // tokenizer and chat template the trainer used.
    double prompt_tokens = 0, response_tokens = 0;
    for (const TokenizedExample& ex : chosen) {
      prompt_tokens += 1.0 + static_cast<double>(ex.prompt.size());
      response_tokens += static_cast<double>(ex.response.size());
    }
    result.metrics["data/prompt_tokens"] = prompt_tokens;
    result.metrics["data/chosen_tokens"] = response_tokens;
    result.final_loss = result.metrics["loss"];
    result.seconds = Seconds(t0);
    module->eval();
    return result;
  });
  if (!result.ok()) {
    // Cancellation is agreed by an all-reduce each step; any other failure may have left the
    // ranks at different points of the collective sequence.
    if (comm && !absl::IsCancelled(result.status())) comm->MarkBroken();
    return result.status();
  }
  absl::Status written = absl::OkStatus();
  if (writer) {
    written = policy->Save(out_checkpoint);
    if (written.ok() && save_state) written = RemoveAll(state_dir);
  }
  if (comm) {
    // Doubles as the final barrier: every rank learns whether rank 0's write succeeded.
    SPAR_ASSIGN_OR_RETURN(
        const double failed, TorchCall("write agreement", [&]() -> absl::StatusOr<double> {
          torch::Tensor f = torch::tensor({written.ok() ? 0.0 : 1.0}, torch::kFloat64);
          comm->AllReduceSum(f);
          return f.item<double>();
        }));
    if (written.ok() && failed > 0) {
      return absl::InternalError("rank 0 failed to write the checkpoint (see its log)");
    }
  }
  SPAR_RETURN_IF_ERROR(written);
  return result;
}

}  // namespace

absl::Status CheckDevice(const TrainConfig& c) {
  if (c.mixed_precision == "bf16" && !model::internal::DefaultDevice().is_cuda()) {
    return absl::InvalidArgumentError(kBf16NeedsCuda);
  }
  return absl::OkStatus();
}

absl::StatusOr<DistributedConfig> DistributedFromEnv() {
  DistributedConfig d;
  auto read_int = [](const char* name, int* out) -> absl::Status {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') return absl::OkStatus();
    if (!absl::SimpleAtoi(v, out)) {
      return absl::InvalidArgumentError(absl::StrCat("env ", name, ": not an integer: \"", v, "\""));
    }
    return absl::OkStatus();
  };
  SPAR_RETURN_IF_ERROR(read_int("RANK", &d.rank));
  SPAR_RETURN_IF_ERROR(read_int("WORLD_SIZE", &d.world_size));
  SPAR_RETURN_IF_ERROR(read_int("MASTER_PORT", &d.master_port));
  if (const char* a = std::getenv("MASTER_ADDR"); a != nullptr && *a != '\0') d.master_addr = a;
  if (d.world_size < 1 || d.rank < 0 || d.rank >= d.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("env RANK=", d.rank, " WORLD_SIZE=",
                                                   d.world_size, ": want 0 <= RANK < WORLD_SIZE"));
  }
  return d;
}

absl::StatusOr<TrainResult> TrainDpo(const std::string& init_checkpoint,
                                     const std::vector<PreferencePair>& pairs,
                                     const TrainConfig& config, const std::string& out_checkpoint,
                                     const ProgressCallback& on_progress) {
  SPAR_RETURN_IF_ERROR(Validate(config));
  if (pairs.empty()) return absl::InvalidArgumentError("pairs: no preference pairs to train on");
  const bool pairwise = config.loss != "sft";
  for (size_t i = 0; i < pairs.size(); ++i) {
    SPAR_RETURN_IF_ERROR(CheckText(pairs[i].prompt, "pairs", i, "prompt"));
    SPAR_RETURN_IF_ERROR(CheckText(pairs[i].chosen, "pairs", i, "chosen"));
    if (pairwise) SPAR_RETURN_IF_ERROR(CheckText(pairs[i].rejected, "pairs", i, "rejected"));
    SPAR_RETURN_IF_ERROR(CheckProbability(pairs[i].p, i, "p"));
    SPAR_RETURN_IF_ERROR(CheckProbability(pairs[i].chosen_win_rate, i, "chosen_win_rate"));
    SPAR_RETURN_IF_ERROR(CheckProbability(pairs[i].rejected_win_rate, i, "rejected_win_rate"));
  }
  return Run("TrainDpo", init_checkpoint, pairs, config, out_checkpoint, on_progress);
}

absl::StatusOr<TrainResult> TrainSft(const std::string& init_checkpoint,
                                     const std::vector<SftExample>& examples,
                                     const TrainConfig& config, const std::string& out_checkpoint,
                                     const ProgressCallback& on_progress) {
  SPAR_RETURN_IF_ERROR(Validate(config));
  if (config.loss != "sft") {
    return absl::InvalidArgumentError(
        absl::StrCat("train.loss: TrainSft needs \"sft\", got \"", config.loss, "\""));
  }
  if (examples.empty()) return absl::InvalidArgumentError("examples: no SFT examples to train on");
  std::vector<PreferencePair> rows(examples.size());
  for (size_t i = 0; i < examples.size(); ++i) {
    SPAR_RETURN_IF_ERROR(CheckText(examples[i].prompt, "examples", i, "prompt"));
    SPAR_RETURN_IF_ERROR(CheckText(examples[i].response, "examples", i, "response"));
    rows[i].prompt = examples[i].prompt;
    rows[i].chosen = examples[i].response;
  }
  return Run("TrainSft", init_checkpoint, rows, config, out_checkpoint, on_progress);
}

}  // namespace spar::trainer
