#include "trainer/internal/train_state.h"

#include <mutex>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "model/internal/torch_call.h"

namespace spar::trainer::internal {
namespace {

using model::internal::TorchCall;

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

}  // namespace

std::string RequestFingerprint(const std::string& init, const std::vector<PreferencePair>& pairs,
                               const std::vector<ListwiseGroup>& groups, const TrainConfig& c) {
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
  // Only for listwise runs: the fingerprints of pairwise requests stay the same.
  if (!c.prior_checkpoint.empty()) f.Add(absl::StrCat("prior:", c.prior_checkpoint));
  for (const ListwiseGroup& g : groups) {
    f.Add(absl::StrCat("group:", g.responses.size()));
    f.Add(g.prompt);
    for (const ListwiseResponse& r : g.responses) {
      f.Add(r.text);
      f.Add(r.reward);
      f.Add(r.proposal_logprob);
      f.Add(r.finished ? "1" : "0");
    }
  }
  return f.Hex();
}

namespace {

// The cached reference/magnet log-probs in train_state, by archive key (one list for save and
// load). (A template so save reads through const and load writes through non-const pointers.)
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

}  // namespace

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

}  // namespace spar::trainer::internal
